"""A population of sign-flip MCMC chains advanced together (:class:`Population`): its chains and
their per-chain hyperparameters, its batched step (a block of draws per chain, every chain's
candidate evaluated from its flips alone by :class:`~mcmc_core.population.ChainCache`, accepted
or rejected through masks; on CUDA replayed as graphs, :class:`StepGraphs`), its state dict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mcmc_core import functional as F
from mcmc_core.data import Split
from mcmc_core.population._cache import ChainCache
from mcmc_core.population._energy_set import EnergySet
from mcmc_core.population._graphs import StepGraphs
from mcmc_core.population._proposal import LayerFlips, ProposalBlock, layer_schedule
from mcmc_core.population._random import MAX_PURPOSE, ChainRandom
from mcmc_core.layers import OUTPUT_SCALE
from mcmc_core.population._weights import StackedMLP, evaluate_stacked

__all__ = ["HYPERPARAMETERS", "PROPOSALS", "Population", "per_chain"]

PROPOSALS = F.PROPOSALS
#: The per-chain hyperparameters, float64 ``[K]`` tensors.
HYPERPARAMETERS = ("temperature", "flip_ratio")

_CHUNK_BYTES = 24 << 20  # measured on a 2-core Xeon (2 MB L2 per core): see benchmarks/README
# Steps of one set of flip counts below which the next set runs as many steps before its CUDA
# graphs are captured. Measured once, ad hoc, on an H100 (digits, K=32): a change of counts cost
# ~17 ms with graphs (two captures), about 30 steps' gain.
_GRAPH_MIN_STEPS = 64


def per_chain(value: float | Sequence[float] | Tensor, k: int, name: str,
              device: torch.device) -> Tensor:
    """``value`` (one, or one per chain) as a float64 ``[k]`` tensor on ``device``."""
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(k)
    if t.numel() != k:
        raise ValueError(f"{name} must be one value or one per chain ({k}), but got {t.numel()}.")
    return t.clone().to(device)


class Population:
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
            hold, and no margin term. Results do not depend on it (default: None).
        margin_weight, margin: the hidden-margin term of every energy (see
            :class:`ChainCache`; default: 0, off, and 20).
        smooth_hidden: the width ``tau`` of the smooth hidden activation ``tanh(Z / tau)`` in
            every energy (see :class:`ChainCache`; default: 0, the binary net's ``sign``).
        kernel: ``"auto"``, ``"fused"`` or ``"torch"``: how a step is computed (see
            :class:`ChainCache`). Results do not depend on it (default: ``"auto"``).

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
                 sync_free: bool | None = None, graphs: bool | None = None,
                 margin_weight: float = 0.0, margin: int = 20, smooth_hidden: float = 0.0,
                 kernel: str = "auto") -> None:
        k, device = len(net), net.device
        F.check_rules(acceptance, proposal, boltzmann)
        if len(net.weights) >= MAX_PURPOSE:
            raise ValueError(f"at most {MAX_PURPOSE - 1} layers are supported.")
        self.acceptance, self.proposal, self.boltzmann = acceptance, proposal, float(boltzmann)
        self.layer_seed = int(layer_seed)
        self.chunk, self.schedule = chunk, schedule
        if margin_weight < 0 or margin < 1:
            raise ValueError(f"margin_weight must be >= 0 and margin >= 1, but got "
                             f"{margin_weight=}, {margin=}.")
        self.cache = ChainCache(net, energy_set, sync_free, margin_weight=margin_weight,
                                margin=margin, smooth_hidden=smooth_hidden, kernel=kernel)
        can_graph = device.type == "cuda" and self.cache.sync_free and (
            chunk is None or chunk >= k) and self.cache.margin_sums is None and (
            not self.cache.activation.smooth)
        if graphs and not can_graph:
            raise ValueError(f"graphs=True needs a CUDA device, sync_free, one chunk of all "
                             f"chains, no margin term and no smooth hidden activation, but got "
                             f"device={device.type!r}, sync_free={self.cache.sync_free}, "
                             f"{chunk=} for {k} chains, {margin_weight=}, {smooth_hidden=}.")
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
              output_scale: float = OUTPUT_SCALE, samples: int | None = None, sample_seed: int = 0,
              device: torch.device | str = "cpu", label_smoothing: float = 0.0,
              **kwargs: Any) -> Population:
        """Chains whose start weights are ``build_model(ModelConfig("mlp", hidden,
        output_scale=...), ..., seed=seeds[k])`` and whose streams are keyed by the same seeds,
        on the energy set ``EnergySet(split, samples=samples, seed=sample_seed,
        label_smoothing=label_smoothing)``. ``kwargs`` go to the constructor."""
        seeds = [int(s) for s in seeds]
        net = StackedMLP.build(split.inputs.shape[1:], hidden, n_classes, seeds,
                               output_scale=output_scale, device=device)
        energy_set = EnergySet(split, samples=samples, seed=sample_seed, device=device,
                               label_smoothing=label_smoothing)
        return cls(net, energy_set, seeds=seeds, **kwargs)

    # ----------------------------------------------------------------------------- chains' values
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

    # ----------------------------------------------------------------------------- hyperparameters
    def _check_hyper(self) -> None:
        for k, (t, fr) in enumerate(zip(self._temperature.tolist(), self._flip_ratio.tolist())):
            F.check_chain(t, fr, f"chains[{k}]")

    def _set_hyper(self, name: str, value: float | Sequence[float] | Tensor) -> None:
        old = getattr(self, f"_{name}")
        setattr(self, f"_{name}", per_chain(value, len(old), name, old.device))
        try:
            self._check_hyper()
        except ValueError:
            setattr(self, f"_{name}", old)
            raise
        self._layout()

    temperature = property(lambda self: self._temperature,
                           lambda self, v: self._set_hyper("temperature", v),
                           doc="Every chain's temperature without a ``schedule``, float64 ``[K]``.")
    flip_ratio = property(lambda self: self._flip_ratio,
                          lambda self, v: self._set_hyper("flip_ratio", v),
                          doc="Flip ratio of every chain, float64 ``[K]``.")

    @property
    def schedule(self) -> Callable[[int, int], Tensor] | None:
        """The temperature schedule (see Args); a new one applies from the next step."""
        return self._schedule

    @schedule.setter
    def schedule(self, schedule: Callable[[int, int], Tensor] | None) -> None:
        self._schedule, self._block = schedule, None

    def _layout(self) -> None:
        """Flip counts per chain and layer; forget the drawn block. Where the counts changed,
        steps are captured anew (:class:`StepGraphs`, at the next step), unless the counts
        before lasted fewer than ``_GRAPH_MIN_STEPS`` steps: then the new ones run that many
        steps eagerly first (e.g. under a per-step flip-ratio schedule), since a capture costs
        more than it saves over a few steps."""
        numels = [w[0].numel() for w in self.net.weights]
        counts = [[F.flip_count(fr, n) for n in numels] for fr in self.flip_ratio.tolist()]
        if counts != self._counts:
            short = bool(self._counts) and self._steps_with_counts < _GRAPH_MIN_STEPS
            self._graphs_after = _GRAPH_MIN_STEPS if short else 0
            self._counts, self._steps_with_counts = counts, 0
            self._step_graphs = None
        self._block: ProposalBlock | None = None
        if not self.graphs:
            self._step_graphs = None

    def _next_block(self) -> ProposalBlock:
        numels = [w[0].numel() for w in self.net.weights]
        length = ProposalBlock.block_length(len(self), self._counts, numels)
        layers = None
        if self.proposal == "layer":
            layers = layer_schedule(self.layer_seed, self.n_steps, length, len(numels))
        return ProposalBlock(self.random, self.n_steps, length, layers, self._counts,
                             [tuple(w.shape[1:]) for w in self.net.weights],
                             self._temperatures(self.n_steps, length) * self.boltzmann,
                             self.acceptance)

    def _temperatures(self, start: int, length: int) -> Tensor:
        """Every chain's temperature at steps ``start .. start + length - 1``: ``[K, length]``."""
        if self.schedule is not None:
            values = torch.as_tensor(self.schedule(start, length), dtype=torch.float64)
            if values.shape != (len(self), length) or not bool((values >= 0).all()):
                raise ValueError(f"schedule({start}, {length}) must give temperatures >= 0 "
                                 f"shaped ({len(self)}, {length}), but got {values}.")
            return values.to(self.net.device)
        return self.temperature.unsqueeze(1).expand(-1, length)

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

    @torch.no_grad()
    def _step(self) -> None:
        block = self._block
        if block is None or self.n_steps >= block.start + block.length:
            block = self._block = self._next_block()
        b = self.n_steps - block.start
        graphs = self._step_graphs
        if graphs is None and self.graphs and self._steps_with_counts >= self._graphs_after:
            graphs = self._step_graphs = StepGraphs(self.cache, self._advance,
                                                        lambda: [self.n_accepted])
        if graphs is None or not graphs.step(block, b):
            k, chunk = len(self), self._chunk_size()
            # The fused kernel takes a whole step from the block's numpy views where it applies.
            if chunk < k or not self.cache.advance_at(block, b, self.n_accepted):
                self._advance_parts(block, b, k, chunk)
        self.n_steps += 1
        self._steps_with_counts += 1

    def _advance_parts(self, block: ProposalBlock, b: int, k: int, chunk: int) -> None:
        """Step ``b`` of ``block``, ``chunk`` chains at a time (:meth:`_advance`)."""
        flips, threshold, tie = block.flips(b), block.threshold_at(b), block.tie_at(b)
        for start in range(0, k, chunk):
            part = slice(start, min(k, start + chunk))
            part_flips = flips if chunk >= k else {
                i: LayerFlips(*(None if t is None else t[part] for t in (
                    f.weight, f.row, f.source, f.column, f.valid)))  # type: ignore[misc]
                for i, f in flips.items()}
            self._advance(part_flips, part, threshold[part], None if tie is None else tie[part])

    def _advance(self, flips: dict[int, LayerFlips], part: slice, threshold: Tensor,
                 tie: Tensor | None) -> None:
        """Propose ``flips`` to the chains ``part`` and accept or reject each: a move is
        accepted iff ``dE < threshold``, or ``dE <= 0`` (Metropolis, ``tie`` None), or ``dE == 0
        and tie`` (Barker)."""
        if self.cache.advance(flips, part, threshold, tie, self.n_accepted[part]):
            return  # the fused kernel did it all
        delta = self.cache.propose(flips, part) - self.cache.energies[part]
        accepted = delta < threshold
        if tie is None:  # Metropolis: downhill and level moves are always accepted
            accepted |= delta <= 0
        else:  # Barker: a level move with probability 1/2
            accepted |= (delta == 0) & tie
        self.cache.commit(accepted)
        self.n_accepted[part] += accepted

    def _chunk_size(self) -> int:
        """Chains per batched operation: ``chunk``, or by default as many as keep a step's
        work buffers near ``_CHUNK_BYTES`` (about ``4 N (5 M + 4 classes)`` bytes per chain for
        ``M`` flips per layer): beyond the caches, batching more chains only adds memory
        traffic."""
        if self.chunk is not None:
            return max(1, self.chunk)
        if self.net.device.type != "cpu" or self.cache.fused:
            return len(self)  # one launch per operation is best; the fused kernel loops
        n = self.energy_set.inputs_t.shape[1]
        flips = max(max(c) for c in self._counts)
        per_chain = 4 * n * (5 * flips + 4 * self.net.n_classes)
        return max(1, min(len(self), _CHUNK_BYTES // per_chain))

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

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Weights, step count, per-chain hyperparameters, random-stream state (the seeds: a
        chain's stream is a function of its seed and the step), acceptance counts, energies
        and ids. The energy set is not included."""
        return {"weights": [w.clone() for w in self.net.weights],
                "output_scale": self.net.output_scale, "n_steps": self.n_steps,
                "seeds": self.random.seeds.clone(), "n_accepted": self.n_accepted.clone(),
                "energies": self.cache.energies.clone(), "ids": list(self.ids),
                "acceptance": self.acceptance, "proposal": self.proposal,
                "boltzmann": self.boltzmann, "layer_seed": self.layer_seed,
                "margin": self._margin_key(),
                "label_smoothing": self.energy_set.label_smoothing,
                "smooth_hidden": self.cache.activation.width,
                **{name: getattr(self, name).clone() for name in HYPERPARAMETERS}}

    def chain_state(self, k: int) -> dict[str, Any]:
        """The :meth:`state_dict` of chain ``k`` alone: what a population of one that took the
        same steps would save (a trial's checkpoint, whatever population it ran in)."""
        state = self.state_dict()
        one = {key: (value[k:k + 1].clone() if isinstance(value, Tensor) else value)
               for key, value in state.items()}
        one["weights"] = [w[k:k + 1].clone() for w in state["weights"]]
        one["ids"] = [state["ids"][k]]
        return one

    def resume_at(self, n_steps: int, n_accepted: Sequence[int]) -> None:
        """Continue chains whose weights were loaded from a run that took ``n_steps`` steps
        with ``n_accepted`` acceptances each: the next step is that run's next step (its
        draws, layer and temperatures), so the chains go on bit-identically."""
        if len(n_accepted) != len(self):
            raise ValueError(f"n_accepted must have one entry per chain ({len(self)}), but got "
                             f"{len(n_accepted)}.")
        self.n_steps = int(n_steps)
        self.n_accepted = torch.tensor([int(a) for a in n_accepted], dtype=torch.int64,
                                       device=self.net.device)
        self._layout()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (its number of chains may differ from the current one);
        the caches are rebuilt from the weights, so the next step is the one the saved
        population would have taken. Energies of None are recomputed from the weights."""
        shapes = [tuple(w.shape[1:]) for w in self.net.weights]
        saved = [tuple(w.shape[1:]) for w in state["weights"]]
        if saved != shapes or state["output_scale"] != self.net.output_scale:
            raise ValueError(f"the state is of another architecture: layers {saved}, "
                             f"output_scale {state['output_scale']}; this population has "
                             f"{shapes}, {self.net.output_scale}.")
        device = self.net.device
        self.net.weights = [w.to(device, torch.float32).clone() for w in state["weights"]]
        self.acceptance, self.proposal = state["acceptance"], state["proposal"]
        self.boltzmann = float(state["boltzmann"])
        self.layer_seed = int(state["layer_seed"])
        for name in HYPERPARAMETERS:
            setattr(self, f"_{name}", state[name].to(device, torch.float64).clone())
        self.random = ChainRandom(state["seeds"], device)
        self.n_steps = int(state["n_steps"])
        self.n_accepted = state["n_accepted"].to(device).clone()
        self.ids = list(state["ids"])
        self.cache.rebuild()
        # Saved energies hold the saved run's energy terms (none in older states).
        if state["energies"] is not None and state.get("margin") == self._margin_key() and (
                state.get("label_smoothing", 0.0) == self.energy_set.label_smoothing) and (
                state.get("smooth_hidden", 0.0) == self.cache.activation.width):
            self.cache.energies = state["energies"].to(device, torch.float64).clone()
        self._layout()

    def _margin_key(self) -> tuple[float, int] | None:
        cache = self.cache
        return (cache.margin_weight, cache.margin) if cache.margin_weight > 0 else None

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
        cache = self.cache
        pre = self.net.preactivations(self.energy_set.inputs_t, cache.activation)
        energies = self.energy_set.energies(pre[-1], cache.scale, cache.bound)
        if cache.margin_sums is not None:
            energies = energies + cache.margin_sum(pre[0]) * cache.margin_scale()
        return energies
