"""A seeded teacher-labelled set of random bits, learnable by a binary linear model."""

from __future__ import annotations

import math

import torch

from mcmc_core.data._splits import RawData

_MAX_TRIES = 100


def make_synthetic(
    samples: int, shape: tuple[int, int, int], classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw random bits and label them with a random ±1 linear teacher.

    ``labels = argmax(teacher @ (2 * bits - 1))`` (ties go to the lowest class). The teacher is
    redrawn (from the same seeded generator) until every class labels at least one sample.

    Args:
        samples: Number of samples.
        shape: ``(C, H, W)`` of one input.
        classes: Number of classes.
        seed: Seed of the :class:`torch.Generator` behind bits and teacher.

    Returns:
        ``(bits, labels, teacher)``: float32 ``(samples, C, H, W)`` in ``{0, 1}``, int64
        ``(samples,)``, float32 ``(classes, C * H * W)`` in ``{-1, +1}``.

    Raises:
        ValueError: If no teacher drawn gives every class a sample (too few samples or
            features for that many classes).
    """
    generator = torch.Generator().manual_seed(seed)
    n_features = math.prod(shape)
    bits = torch.randint(0, 2, (samples, *shape), generator=generator).to(torch.float32)
    signs = (2 * bits - 1).reshape(samples, n_features)
    for _ in range(_MAX_TRIES):
        teacher = torch.randint(0, 2, (classes, n_features), generator=generator) * 2 - 1
        teacher = teacher.to(torch.float32)
        labels = (signs @ teacher.T).argmax(dim=1)
        if torch.bincount(labels, minlength=classes).min() > 0:
            return bits, labels, teacher
    raise ValueError(
        f"synthetic data with {samples=}, {shape=} cannot give all {classes} classes a sample; "
        f"use more samples or features, or fewer classes."
    )


def load_synthetic(samples: int, shape: list[int], classes: int, seed: int) -> RawData:
    """Load :func:`make_synthetic`'s bits as raw values in ``[0, 1]`` (no test split)."""
    c, h, w = (int(s) for s in shape)
    bits, labels, _ = make_synthetic(samples, (c, h, w), classes, seed)
    return RawData(inputs=bits, targets=labels, n_classes=classes, value_range=(0.0, 1.0))
