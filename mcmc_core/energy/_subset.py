"""The fixed target's points: the whole split or a seeded subset of it (chosen once, here)."""

from __future__ import annotations

import torch
from torch import Tensor

from mcmc_core.data import Split

__all__ = ["fixed_subset"]


def fixed_subset(split: Split, samples: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """``(inputs, targets)`` of ``split``, or of ``samples`` of its points drawn by a permutation
    seeded with ``seed`` (the same points for the same ``samples`` and ``seed``, whichever
    kernel measures the energy on them).

    Raises:
        ValueError: if ``samples`` is not None and below 1.
    """
    if samples is not None and samples < 1:
        raise ValueError(f"samples must be >= 1 or None, but got {samples=}.")
    inputs, targets = split.inputs, split.targets
    if samples is not None and samples < len(targets):
        keep = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
        inputs, targets = inputs[keep[:samples]], targets[keep[:samples]]
    return inputs, targets
