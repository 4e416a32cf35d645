"""The loss, written once: batch-mean cross-entropy from logits laid out ``[K, classes, N]``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["cross_entropy_t", "is_plain_cross_entropy", "needs_shift"]

# Without subtracting the max, exp() of logits up to this size neither overflows nor underflows
# in float32 (exp(80) * classes < 3.4e38 for up to ~6,000 classes; exp(-80) > 1.2e-38).
_NO_SHIFT_BOUND = 80.0


def needs_shift(largest_logit: float) -> bool:
    """Whether logits up to ``largest_logit`` in size need the max subtracted before ``exp``."""
    return largest_logit > _NO_SHIFT_BOUND


def cross_entropy_t(logits: Tensor, targets: Tensor, *, shift: bool = True) -> Tensor:
    """Per-sample cross-entropy ``[K, N]`` of logits laid out ``[K, classes, N]``.

    Args:
        logits: the logits (overwritten: used as scratch space).
        targets: ``[N]`` int64 class indices.
        shift: subtract the per-sample max logit before ``exp`` (needed when logits can exceed
            about 80 in size, :func:`needs_shift`).
    """
    index = targets.view(1, 1, -1).expand(logits.shape[0], 1, -1)
    picked = logits.gather(1, index).squeeze(1)
    if shift:
        top = logits.amax(1, keepdim=True)
        lse = logits.sub_(top).exp_().sum(1).log_().add_(top.squeeze(1))
    else:
        lse = logits.exp_().sum(1).log_()
    return lse.sub_(picked)


def is_plain_cross_entropy(criterion: object, targets: Tensor) -> bool:
    """``nn.CrossEntropyLoss()`` with defaults, on class-index targets it does not ignore: the
    loss :func:`cross_entropy_t` computes (and the batched kernel can take over)."""
    return (type(criterion) is nn.CrossEntropyLoss and criterion.weight is None
            and criterion.reduction == "mean" and criterion.label_smoothing == 0.0
            and targets.dtype == torch.int64 and targets.dim() == 1
            and not bool((targets == criterion.ignore_index).any()))
