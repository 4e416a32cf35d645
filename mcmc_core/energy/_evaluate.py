"""Evaluation of one model on a split, in chunks, in eval mode, under any criterion
(:func:`evaluate`, :func:`mean_loss`). ``K`` stacked binary MLPs are evaluated at once by
:func:`mcmc_core.population.evaluate_stacked`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["device_of", "evaluate", "mean_loss"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int = 4096,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(inputs, targets)``, in eval mode, in chunks.

    ``criterion`` must average over the batch (``reduction="mean"``, as CrossEntropyLoss does).
    Inputs are moved chunk by chunk to the model's device.
    """
    n = len(targets)
    if n == 0:
        return float("nan"), float("nan")
    device = device_of(model)
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, n, batch_size):
        x = inputs[start : start + batch_size].to(device, non_blocking=True)
        y = targets[start : start + batch_size].to(device, non_blocking=True)
        out = model(x)
        loss_sum += float(criterion(out, y)) * len(y)
        correct += int((out.argmax(dim=1) == y).sum())
    return loss_sum / n, correct / n


@torch.no_grad()
def mean_loss(
    model: nn.Module,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int = 8192,
) -> float:
    """Mean loss of ``model`` on ``(inputs, targets)`` in eval mode: the energy, nothing more.

    Inputs are expected on the model's device already (the energies keep them there). One chunk
    when ``len(targets) <= batch_size``, so the first layer sees the same tensor at every call.
    """
    model.eval()
    n = len(targets)
    if n <= batch_size:
        return float(criterion(model(inputs), targets))
    total = 0.0
    for start in range(0, n, batch_size):
        y = targets[start : start + batch_size]
        total += float(criterion(model(inputs[start : start + batch_size]), y)) * len(y)
    return total / n


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU without any)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
