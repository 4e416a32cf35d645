"""A plain multilayer perceptron (binarized by :func:`mcmc_core.models.build_model`)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch import nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """``Flatten``, then ``Linear(in, h1), ReLU, ..., Linear(h_last, n_classes)``.

    Args:
        in_features: Size of one flattened input, e.g. ``1 * 28 * 28``.
        hidden: Hidden layer widths; ``[]`` gives a single layer ``in_features -> n_classes``.
        n_classes: Number of output logits.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], n_classes: int) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (N, n_classes)
