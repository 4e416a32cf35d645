"""Seeded splitting and binarization rules shared by every dataset."""

from __future__ import annotations

import pytest
import torch

from mcmc_core.data import DataConfig
from mcmc_core.data import Split
from mcmc_core.data._splits import RawData
from mcmc_core.data._splits import binarize
from mcmc_core.data._splits import make_splits
from mcmc_core.data._splits import split_indices


@pytest.mark.parametrize(
    ("n", "val_fraction", "test_fraction", "sizes"),
    [
        (1797, 0.1, 0.2, (1294, 144, 359)),
        (10000, 0.1, 0.2, (7200, 800, 2000)),
        (100, 0.25, None, (75, 25, 0)),
        (3, 0.01, 0.01, (1, 1, 1)),  # tiny: every split keeps at least one sample
    ],
)
def test_split_indices_sizes_disjoint_and_complete(
    n: int, val_fraction: float, test_fraction: float | None, sizes: tuple[int, int, int]
) -> None:
    train, val, test = split_indices(n, val_fraction=val_fraction, test_fraction=test_fraction,
                                     seed=0)
    assert (len(train), len(val), len(test)) == sizes
    # No index is in two splits, and together they are every index.
    together = torch.cat([train, val, test])
    assert torch.equal(together.sort().values, torch.arange(n))


def test_split_indices_deterministic_per_seed_and_different_across_seeds() -> None:
    kwargs = {"val_fraction": 0.1, "test_fraction": 0.2}
    first = split_indices(500, seed=3, **kwargs)
    again = split_indices(500, seed=3, **kwargs)
    other = split_indices(500, seed=4, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[2].sort().values, other[2].sort().values)
    assert not torch.equal(first[1].sort().values, other[1].sort().values)


def test_split_indices_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    split_indices(50, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_split_indices_rejects_too_few_samples() -> None:
    with pytest.raises(ValueError, match="n=2"):
        split_indices(2, val_fraction=0.1, test_fraction=0.2, seed=0)


def test_mean_threshold_comes_from_the_train_split_only() -> None:
    # Train (and val, carved from it) holds values 0..9; the official test split holds 100s.
    # A mean over all the data would be ~36: train values 5..9 would then all binarize to -1.
    train_x = torch.arange(40, dtype=torch.uint8).remainder(10).reshape(40, 1, 1, 1)
    raw = RawData(inputs=train_x, targets=torch.zeros(40, dtype=torch.int64), n_classes=1,
                  value_range=(0.0, 255.0), test_inputs=torch.full((5, 1, 1, 1), 100),
                  test_targets=torch.zeros(5, dtype=torch.int64))
    cfg = DataConfig(val_fraction=0.25, split_seed=7)
    splits = make_splits(raw, cfg)
    train_idx, val_idx, _ = split_indices(40, val_fraction=0.25, test_fraction=None, seed=7)
    train_mean = train_x[train_idx].double().mean()
    # The expected threshold is the mean of the carved train split (not of train + val).
    assert train_mean != train_x.double().mean()
    expected_train = torch.where(train_x[train_idx] > train_mean, 1.0, -1.0)
    assert torch.equal(splits.train.inputs, expected_train)
    assert torch.equal(splits.val.inputs, torch.where(train_x[val_idx] > train_mean, 1.0, -1.0))
    assert torch.all(splits.test.inputs == 1.0)
    assert (splits.train.inputs == 1.0).any()


def test_mean_threshold_is_per_feature_and_ties_go_to_minus_one() -> None:
    # Feature 0 is constant (value == mean -> -1); feature 1 is 0/1 (-> 2 * x - 1).
    x = torch.stack([torch.full((6,), 3.0), torch.tensor([0.0, 1, 0, 1, 1, 0])], dim=1)
    x = x.reshape(6, 1, 1, 2)
    out = binarize(x, "mean", train_mean=x.double().mean(dim=0))
    assert torch.all(out[..., 0] == -1.0)
    assert torch.equal(out[..., 1], 2 * x[..., 1] - 1)


def test_half_threshold_is_the_middle_of_the_raw_range() -> None:
    x = torch.tensor([0, 127, 128, 255], dtype=torch.uint8).reshape(4, 1, 1, 1)
    out = binarize(x, "half", value_range=(0.0, 255.0))
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == [-1.0, -1.0, 1.0, 1.0]
    digits = torch.tensor([0, 8, 9, 16]).reshape(4, 1, 1, 1)
    assert binarize(digits, "half", value_range=(0.0, 16.0)).flatten().tolist() == [
        -1.0, -1.0, 1.0, 1.0]


def test_none_scales_the_raw_range_to_unit_interval() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(3, 1, 1, 1)
    out = binarize(x, "none", value_range=(0.0, 255.0))
    assert out.dtype == torch.float32
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 0.2, 1.0]))


def test_mean_rule_without_train_mean_is_an_error() -> None:
    with pytest.raises(ValueError, match="train_mean"):
        binarize(torch.zeros(2, 1, 1, 1), "mean")


def test_split_len_repr_and_length_check() -> None:
    split = Split(inputs=torch.zeros(4, 1, 2, 2), targets=torch.zeros(4, dtype=torch.int64))
    assert len(split) == 4
    assert repr(split) == "Split(n=4, inputs=(4, 1, 2, 2) torch.float32)"
    with pytest.raises(ValueError, match="3 inputs and 4 targets"):
        Split(inputs=torch.zeros(3, 1, 2, 2), targets=torch.zeros(4, dtype=torch.int64))
