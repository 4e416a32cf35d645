"""The fused CPU kernel (numba) against the tensor path, on random nets: the same candidate
energies, the same accepted flips, the same caches, bit for bit."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mcmc_core.data import DataConfig, DataSplits, load_dataset
from mcmc_core.population import ChainCache, EnergySet, Population

pytest.importorskip("numba")

CASES = [
    ([], {}),  # no hidden layer: last-layer rows from the inputs
    ([16], {"flip_ratio": [0.02, 0.2, 0.5, 0.05]}),  # padding, dense draws, repeated rows
    ([16], {"flip_ratio": 0.004}),  # one flip per layer
    ([16], {"margin_weight": 0.5, "margin": 3}),  # the hidden-margin term
    ([16], {"acceptance": "barker", "temperature": [0.0, 1e-3, 1e-2, 1.0]}),  # level moves
    ([5], {"temperature": 0.0}),  # greedy: level moves accepted
    ([], {"output_scale": 60.0}),  # large logits: shifted by each sample's largest
    ([16], {"output_scale": 40.0, "flip_ratio": [0.02, 0.2, 0.5, 0.05]}),
    ([16], {"label_smoothing": 0.1, "flip_ratio": [0.02, 0.2, 0.5, 0.05]}),  # every class's cells
    ([], {"label_smoothing": 0.05, "output_scale": 60.0}),
    ([16], {"smooth_hidden": 3.0}),  # a smooth hidden activation in the energy
    ([16], {"smooth_hidden": 2.0, "margin_weight": 0.5, "margin": 3, "label_smoothing": 0.1,
            "flip_ratio": [0.02, 0.2, 0.5, 0.05]}),
    ([16], {"smooth_hidden": 5.0, "output_scale": 40.0}),  # ... with shifted logits
]


@pytest.fixture(params=[(3, 600), (7, 457)], ids=["3-classes", "7-classes-odd-N"])
def data(request: pytest.FixtureRequest) -> DataSplits:
    """Synthetic bit images; an odd class count and sample count exercise the pairwise class
    sums' carried terms and the tiles' remainders."""
    classes, samples = request.param
    return load_dataset(DataConfig(name="synthetic", synthetic_classes=classes,
                                   synthetic_samples=samples, synthetic_shape=[1, 5, 5]))


def _population(data: DataSplits, hidden: list[int], kernel: str, **kwargs: Any) -> Population:
    kwargs.setdefault("temperature", 1e-2)
    kwargs.setdefault("flip_ratio", 0.05)
    return Population.build(data.train, hidden, data.n_classes, seeds=range(4), kernel=kernel,
                            **kwargs)


def _assert_same_state(a: Population, b: Population) -> None:
    assert all(torch.equal(x, y) for x, y in zip(a.net.weights, b.net.weights, strict=True))
    assert all(torch.equal(x, y) for x, y in zip(a.cache.pre, b.cache.pre, strict=True))
    for name in ("energies", "exp_last", "margin_sums"):
        x, y = getattr(a.cache, name), getattr(b.cache, name)
        assert (x is None and y is None) or torch.equal(x, y), name
    if a.cache.picked is not None and b.cache.picked is not None:
        assert torch.equal(a.cache.picked, b.cache.picked)


def _assert_fused_caches_fresh(pop: Population) -> None:
    """The fused kernel's own caches (per-sample class sums, shifted or not, and the picked
    sums) are those of the pre-activations."""
    cache = pop.cache
    if cache.net.needs_shift():
        sums, tops = EnergySet.shifted_sums(cache.pre[-1], cache.scale)
        assert cache.tops is not None and torch.equal(cache.tops, tops)
    else:
        sums = EnergySet.class_sum(cache.exp_last)
    assert torch.equal(cache.partition, sums)
    assert torch.equal(cache.picked, pop.energy_set.picked(cache.pre[-1], cache.bound))


@pytest.mark.parametrize("hidden, kwargs", CASES)
def test_fused_steps_equal_the_tensor_path(data: DataSplits, hidden: list[int],
                                           kwargs: dict[str, Any]) -> None:
    tensors = _population(data, hidden, "torch", **kwargs)
    fused = _population(data, hidden, "fused", **kwargs)
    assert fused.cache.fused and not tensors.cache.fused
    for _ in range(300):
        assert torch.equal(tensors.step(), fused.step())
    assert torch.equal(tensors.n_accepted, fused.n_accepted)
    assert 0 < int(fused.n_accepted.sum()) < 4 * 300  # some moves accepted, some rejected
    _assert_same_state(tensors, fused)
    _assert_fused_caches_fresh(fused)
    fresh = fused.net.preactivations(fused.energy_set.inputs_t, fused.cache.activation)
    assert all(torch.equal(x, y) for x, y in zip(fused.cache.pre, fresh, strict=True))
    torch.testing.assert_close(fused.energies, fused.full_energies(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hidden, kwargs", CASES[:4] + CASES[-5:])
def test_fused_propose_and_commit_equal_the_tensor_path(data: DataSplits, hidden: list[int],
                                                        kwargs: dict[str, Any]) -> None:
    """The cache's own API (what tempering and tests call): candidates from the same flips,
    then accepted or rejected by the same random masks."""
    tensors = _population(data, hidden, "torch", **kwargs)
    fused = _population(data, hidden, "fused", **kwargs)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        block = tensors._next_block()
        for b in range(block.length):
            flips = block.flips(b)
            assert torch.equal(tensors.cache.propose(flips), fused.cache.propose(flips))
            accepted = torch.rand(4, generator=gen) < 0.5
            tensors.cache.commit(accepted)
            fused.cache.commit(accepted)
        tensors.n_steps = fused.n_steps = block.start + block.length
    _assert_same_state(tensors, fused)
    _assert_fused_caches_fresh(fused)


def test_class_sum_is_the_same_for_every_shape() -> None:
    """The fixed pairwise order: a chain's sums do not depend on how many chains or samples
    share the tensor (``torch.sum`` over the classes does not promise that)."""
    values = torch.rand(5, 13, 301) ** 8 * 100
    whole = EnergySet.class_sum(values)
    for k in range(5):
        part = EnergySet.class_sum(values[k : k + 1, :, 17:50])
        assert torch.equal(part, whole[k : k + 1, 17:50])


def test_kernels_that_do_not_apply_are_refused(data: DataSplits) -> None:
    pop = _population(data, [4, 4], "auto")
    assert not pop.cache.fused  # two hidden layers: the tensor path
    with pytest.raises(ValueError, match="kernel='fused' covers binary MLPs"):
        ChainCache(pop.net, pop.energy_set, kernel="fused")
    with pytest.raises(ValueError, match="kernel='numba' is not allowed: expected one of "
                                         "auto, fused, torch"):
        ChainCache(pop.net, pop.energy_set, kernel="numba")
