"""CUDA graphs of population steps: each step's kernels launched as one captured graph.

A population step is 50-100 small tensor operations. On an H100, launching them from Python
costs 0.5-0.7 ms per step, several times the GPU work of a 32-chain step on the digits or a
784-100-10 MLP (``benchmarks/population_scaling.py``). :class:`StepGraphs` captures one step
per flipped layer (``proposal="layer"``; one graph for ``"all"``) and replays it.

A graph replays fixed addresses, so the step it captured reads its random draws from a block of
its own (:meth:`ProposalBlock.copy_` loads each new block of draws into it) at a step index held
in a device tensor (set by a fill kernel before each replay, no host-to-device copy), and writes
into work buffers of its own (:meth:`ChainCache.separate_buffers`). The graphs are captured again
whenever a tensor they read or write was replaced (chains kept or dropped, a state loaded); the
first step of each layer runs eagerly, so that CUDA's lazy initialisation happens outside a
capture. Replayed steps equal eager ones bit for bit (tested on a GPU; the same static-draw path
runs uncaptured on any device in the CPU tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from mcmc_core.population._cache import ChainCache
from mcmc_core.population._proposal import LayerFlips, ProposalBlock

__all__ = ["StepGraphs"]

_ALL_LAYERS = -1  # the graph key of proposal="all"


class StepGraphs:
    """Steps of a population taken by replaying captured CUDA graphs (all its chains at once,
    sync-free commits). Off CUDA nothing is captured: each step runs eagerly from the same
    fixed draws and device-side step index that a graph replays (what the CPU tests check).

    Args:
        cache: the population's weights and caches.
        advance: the population's step of some chains, ``advance(flips, chains, threshold,
            tie)`` (:meth:`Population._advance <mcmc_core.population.Population._advance>`).
        counters: the tensors ``advance`` writes beside the cache (acceptance counts).
    """

    def __init__(self, cache: ChainCache,
                 advance: Callable[[dict[int, LayerFlips], slice, Tensor, Tensor | None], None],
                 counters: Callable[[], Sequence[Tensor]]) -> None:
        self._cache, self._advance, self._counters = cache, advance, counters
        self._capture = cache.net.device.type == "cuda"
        self._steps: dict[int, Callable[[], None]] = {}
        self._keep: list[object] = []  # graphs' work buffers, alive as long as the graphs
        self._warm: set[int] = set()
        self._draws: ProposalBlock | None = None
        self._loaded: ProposalBlock | None = None
        self._b: Tensor | None = None
        self._signature: tuple[int, ...] = ()

    def step(self, block: ProposalBlock, b: int) -> bool:
        """Take step ``b`` of ``block`` for every chain from a graph. Returns False, having done
        nothing, where the step must run eagerly: the first step of each graph."""
        key = _ALL_LAYERS if block.layers is None else block.layers[b]
        if key not in self._warm:
            self._warm.add(key)
            return False
        signature = self._tensors_signature()
        if signature != self._signature:  # a captured tensor was replaced: capture again
            self._steps.clear()
            self._keep.clear()
            self._draws = self._loaded = None
            self._signature = signature
        if self._draws is None or self._b is None:
            self._draws, self._loaded = block.clone(), block
            self._b = torch.zeros(1, dtype=torch.int64, device=block.threshold.device)
        elif self._loaded is not block:
            self._draws.copy_(block)
            self._loaded = block
        self._b.fill_(b)
        run = self._steps.get(key)
        if run is None:
            run = self._steps[key] = self._record(key)
        run()
        return True

    def _record(self, key: int) -> Callable[[], None]:
        cache, draws, b = self._cache, self._draws, self._b
        assert draws is not None and b is not None
        layer = None if key == _ALL_LAYERS else key
        chains = slice(0, len(cache.net))

        def advance() -> None:
            self._advance(draws.flips(b, layer), chains, draws.threshold_at(b), draws.tie_at(b))

        if not self._capture:
            return advance
        graph, device = torch.cuda.CUDAGraph(), cache.net.device
        # On the population's device (a worker's cuda:N need not be the current device), on a
        # side stream of that device.
        with torch.cuda.device(device), cache.separate_buffers() as buffers, torch.cuda.graph(
                graph, stream=torch.cuda.Stream(device), capture_error_mode="thread_local"):
            advance()
        self._keep.append(buffers)
        return graph.replay

    def _tensors_signature(self) -> tuple[int, ...]:
        """Addresses of every tensor a step reads or writes beside its draws and buffers."""
        cache = self._cache
        tensors = [*cache.net.weights, *cache.pre, cache.energies, cache.exp_last, cache.picked,
                   *self._counters(), cache.energy_set.inputs_t]
        return tuple(-1 if t is None else t.data_ptr() for t in tensors)
