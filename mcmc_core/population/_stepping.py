"""The batched kernel's step (:class:`BatchedStepper`, a base of
:class:`~mcmc_core.population.Population`): a block of draws per chain, every chain's candidate
evaluated from its flips alone (:class:`~mcmc_core.population.ChainCache`), accepted or rejected
through masks; on CUDA, replayed as captured graphs (:class:`StepGraphs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mcmc_core import functional as F
from mcmc_core.population._graphs import StepGraphs
from mcmc_core.population._proposal import LayerFlips, ProposalBlock, layer_schedule

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcmc_core.energy import EnergySet
    from mcmc_core.population._incremental import ChainCache
    from mcmc_core.population._random import ChainRandom
    from mcmc_core.population._weights import StackedMLP

__all__ = ["BatchedStepper"]

_CHUNK_BYTES = 24 << 20  # measured on a 2-core Xeon (2 MB L2 per core): see benchmarks/README
# Steps of one set of flip counts below which the next set runs as many steps before its CUDA
# graphs are captured. Measured once, ad hoc, on an H100 (digits, K=32): a change of counts cost
# ~17 ms with graphs (two captures), about 30 steps' gain.
_GRAPH_MIN_STEPS = 64


class BatchedStepper:
    """Stepping of ``K`` chains at once; :class:`~mcmc_core.population.Population` holds the
    state it reads (weights and caches, streams, per-chain hyperparameters, counts)."""

    cache: ChainCache
    random: ChainRandom
    net: StackedMLP
    energy_set: EnergySet
    flip_ratio: Tensor
    temperature: Tensor
    acceptance: str
    proposal: str
    boltzmann: float
    layer_seed: int
    chunk: int | None
    graphs: bool
    n_steps: int
    n_accepted: Tensor
    _counts: list[list[int]]
    _steps_with_counts: int
    _graphs_after: int
    _step_graphs: StepGraphs | None
    _block: ProposalBlock | None

    _schedule: Callable[[int, int], Tensor] | None = None

    @property
    def schedule(self) -> Callable[[int, int], Tensor] | None:
        """The temperature schedule (``Population``'s); a new one applies from the next step."""
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

    @torch.no_grad()
    def _step(self) -> None:
        block = self._block
        if block is None or self.n_steps >= block.start + block.length:
            block = self._block = self._next_block()
        b = self.n_steps - block.start
        graphs = self._step_graphs
        if graphs is None and self.graphs and self._steps_with_counts >= self._graphs_after:
            graphs = self._step_graphs = StepGraphs(self)
        if graphs is None or not graphs.step(block, b):
            flips, threshold, tie = block.flips(b), block.threshold_at(b), block.tie_at(b)
            k, chunk = len(self), self._chunk_size()
            for start in range(0, k, chunk):
                part = slice(start, min(k, start + chunk))
                part_flips = flips if chunk >= k else {
                    i: LayerFlips(*(None if t is None else t[part] for t in (
                        f.weight, f.row, f.source, f.column, f.valid)))  # type: ignore[misc]
                    for i, f in flips.items()}
                self._advance(part_flips, part, threshold[part],
                              None if tie is None else tie[part])
        self.n_steps += 1
        self._steps_with_counts += 1

    def _advance(self, flips: dict[int, LayerFlips], part: slice, threshold: Tensor,
                 tie: Tensor | None) -> None:
        """Propose ``flips`` to the chains ``part`` and accept or reject each: a move is
        accepted iff ``dE < threshold``, or ``dE <= 0`` (Metropolis, ``tie`` None), or ``dE == 0
        and tie`` (Barker)."""
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
        if self.net.device.type != "cpu":  # no cache to fit: one launch per operation is best
            return len(self)
        n = self.energy_set.inputs_t.shape[1]
        flips = max(max(c) for c in self._counts)
        per_chain = 4 * n * (5 * flips + 4 * self.net.n_classes)
        return max(1, min(len(self), _CHUNK_BYTES // per_chain))
