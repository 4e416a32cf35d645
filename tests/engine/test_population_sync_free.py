"""Populations stepped without host synchronisation (the CUDA path), checked on any device.

A step must not read a device value on the host (``nonzero``, ``item``, ``bool(tensor)``) nor
copy host data to the device: on a GPU each of these stalls the stream. On the CPU the same
operators are recorded through a dispatch mode; on a GPU (when present) CUDA's own sync debug
mode raises on them. On a GPU the steps are also replayed from captured CUDA graphs
(:class:`StepGraphs`), which read fixed draws at a device-side step index: on the CPU that path
runs uncaptured, and must take exactly the eager steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mcmc_core.data import DataSplits
from mcmc_core.population import Population
from mcmc_core.population._population import _GRAPH_MIN_STEPS

#: Operators that wait for the device (a value read on the host) or move host data to it.
_SYNCING = {"aten::nonzero", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal",
            "aten::item", "aten::lift_fresh"}

CASES = [
    ([], {}),  # last-layer rows, put back where rejected
    ([8], {"flip_ratio": [0.02, 0.2, 0.5, 0.05]}),  # hidden rows, padding, repeats, low rank
    ([8], {"flip_ratio": 0.005}),  # one flip per layer: a rank-1 (outer product) update
    ([8, 6], {"flip_ratio": 0.1}),  # dense updates below the first changed layer
    ([8, 6], {"proposal": "all", "flip_ratio": [0.02, 0.1, 0.3, 0.05]}),
    ([8], {"output_scale": 40.0}),  # large logits: the max-shifted loss, no cached exponentials
    ([8], {"acceptance": "barker", "temperature": [0.0, 1e-3, 1e-2, 1.0]}),
    ([8, 6], {"smooth_hidden": 3.0, "flip_ratio": [0.02, 0.1, 0.3, 0.05]}),  # table lookups
]


class _SyncRecorder(TorchDispatchMode):
    """Records the syncing operators run inside it (and host-to-device moves by ``.to``)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        name, kwargs = func._schema.name, kwargs or {}
        if name in _SYNCING or (name == "aten::_to_copy" and kwargs.get("device") is not None):
            self.seen.append(name)
        return func(*args, **kwargs)


def _fixed_draws(pop: Population) -> Population:
    """``pop`` stepping through :class:`StepGraphs` (uncaptured off CUDA), also after
    ``keep``, ``drop`` and ``load_state_dict``."""
    pop.graphs = True  # the constructor refuses graphs=True off CUDA; the path itself runs
    pop._layout()
    return pop


def _population(data: DataSplits, hidden: list[int], device: str = "cpu",
                **kwargs: Any) -> Population:
    kwargs.setdefault("temperature", 1e-2)
    kwargs.setdefault("flip_ratio", 0.05)
    return Population.build(data.train, hidden, data.n_classes, seeds=range(4), device=device,
                            **kwargs)


def _steps_left_in_block(pop: Population) -> int:
    """Steps until the next block of draws (drawing a block may sync, once per block)."""
    if pop._block is None:
        pop.step()
    block = pop._block
    assert block is not None
    return block.start + block.length - pop.n_steps


def _assert_caches_fresh(pop: Population) -> None:
    fresh = pop.net.preactivations(pop.energy_set.inputs_t, pop.cache.activation)
    for cached, full in zip(pop.cache.pre, fresh, strict=True):
        assert torch.equal(cached, full)
    if pop.cache.exp_last is not None:
        assert torch.equal(pop.cache.exp_last, torch.mul(fresh[-1], pop.cache.scale).exp_())
    torch.testing.assert_close(pop.energies, pop.full_energies(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hidden, kwargs", CASES)
def test_masked_commit_takes_the_same_steps(synthetic: DataSplits, hidden: list[int],
                                            kwargs: dict[str, Any]) -> None:
    selected = _population(synthetic, hidden, sync_free=False, **kwargs)
    masked = _population(synthetic, hidden, sync_free=True, **kwargs)
    for _ in range(300):
        torch.testing.assert_close(selected.step(), masked.step(), rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(selected.net.weights, masked.net.weights))
    assert torch.equal(selected.n_accepted, masked.n_accepted)
    assert 0 < int(masked.n_accepted.sum()) < 4 * 300  # some moves accepted, some rejected
    _assert_caches_fresh(masked)


@pytest.mark.parametrize("hidden, kwargs", CASES)
def test_sync_free_steps_do_not_wait_for_the_device(synthetic: DataSplits, hidden: list[int],
                                                    kwargs: dict[str, Any]) -> None:
    pop = _population(synthetic, hidden, sync_free=True, **kwargs)
    pop.run(5)
    n = _steps_left_in_block(pop)
    assert n > 3
    with _SyncRecorder() as recorder:
        pop.run(n)
    assert recorder.seen == []
    _assert_caches_fresh(pop)


def test_the_recorder_sees_the_selected_commits_sync(synthetic: DataSplits) -> None:
    pop = _population(synthetic, [8], sync_free=False, kernel="torch")  # the tensor path
    pop.run(5)
    n = _steps_left_in_block(pop)
    with _SyncRecorder() as recorder:
        pop.run(n)
    assert "aten::nonzero" in recorder.seen


def test_sync_free_is_off_by_default_on_the_cpu(synthetic: DataSplits) -> None:
    assert _population(synthetic, [8]).cache.sync_free is False
    assert _population(synthetic, [8], sync_free=True).cache.sync_free is True


@pytest.mark.parametrize("hidden, kwargs", CASES)
def test_fixed_draw_steps_equal_eager_steps(synthetic: DataSplits, hidden: list[int],
                                            kwargs: dict[str, Any]) -> None:
    eager = _population(synthetic, hidden, sync_free=True, **kwargs)
    fixed = _fixed_draws(_population(synthetic, hidden, sync_free=True, **kwargs))
    for _ in range(300):  # several blocks of draws, each loaded into the fixed ones
        torch.testing.assert_close(eager.step(), fixed.step(), rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(eager.net.weights, fixed.net.weights))
    assert torch.equal(eager.n_accepted, fixed.n_accepted)
    n_graphs = 1 if kwargs.get("proposal") == "all" else len(hidden) + 1
    assert fixed._step_graphs is not None and len(fixed._step_graphs._steps) == n_graphs
    _assert_caches_fresh(fixed)


def test_short_lived_flip_counts_step_eagerly_before_a_capture(synthetic: DataSplits) -> None:
    pop = _fixed_draws(_population(synthetic, [8], sync_free=True, flip_ratio=0.02))
    pop.run(2)
    captured = pop._step_graphs
    assert captured is not None
    pop.temperature = 2e-2  # the same flip counts: the captured steps stay
    pop.run(2)
    assert pop._step_graphs is captured
    for ratio in (0.05, 0.1):  # new counts every 10 steps (layer 0: 3, 6, 13 flips)
        pop.flip_ratio = ratio
        pop.run(10)
        assert pop._step_graphs is None
    pop.run(_GRAPH_MIN_STEPS - 10)
    assert pop._step_graphs is None
    pop.run(1)  # these counts have lasted long enough
    assert pop._step_graphs is not None


def test_graphs_need_cuda(synthetic: DataSplits) -> None:
    assert _population(synthetic, [8]).graphs is False
    with pytest.raises(ValueError, match="graphs=True needs a CUDA device.*'cpu'"):
        _population(synthetic, [8], sync_free=True, graphs=True)


def _graph_population(data: DataSplits, device: str, **kwargs: Any) -> Population:
    pop = _population(data, [8], device=device, sync_free=True, **kwargs)
    return _fixed_draws(pop) if device == "cpu" else pop


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_graph_steps_follow_dropped_chains_and_loaded_states(synthetic: DataSplits,
                                                             device: str) -> None:
    ratios = {"flip_ratio": [0.02, 0.2, 0.5, 0.05]}
    graphed = _graph_population(synthetic, device, **ratios)
    eager = _population(synthetic, [8], device=device, sync_free=True, graphs=False, **ratios)
    assert graphed.graphs and not eager.graphs
    for pop in (graphed, eager):
        pop.run(70)
        pop.drop(1)  # new tensors: the graphs are captured again
        pop.run(30)
    state = graphed.state_dict()
    after = graphed.run(50)
    torch.testing.assert_close(eager.run(50), after, rtol=0, atol=0)
    graphed.load_state_dict(state)
    torch.testing.assert_close(graphed.run(50), after, rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(eager.net.weights, graphed.net.weights))
    _assert_caches_fresh(graphed)


@contextmanager
def _cuda_sync_errors() -> Iterator[None]:
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("graphs", [False, True])
@pytest.mark.parametrize("hidden, kwargs", CASES)
def test_cuda_population_steps_without_syncs(synthetic: DataSplits, hidden: list[int],
                                             kwargs: dict[str, Any], graphs: bool) -> None:
    pop = _population(synthetic, hidden, device="cuda", graphs=graphs, **kwargs)
    assert pop.cache.sync_free and pop._chunk_size() == len(pop)  # one launch per operation
    pop.run(130 if graphs else 5)  # graphs: every layer's step captured, a new block loaded
    n = _steps_left_in_block(pop)
    with _cuda_sync_errors():
        pop.run(n)
    torch.cuda.synchronize()
    assert int(pop.n_accepted.sum()) > 0
    _assert_caches_fresh(pop)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("hidden, kwargs", CASES)
def test_cuda_graph_steps_equal_eager_steps(synthetic: DataSplits, hidden: list[int],
                                            kwargs: dict[str, Any]) -> None:
    graphed = _population(synthetic, hidden, device="cuda:0", **kwargs)  # an index, as workers
    eager = _population(synthetic, hidden, device="cuda:0", graphs=False, **kwargs)
    assert graphed.graphs and not eager.graphs  # graphs by default on CUDA
    for _ in range(300):
        torch.testing.assert_close(eager.step(), graphed.step(), rtol=0, atol=0)
    assert all(torch.equal(a, b) for a, b in zip(eager.net.weights, graphed.net.weights))
    assert torch.equal(eager.n_accepted, graphed.n_accepted)
    assert graphed._step_graphs is not None and graphed._step_graphs._capture
    assert len(graphed._step_graphs._steps) > 0
    _assert_caches_fresh(graphed)
