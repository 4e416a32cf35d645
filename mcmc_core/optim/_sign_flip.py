"""The sign-flip MCMC sampler: a ``torch.optim.Optimizer`` over ±1 weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.optimizer import Optimizer, required

from mcmc_core import functional as F

__all__ = ["SignFlipSampler", "PROPOSALS"]

PROPOSALS = F.PROPOSALS


class SignFlipSampler(Optimizer):
    """Metropolis / Barker sampling of binary weights by sign flips, with forward passes only.

    Each :meth:`step` proposes a candidate by flipping the signs of ``round(flip_ratio * n)``
    distinct weights (at least one) of one parameter tensor chosen uniformly at random
    (``proposal="layer"``) or of every tensor (``proposal="all"``), evaluates the energy through
    the closure, and accepts with the Metropolis rule ``min(1, exp(-dE / (k T)))`` or the
    Barker/Gibbs rule ``1 / (1 + exp(dE / (k T)))``. A rejected candidate is restored exactly by
    flipping the same weights back; no tensor is copied.

    This is the general chain: any model, any energy closure (a mini-batch energy, a CNN),
    and the forward kernel of :class:`~mcmc_core.optim.ChainSampler` (``K`` chains, one per
    param group), whose incremental kernel samples binary MLPs on a fixed energy faster.

    ``temperature`` and ``flip_ratio`` live in the param groups, so schedules can anneal them as
    ``torch.optim.lr_scheduler`` anneals ``lr``; groups may have their own ``flip_ratio``.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(100), requires_grad=False)
        >>> sampler = SignFlipSampler([w], temperature=1e-3, flip_ratio=0.02, seed=0)
        >>> energy = sampler.step(lambda: float((w - 1).abs().mean()))

    Args:
        params: the ±1 weight tensors (e.g. ``mcmc_core.binary_parameters(model)``) or param
            group dicts.
        temperature: the sampling temperature ``T`` > 0 (0 means greedy descent).
        flip_ratio: fraction of a tensor's weights flipped per proposal, in (0, 1]
            (default: 0.01).
        acceptance: ``"metropolis"`` or ``"barker"`` (default: ``"metropolis"``).
        proposal: ``"layer"`` (one random tensor per step) or ``"all"`` (every tensor)
            (default: ``"layer"``).
        boltzmann: the constant ``k`` in ``exp(-dE / (k T))`` (default: 1.0).
        coupled: use ``flip_ratio = temperature`` at every step, as the original research code
            did; kept only to compare against it (default: False).
        cache_energy: the closure measures a fixed target (the whole training set or a fixed
            subset), so the current energy is remembered and a step costs one evaluation. Leave
            False for mini-batch energies, where both energies are measured on each step's batch
            (default: False).
        seed: seed of the chain's own ``torch.Generator`` (default: None, a random seed).
        generator: a CPU generator to use instead of ``seed``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        temperature: float = required,  # type: ignore[assignment]
        flip_ratio: float = 0.01,
        *,
        acceptance: str = "metropolis",
        proposal: str = "layer",
        boltzmann: float = 1.0,
        coupled: bool = False,
        cache_energy: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        F.check_chain(0.0 if temperature is required else temperature, flip_ratio, "defaults")
        F.check_rules(acceptance, proposal, boltzmann)
        super().__init__(params, dict(temperature=temperature, flip_ratio=flip_ratio))
        self.acceptance = acceptance
        self.proposal = proposal
        self.boltzmann = boltzmann
        self.coupled = coupled
        self.cache_energy = cache_energy
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)
        self.generator = generator
        #: Energy of the current state (the last accepted one), or None before the first step.
        self.energy: float | None = None
        self.n_steps = 0
        self._params = [(p, g) for g in self.param_groups for p in g["params"]]
        for p, _ in self._params:
            self.state[p].update(n_proposed=0, n_accepted=0)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("flip_ratio", 0.01)

    def _flip_ratio(self, group: dict[str, Any]) -> float:
        return F.chain_flip_ratio(group["temperature"], group["flip_ratio"], self.coupled)

    def _pick(self) -> list[tuple[torch.Tensor, dict[str, Any]]]:
        if self.proposal == "all":
            return self._params
        i = int(torch.randint(len(self._params), (1,), generator=self.generator))
        return [self._params[i]]

    @torch.no_grad()
    def step(self, closure: Callable[[], float | torch.Tensor]) -> float:  # type: ignore[override]
        """Perform one MCMC step.

        Args:
            closure: returns the energy (mean loss) of the weights as they are when called. It is
                called for the candidate, and also for the current state unless the energy is
                cached.

        Returns:
            The energy of the state after the step (the candidate's if accepted).
        """
        if self.energy is None or not self.cache_energy:
            self.energy = float(closure())
        chosen = self._pick()
        temperatures = {g["temperature"] for _, g in chosen}
        if len(temperatures) != 1:
            raise ValueError(
                f"proposal='all' needs one temperature in every param group, but got {temperatures}."
            )
        temperature = temperatures.pop()
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, but got {temperature=}.")
        flips = [
            (p, F.propose_flips(p.numel(), self._flip_ratio(g), self.generator).to(p.device))
            for p, g in chosen
        ]
        for p, idx in flips:
            F.apply_flips(p, idx)
        candidate = float(closure())
        accepted = F.accept(
            candidate - self.energy, temperature, self.generator, self.acceptance, self.boltzmann
        )
        if accepted:
            self.energy = candidate
        else:
            for p, idx in flips:
                F.apply_flips(p, idx)
        for p, _ in chosen:
            self.state[p]["n_proposed"] += 1
            self.state[p]["n_accepted"] += int(accepted)
        self.n_steps += 1
        return self.energy

    def counts(self) -> tuple[int, int]:
        """Total proposals and acceptances over all steps (per-tensor counts are in ``state``)."""
        if self.proposal == "all":
            s = self.state[self._params[0][0]]
            return s["n_proposed"], s["n_accepted"]
        proposed = sum(self.state[p]["n_proposed"] for p, _ in self._params)
        accepted = sum(self.state[p]["n_accepted"] for p, _ in self._params)
        return proposed, accepted

    def invalidate_energy(self) -> None:
        """Forget the cached energy (call after changing the weights or the target outside)."""
        self.energy = None

    @torch.no_grad()
    def swap_weights(self, other: SignFlipSampler) -> None:
        """Exchange the weights (their storage, no copy) with ``other``, a sampler over
        parameters of the same shapes (parallel tempering). Cached energies are left to the
        caller."""
        for (p, _), (q, _) in zip(self._params, other._params):
            p.data, q.data = q.data, p.data

    def state_dict(self) -> dict[str, Any]:
        """Param groups, counters, and (at top level) the generator state and cached energy."""
        state = super().state_dict()
        state["generator"] = self.generator.get_state()
        state["energy"] = self.energy
        state["n_steps"] = self.n_steps
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.generator.set_state(state_dict.pop("generator"))
        self.energy = state_dict.pop("energy")
        self.n_steps = state_dict.pop("n_steps")
        super().load_state_dict(state_dict)
        self._params = [(p, g) for g in self.param_groups for p in g["params"]]
