"""The default dataset: scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

from collections import Counter

import torch

from mcmc_core.data import DataConfig
from mcmc_core.data import DataSplits
from mcmc_core.data import load_dataset
from mcmc_core.data._digits import _digits_arrays
from mcmc_core.data._splits import split_indices


def _rows(splits: DataSplits) -> Counter[tuple[bytes, int]]:
    """Multiset of (input bytes, label) over the three splits."""
    rows: Counter[tuple[bytes, int]] = Counter()
    for split in (splits.train, splits.val, splits.test):
        for x, y in zip(split.inputs, split.targets, strict=True):
            rows[(x.numpy().tobytes(), int(y))] += 1
    return rows


def test_digits_shapes_classes_and_split_sizes() -> None:
    splits = load_dataset(DataConfig(name="digits"))
    assert splits.name == "digits"
    assert splits.input_shape == (1, 8, 8)
    assert splits.n_classes == 10
    # 20 % test, then 10 % of the rest for validation.
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1294, 144, 359)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    for split in (splits.train, splits.val, splits.test):
        assert split.inputs.shape[1:] == (1, 8, 8)
        assert split.inputs.dtype == torch.float32
        assert split.targets.dtype == torch.int64
        assert set(split.inputs.unique().tolist()) == {-1.0, 1.0}
    assert set(splits.train.targets.tolist()) == set(range(10))


def test_digits_matches_scikit_learn() -> None:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    inputs, targets = _digits_arrays()
    assert torch.equal(inputs.reshape(-1, 64).double(), torch.from_numpy(images))
    assert torch.equal(targets, torch.from_numpy(labels).long())


def test_digits_splits_are_a_disjoint_cover_of_the_samples() -> None:
    # Values scaled by 1/16 are exact, so each split's rows map back to the original samples.
    inputs, targets = _digits_arrays()
    splits = load_dataset(DataConfig(name="digits", binarize="none", split_seed=5))
    train, val, test = split_indices(1797, val_fraction=0.1, test_fraction=0.2, seed=5)
    # Each split holds exactly the samples at its indices...
    for split, idx in ((splits.train, train), (splits.val, val), (splits.test, test)):
        assert torch.equal(split.inputs * 16, inputs[idx].float())
        assert torch.equal(split.targets, targets[idx])
    # ... and together the splits hold every sample exactly once (duplicates included).
    expected: Counter[tuple[bytes, int]] = Counter(
        ((x.float() / 16).numpy().tobytes(), int(y)) for x, y in zip(inputs, targets, strict=True))
    assert _rows(splits) == expected


def test_digits_split_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    first = load_dataset(DataConfig(name="digits", split_seed=1))
    again = load_dataset(DataConfig(name="digits", split_seed=1))
    other = load_dataset(DataConfig(name="digits", split_seed=2))
    for a, b in zip((first.train, first.val, first.test), (again.train, again.val, again.test),
                    strict=True):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(first.test.targets, other.test.targets)
    assert not torch.equal(first.val.inputs, other.val.inputs)


def test_digits_half_and_none_binarization() -> None:
    inputs, _ = _digits_arrays()
    _, _, test_idx = split_indices(1797, val_fraction=0.1, test_fraction=0.2, seed=0)
    half = load_dataset(DataConfig(name="digits", binarize="half"))
    # half: value > 8 (of 0..16) -> +1.
    assert torch.equal(half.test.inputs, torch.where(inputs[test_idx] > 8, 1.0, -1.0))
    none = load_dataset(DataConfig(name="digits", binarize="none"))
    for split in (none.train, none.val, none.test):
        assert split.inputs.min() == 0.0 and split.inputs.max() == 1.0
    assert torch.allclose(none.test.inputs, inputs[test_idx].float() / 16)


def test_digits_mean_binarization_uses_train_pixel_means() -> None:
    inputs, _ = _digits_arrays()
    train_idx, _, test_idx = split_indices(1797, val_fraction=0.1, test_fraction=0.2, seed=0)
    splits = load_dataset(DataConfig(name="digits", binarize="mean"))
    pixel_mean = inputs[train_idx].double().mean(dim=0)  # (1, 8, 8)
    assert torch.equal(splits.test.inputs, torch.where(inputs[test_idx] > pixel_mean, 1.0, -1.0))
