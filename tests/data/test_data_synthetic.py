"""The seeded teacher-labelled ``synthetic`` dataset."""

from __future__ import annotations

import pytest
import torch

from mcmc_core.data import DataConfig
from mcmc_core.data import load_dataset
from mcmc_core.data._synthetic import make_synthetic


def test_synthetic_shapes_and_sizes_follow_the_config() -> None:
    cfg = DataConfig(name="synthetic", synthetic_samples=200, synthetic_shape=[2, 3, 4],
                     synthetic_classes=4)
    splits = load_dataset(cfg)
    assert splits.name == "synthetic"
    assert splits.input_shape == (2, 3, 4)
    assert splits.n_classes == 4
    assert (len(splits.train), len(splits.val), len(splits.test)) == (144, 16, 40)
    assert splits.train.inputs.shape == (144, 2, 3, 4)


def test_synthetic_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    first = make_synthetic(100, (1, 4, 4), 3, seed=0)
    again = make_synthetic(100, (1, 4, 4), 3, seed=0)
    other = make_synthetic(100, (1, 4, 4), 3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    loaded = [load_dataset(DataConfig(name="synthetic", split_seed=s)) for s in (0, 0, 1)]
    assert torch.equal(loaded[0].test.inputs, loaded[1].test.inputs)
    assert not torch.equal(loaded[0].test.inputs, loaded[2].test.inputs)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_synthetic_labels_come_from_the_teacher_and_cover_every_class(seed: int) -> None:
    bits, labels, teacher = make_synthetic(600, (1, 4, 4), 3, seed=seed)
    assert set(bits.unique().tolist()) <= {0.0, 1.0}
    assert set(teacher.unique().tolist()) == {-1.0, 1.0}
    assert set(labels.tolist()) == {0, 1, 2}
    # The teacher, a binary linear model, classifies its own data perfectly.
    predictions = ((2 * bits - 1).flatten(1) @ teacher.T).argmax(dim=1)
    assert torch.equal(predictions, labels)


def test_synthetic_binarized_inputs_are_the_signed_bits() -> None:
    _, _, teacher = make_synthetic(600, (1, 4, 4), 3, seed=0)
    for rule in ("mean", "half"):
        splits = load_dataset(DataConfig(name="synthetic", binarize=rule))
        # The teacher still classifies the binarized test split (almost) perfectly.
        predictions = (splits.test.inputs.flatten(1) @ teacher.T).argmax(dim=1)
        accuracy = (predictions == splits.test.targets).float().mean().item()
        assert accuracy >= (0.99 if rule == "mean" else 1.0)
    none = load_dataset(DataConfig(name="synthetic", binarize="none"))
    half = load_dataset(DataConfig(name="synthetic", binarize="half"))
    assert torch.equal(half.train.inputs, 2 * none.train.inputs - 1)


def test_synthetic_with_too_few_features_for_the_classes_is_an_error() -> None:
    # One binary feature gives two distinct inputs: three classes cannot all appear.
    cfg = DataConfig(name="synthetic", synthetic_shape=[1, 1, 1], synthetic_classes=3)
    with pytest.raises(ValueError, match="cannot give all 3 classes a sample"):
        load_dataset(cfg)
