"""A population of sign-flip MCMC chains advanced together: :class:`Population`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mcmc_core import functional as F
from mcmc_core.data import Split
from mcmc_core.energy import EnergySet, evaluate_stacked
from mcmc_core.population._graphs import StepGraphs
from mcmc_core.population._hyperparameters import HYPERPARAMETERS, ChainHyperparameters, per_chain
from mcmc_core.population._incremental import ChainCache
from mcmc_core.population._random import MAX_PURPOSE, ChainRandom
from mcmc_core.population._state import PopulationState
from mcmc_core.population._stepping import BatchedStepper
from mcmc_core.population._weights import StackedMLP

__all__ = ["PROPOSALS", "Population"]

PROPOSALS = ("layer", "all")


class Population(BatchedStepper, PopulationState, ChainHyperparameters):
    """``K`` sign-flip MCMC chains on binary MLPs of one architecture, stepped together.

    Chain ``k`` is the sampler of :class:`~mcmc_core.optim.SignFlipSampler` on a fixed energy
    set (mean cross-entropy, cached), with its own temperature, flip ratio and seed. A
    :meth:`step` proposes for every chain a candidate that flips
    ``flip_count(flip_ratio_k, n_l)`` distinct weights of layer ``l`` (``proposal="layer"``)
    or of every layer (``proposal="all"``), evaluates all candidates at once from the flips
    alone (:class:`~mcmc_core.population.ChainCache`: one batched update per layer, no full
    forward), and accepts or rejects each with the Metropolis rule ``min(1, exp(-dE / (k T)))``
    or the Barker rule ``1 / (1 + exp(dE / (k T)))``, chain by chain through masks. No
    schedule is built in: temperatures are constant unless ``schedule`` gives them (every
    chain's schedule objects, :class:`~mcmc_core.schedules.ChainSchedules`).

    With ``proposal="layer"`` every chain flips the same layer at a given step: a uniform
    pseudo-random function of the step and ``layer_seed`` (not of any chain), so that a step
    is one unpadded batched update of one layer. Each chain still sees a uniformly random layer
    per step; only the scan order is shared.

    All of a chain's randomness comes from its own counter-based stream
    (:class:`~mcmc_core.population.ChainRandom`, drawn a block of steps at a time): given its
    seed, hyperparameters and start weights, a chain takes the same steps alone (a population
    of one: the same code) or in any batch, and after other chains are dropped. The same seeds
    give identical weights; :meth:`state_dict` resumes bit-identically.

    Example:
        >>> from mcmc_core.data import DataConfig, load_dataset
        >>> data = load_dataset(DataConfig(name="synthetic"))
        >>> pop = Population.build(data.train, [8], data.n_classes, seeds=range(4),
        ...                        temperature=[1e-3, 1e-3, 1e-2, 1e-2], flip_ratio=0.02)
        >>> energies = pop.run(100)  # float64 [4]
        >>> loss, accuracy = pop.evaluate(data.test)
        >>> best = pop.export(int(loss.argmin()))  # an ordinary binary MLP

    Args:
        net: the chains' start weights (updated in place).
        energy_set: the fixed set the energy is measured on.
        temperature: temperature ``T_k >= 0``, one value or one per chain (0 is greedy), used
            when no ``schedule`` is given.
        flip_ratio: fraction of a layer's weights flipped per proposal, in (0, 1]; at least
            one weight is flipped (default: 0.01).
        seeds: one integer per chain, the key of its random stream (default: ``0 .. K-1``).
        acceptance: ``"metropolis"`` or ``"barker"`` (default: ``"metropolis"``).
        proposal: ``"layer"`` or ``"all"`` (default: ``"layer"``).
        boltzmann: the constant ``k`` in ``exp(-dE / (k T))`` (default: 1.0).
        layer_seed: seed of the shared layer schedule of ``proposal="layer"`` (default: 0).
        ids: one label per chain (e.g. Optuna trial numbers), kept through :meth:`keep`
            (default: ``0 .. K-1``).
        chunk: chains per batched operation; None picks, on the CPU, as many as keep a step's
            work buffers in cache (all 32 on the digits MLP, 1 on MNIST 784-100 with 157 flips),
            elsewhere all chains. Results do not depend on it (default: None).
        schedule: the temperature schedule: a function of ``(start, length)`` giving every
            chain's temperature at steps ``start .. start + length - 1``, float64 ``[K,
            length]`` (:meth:`ChainSchedules.temperatures
            <mcmc_core.schedules.ChainSchedules.temperatures>`). Its rows are the current
            chains: its owner keeps them in step with :meth:`keep` (default: None, every chain
            at its constant ``temperature``).
        sync_free: step without any host synchronisation between the draws of two blocks
            (masked cache writes, see :meth:`ChainCache.commit`); None: on every device but
            the CPU. Results do not depend on it (default: None).
        graphs: replay each step as a captured CUDA graph (:class:`StepGraphs`, one per
            flipped layer): needs CUDA, ``sync_free`` and all chains in one operation (the
            default ``chunk`` there). New flip counts (a new ``flip_ratio``) are captured anew,
            after 64 eager steps where the counts before lasted fewer. None: wherever those
            hold. Results do not depend on it (default: None).

    The two per-chain hyperparameters are float64 ``[K]`` tensors; assigning one (a value or
    one per chain) validates it and takes effect at the next step.
    """

    def __init__(self, net: StackedMLP, energy_set: EnergySet, *,
                 temperature: float | Sequence[float] | Tensor,
                 flip_ratio: float | Sequence[float] | Tensor = 0.01,
                 seeds: Sequence[int] | Tensor | None = None, acceptance: str = "metropolis",
                 proposal: str = "layer", boltzmann: float = 1.0, layer_seed: int = 0,
                 ids: Sequence[Any] | None = None, chunk: int | None = None,
                 schedule: Callable[[int, int], Tensor] | None = None,
                 sync_free: bool | None = None, graphs: bool | None = None) -> None:
        k, device = len(net), net.device
        if acceptance not in F.ACCEPTANCE_RULES:
            raise ValueError(f"acceptance must be one of {F.ACCEPTANCE_RULES}, but got "
                             f"{acceptance=}.")
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, but got {proposal=}.")
        if not boltzmann > 0:
            raise ValueError(f"boltzmann must be positive, but got {boltzmann=}.")
        if len(net.weights) >= MAX_PURPOSE:
            raise ValueError(f"at most {MAX_PURPOSE - 1} layers are supported.")
        self.acceptance, self.proposal, self.boltzmann = acceptance, proposal, float(boltzmann)
        self.layer_seed = int(layer_seed)
        self.chunk, self.schedule = chunk, schedule
        self.cache = ChainCache(net, energy_set, sync_free)
        can_graph = device.type == "cuda" and self.cache.sync_free and (
            chunk is None or chunk >= k)
        if graphs and not can_graph:
            raise ValueError(f"graphs=True needs a CUDA device, sync_free and one chunk of all "
                             f"chains, but got device={device.type!r}, "
                             f"sync_free={self.cache.sync_free}, {chunk=} for {k} chains.")
        self.graphs = can_graph if graphs is None else bool(graphs)
        for name, value in zip(HYPERPARAMETERS, (temperature, flip_ratio)):
            setattr(self, f"_{name}", per_chain(value, k, name, device))
        self._check_hyper()
        seeds = torch.arange(k) if seeds is None else torch.as_tensor(
            seeds if isinstance(seeds, Tensor) else list(seeds))
        if seeds.numel() != k:
            raise ValueError(f"seeds must have one entry per chain ({k}), but got "
                             f"{seeds.numel()}.")
        self.random = ChainRandom(seeds.flatten(), device)
        self.ids: list[Any] = list(range(k)) if ids is None else list(ids)
        if len(self.ids) != k:
            raise ValueError(f"ids must have one entry per chain ({k}), but got {len(self.ids)}.")
        self.n_steps = 0
        self.n_accepted = torch.zeros(k, dtype=torch.int64, device=device)
        self._counts: list[list[int]] = []  # per chain and layer (set by _layout)
        self._steps_with_counts = 0  # steps taken with the current counts
        self._graphs_after = 0  # ... before their steps are captured
        self._step_graphs: StepGraphs | None = None
        self._layout()

    @classmethod
    def build(cls, split: Split, hidden: Sequence[int], n_classes: int, seeds: Sequence[int], *,
              output_scale: float = 1.0, samples: int | None = None, sample_seed: int = 0,
              device: torch.device | str = "cpu", **kwargs: Any) -> Population:
        """Chains whose start weights are ``build_model(ModelConfig("mlp", hidden,
        output_scale=...), ..., seed=seeds[k])`` and whose streams are keyed by the same seeds,
        on the energy set ``EnergySet(split, samples=samples, seed=sample_seed)``. ``kwargs``
        go to the constructor."""
        seeds = [int(s) for s in seeds]
        net = StackedMLP.build(split.inputs.shape[1:], hidden, n_classes, seeds,
                               output_scale=output_scale, device=device)
        energy_set = EnergySet(split, samples=samples, seed=sample_seed, device=device)
        return cls(net, energy_set, seeds=seeds, **kwargs)

    # ----------------------------------------------------------------------------- state
    def __len__(self) -> int:
        return len(self.net)

    @property
    def net(self) -> StackedMLP:
        """The stacked weights (``net.weights[l]`` is ``[K, out_l, in_l]``)."""
        return self.cache.net

    @property
    def energy_set(self) -> EnergySet:
        """What the energy is measured on."""
        return self.cache.energy_set

    @property
    def energies(self) -> Tensor:
        """Current energy of every chain, float64 ``[K]`` (a copy of the cached values)."""
        return self.cache.energies.clone()

    @property
    def seeds(self) -> Tensor:
        """Every chain's seed, int64 ``[K]``."""
        return self.random.seeds

    def temperatures(self, step: int | None = None) -> Tensor:
        """Every chain's temperature at ``step`` (default: the next step), float64 ``[K]``."""
        return self._temperatures(self.n_steps if step is None else step, 1).squeeze(1)

    def acceptance_rates(self) -> Tensor:
        """Accepted fraction of each chain's proposals so far, float64 ``[K]``."""
        return self.n_accepted.to(torch.float64) / max(1, self.n_steps)

    def flip_counts(self) -> list[list[int]]:
        """``counts[k][l]``: how many weights of layer ``l`` a proposal of chain ``k`` flips."""
        return [list(c) for c in self._counts]

    # ----------------------------------------------------------------------------- stepping
    def step(self) -> Tensor:
        """Advance every chain by one step.

        Returns:
            The energies after the step, float64 ``[K]`` (a candidate's where accepted).
        """
        self._step()
        return self.cache.energies.clone()

    def run(self, n_steps: int) -> Tensor:
        """Take ``n_steps`` steps; returns the energies after the last (float64 ``[K]``)."""
        for _ in range(n_steps):
            self._step()
        return self.cache.energies.clone()

    # ----------------------------------------------------------------------------- chains
    def keep(self, mask: Tensor | Sequence[bool] | Sequence[int]) -> None:
        """Keep only some chains, in order: ``mask`` is a bool ``[K]`` mask or chain indices.
        The kept chains' states are untouched and they continue exactly as they would have.

        Raises:
            ValueError: if no chain would remain.
        """
        mask = torch.as_tensor(mask)
        if mask.dtype == torch.bool:
            if mask.shape != (len(self),):
                raise ValueError(f"a bool mask must have shape ({len(self)},), "
                                 f"but got {tuple(mask.shape)}.")
            index = mask.nonzero().squeeze(1)
        else:
            index = mask.to(torch.int64).flatten()
        if index.numel() == 0:
            raise ValueError("a population needs at least one chain.")
        index_list = index.tolist()
        index = index.to(self.net.device)
        self.cache.keep(index)
        self.random.keep(index)
        for name in HYPERPARAMETERS:
            setattr(self, f"_{name}", getattr(self, f"_{name}")[index])
        self.n_accepted = self.n_accepted[index]
        self.ids = [self.ids[i] for i in index_list]
        self._layout()

    def drop(self, k: int) -> None:
        """Remove chain ``k`` (e.g. a pruned trial); the others continue unchanged."""
        k = range(len(self))[k]
        self.keep([i for i in range(len(self)) if i != k])

    def exchange(self, i: int, j: int) -> None:
        """Swap the states (weights, caches, energies) of chains ``i`` and ``j``; each keeps its
        own temperature, flip ratio, random stream and counts (a parallel-tempering swap)."""
        i, j = range(len(self))[i], range(len(self))[j]
        if i != j:
            self.cache.exchange(i, j)

    # ----------------------------------------------------------------------------- results
    def evaluate(self, split: Split, batch_size: int = 4096) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy and accuracy of every chain on ``split`` (all chains at once).

        Returns:
            ``(loss, accuracy)``, float64 ``[K]`` each.
        """
        return evaluate_stacked(self.net, split, batch_size)

    def export(self, k: int) -> nn.Module:
        """Chain ``k`` as an ordinary binary MLP (``build_model``'s ``MLP``, CPU, eval mode)
        with a copy of its weights: usable by ``mcmc_core.energy.evaluate``, MLflow, etc."""
        return self.net.export(k)

    @torch.no_grad()
    def full_energies(self) -> Tensor:
        """Energies recomputed by a full forward pass of every chain (ignores the caches)."""
        return self.energy_set.energies(self.net.preactivations(self.energy_set.inputs_t)[-1],
                                        self.net)
