"""Train / validation / test splits: seeded carving and binarization shared by every dataset."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mcmc_core.data._config import DataConfig


@dataclass
class Split:
    """One split of a dataset, as whole tensors (small enough to keep in memory).

    Args:
        inputs: ``(N, C, H, W)`` float32; values in ``{-1, +1}`` when binarized, in
            ``[0, 1]`` with ``binarize=none``.
        targets: ``(N,)`` int64 class indices.
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same length, but got "
                f"{self.inputs.shape[0]} inputs and {self.targets.shape[0]} targets."
            )

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __repr__(self) -> str:
        shape = tuple(self.inputs.shape)
        return f"Split(n={len(self)}, inputs={shape} {self.inputs.dtype})"


@dataclass
class DataSplits:
    """A dataset split three ways: tune on ``val``, report ``test`` once.

    Args:
        name: The dataset's name (``cfg.name``).
        train: Training split (``val`` and, without an official test split, ``test`` carved out).
        val: Validation split, carved from the training data by a seeded permutation.
        test: The official test split, or one carved by the same seeded permutation.
        input_shape: ``(C, H, W)`` of one input.
        n_classes: Number of classes (targets are in ``[0, n_classes)``).
    """

    name: str
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, int, int]
    n_classes: int


@dataclass
class RawData:
    """What a dataset loader returns before splitting and binarization.

    Args:
        inputs: ``(N, C, H, W)`` raw values (any real dtype) of the training data, or of all
            the data when ``test_inputs`` is ``None``.
        targets: ``(N,)`` int64 labels of ``inputs``.
        n_classes: Number of classes.
        value_range: ``(low, high)`` of the raw values (e.g. ``(0, 255)`` for uint8 images);
            ``None`` to take the training split's min and max.
        test_inputs: The official test split's raw inputs, if the dataset has one.
        test_targets: Labels of ``test_inputs``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    n_classes: int
    value_range: tuple[float, float] | None = None
    test_inputs: torch.Tensor | None = None
    test_targets: torch.Tensor | None = None


def _count(n: int, fraction: float) -> int:
    """``round(n * fraction)``, kept in ``[1, n - 1]`` so both sides of a cut are non-empty."""
    return min(max(round(n * fraction), 1), n - 1)


def split_indices(
    n: int, *, val_fraction: float, test_fraction: float | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut ``range(n)`` into train / val / test indices with one seeded permutation.

    The permutation comes from a :class:`torch.Generator` seeded with ``seed`` (never the
    global RNG). Its first ``round(n * test_fraction)`` indices are the test split, the next
    ``round(rest * val_fraction)`` the validation split, the remainder the training split.

    Args:
        n: Number of samples (at least 2, or 3 with a test split).
        val_fraction: Fraction of the non-test samples kept for validation.
        test_fraction: Fraction of all samples kept for test; ``None`` when the dataset has an
            official test split (the returned test indices are then empty).
        seed: Seed of the permutation.

    Returns:
        ``(train, val, test)`` int64 index tensors: disjoint, together ``range(n)``.
    """
    needed = 2 if test_fraction is None else 3
    if n < needed:
        raise ValueError(f"need at least {needed} samples to split, but got {n=}.")
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    n_test = 0 if test_fraction is None else _count(n, test_fraction)
    n_val = _count(n - n_test, val_fraction)
    return perm[n_test + n_val :], perm[n_test : n_test + n_val], perm[:n_test]


def binarize(
    inputs: torch.Tensor,
    rule: str,
    *,
    train_mean: torch.Tensor | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    levels: int = 3,
) -> torch.Tensor:
    """Turn raw inputs into float32 model inputs.

    Args:
        inputs: ``(N, C, H, W)`` raw values.
        rule: ``mean`` (feature > ``train_mean`` -> +1, else -1), ``half`` (feature > middle
            of ``value_range`` -> +1, else -1), ``thermometer`` (``levels`` ±1 channels per
            channel: feature > the k-th of ``levels`` evenly spaced thresholds inside
            ``value_range``) or ``none`` (scaled from ``value_range`` to ``[0, 1]``, clamped).
        train_mean: ``(C, H, W)`` per-feature mean of the training split (``mean`` only).
        value_range: ``(low, high)`` of the raw values (``half``, ``thermometer``, ``none``).
        levels: thresholds per feature of ``thermometer``.

    Returns:
        A float32 tensor shaped like ``inputs`` (``thermometer``: ``C * levels`` channels).
    """
    one = torch.ones((), dtype=torch.float32)
    if rule == "mean":
        if train_mean is None:
            raise ValueError("binarize='mean' needs train_mean, but got train_mean=None.")
        return torch.where(inputs > train_mean, one, -one)
    low, high = value_range
    if rule == "half":
        return torch.where(inputs > (low + high) / 2, one, -one)
    if rule == "thermometer":
        thresholds = [low + (high - low) * k / (levels + 1) for k in range(1, levels + 1)]
        return torch.cat([torch.where(inputs > t, one, -one) for t in thresholds], dim=1)
    if rule == "none":
        scale = high - low if high > low else 1.0
        return ((inputs.to(torch.float32) - low) / scale).clamp_(0.0, 1.0)
    raise ValueError(f"rule must be one of mean, half, thermometer, none, but got {rule=}.")


def feature_mean(inputs: torch.Tensor) -> torch.Tensor:
    """Per-feature ``(C, H, W)`` mean over samples, accumulated in float64 (exact for ties)."""
    return inputs.sum(dim=0, dtype=torch.float64) / inputs.shape[0]


def make_splits(raw: RawData, cfg: DataConfig) -> DataSplits:
    """Carve validation (and, without an official test split, test) and binarize.

    The ``mean`` threshold and a missing ``value_range`` are computed on the training split
    only, after carving, then applied to all three splits.

    Args:
        raw: The loader's raw data.
        cfg: Fractions, seed and binarization rule.

    Returns:
        The three binarized splits.
    """
    official_test = raw.test_inputs is not None and raw.test_targets is not None
    train_idx, val_idx, test_idx = split_indices(
        len(raw.targets),
        val_fraction=cfg.val_fraction,
        test_fraction=None if official_test else cfg.test_fraction,
        seed=cfg.split_seed,
    )
    train_x = raw.inputs[train_idx]
    if raw.test_inputs is not None and raw.test_targets is not None:
        test_x, test_y = raw.test_inputs, raw.test_targets
    else:
        test_x, test_y = raw.inputs[test_idx], raw.targets[test_idx]
    train_mean = feature_mean(train_x) if cfg.binarize == "mean" else None
    value_range = raw.value_range
    if value_range is None:
        value_range = (float(train_x.min()), float(train_x.max()))

    def finish(x: torch.Tensor, y: torch.Tensor) -> Split:
        x = binarize(x, cfg.binarize, train_mean=train_mean, value_range=value_range,
                     levels=cfg.levels)
        return Split(inputs=x.contiguous(), targets=y.to(torch.int64).contiguous())

    c, h, w = (int(s) for s in raw.inputs.shape[1:])
    c *= cfg.levels if cfg.binarize == "thermometer" else 1
    return DataSplits(
        name=cfg.name,
        train=finish(train_x, raw.targets[train_idx]),
        val=finish(raw.inputs[val_idx], raw.targets[val_idx]),
        test=finish(test_x, test_y),
        input_shape=(c, h, w),
        n_classes=raw.n_classes,
    )
