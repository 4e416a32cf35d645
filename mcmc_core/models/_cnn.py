"""A small conv net that works on 8x8 (digits), 28x28 (MNIST) and 32x32 (CIFAR) images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Conv blocks ``Conv2d(3x3) -> BatchNorm2d -> ReLU -> MaxPool2d(2)``, then one ``Linear``.

    Each block keeps the spatial size (padding 1) and then halves it, rounding up
    (``ceil_mode=True``), so any image size works: 8x8 with three blocks gives 1x1.

    Args:
        input_shape: ``(channels, height, width)`` of one input.
        channels: Output channels of each conv block (one block per entry).
        n_classes: Number of output logits.
    """

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int],
                 n_classes: int) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            in_channels = out_channels
            height, width = -(-height // 2), -(-width // 2)  # ceil division, as the pooling
        self.features = nn.Sequential(*blocks)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(in_channels * height * width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, channels[-1], ceil(H / 2^k), ceil(W / 2^k))
        return self.classifier(self.flatten(x))  # (N, n_classes)
