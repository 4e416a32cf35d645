"""torchvision's AlexNet and ResNet-18, adapted to the data's channels, classes and image size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:  # imported where used: torchvision adds about a second to every start-up
    import torchvision

__all__ = ["alexnet", "resnet18"]

# Below this height or width the ImageNet stems (stride-4 11x11 conv, 3x3/2 pools) shrink the
# image to nothing, so the stem becomes a 3x3 stride-1 conv and the pools 2x2.
SMALL_IMAGE = 64


def _is_small(input_shape: Sequence[int]) -> bool:
    return min(input_shape[1], input_shape[2]) < SMALL_IMAGE


def alexnet(input_shape: Sequence[int], n_classes: int) -> torchvision.models.AlexNet:
    """Float AlexNet (``weights=None``) taking ``input_shape[0]`` channels.

    For small images (height or width < 64) the first conv is 3x3 stride 1 padding 1 and every
    ``MaxPool2d`` of ``features`` is ``MaxPool2d(2, 2, ceil_mode=True)``; the adaptive average
    pool and the classifier are torchvision's.

    Args:
        input_shape: ``(channels, height, width)`` of one input.
        n_classes: Number of output logits.
    """
    import torchvision

    model = torchvision.models.alexnet(weights=None, num_classes=n_classes)
    channels = input_shape[0]
    if _is_small(input_shape):
        model.features[0] = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1)
        for i, layer in enumerate(model.features):
            if isinstance(layer, nn.MaxPool2d):
                model.features[i] = nn.MaxPool2d(2, 2, ceil_mode=True)
    elif channels != 3:
        model.features[0] = nn.Conv2d(channels, 64, kernel_size=11, stride=4, padding=2)
    return model


def resnet18(input_shape: Sequence[int], n_classes: int) -> torchvision.models.ResNet:
    """Float ResNet-18 (``weights=None``) taking ``input_shape[0]`` channels.

    For small images (height or width < 64) ``conv1`` is 3x3 stride 1 padding 1 and ``maxpool``
    is ``nn.Identity`` (the usual CIFAR stem).

    Args:
        input_shape: ``(channels, height, width)`` of one input.
        n_classes: Number of output logits.
    """
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=n_classes)
    channels = input_shape[0]
    if _is_small(input_shape):
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
