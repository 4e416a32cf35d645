"""torchvision's AlexNet and ResNet-18, adapted to the data's channels, classes and image size.

The same adaptation serves both ways in: :func:`alexnet` / :func:`resnet18` build a fresh model
for ``mcmc-train`` (``model=alexnet``), and :func:`adapt_alexnet` / :func:`adapt_resnet` change a
model the user built (``TrainerMCMC(binarize_model(AlexNet()), ...)``) in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:  # imported where used: torchvision adds about a second to every start-up
    import torchvision

__all__ = ["adapt_alexnet", "adapt_resnet", "alexnet", "resnet18"]

# Below this height or width the ImageNet stems (stride-4 11x11 conv, 3x3/2 pools) shrink the
# image to nothing, so the stem becomes a 3x3 stride-1 conv and the pools 2x2.
SMALL_IMAGE = 64


def _is_small(input_shape: Sequence[int]) -> bool:
    return min(input_shape[1], input_shape[2]) < SMALL_IMAGE


def _classes(layer: nn.Linear, n_classes: int) -> nn.Linear:
    """``layer`` when it has ``n_classes`` outputs, else a fresh float ``Linear`` that has."""
    if layer.out_features == n_classes:
        return layer
    return nn.Linear(layer.in_features, n_classes)


def adapt_alexnet(model: torchvision.models.AlexNet, input_shape: Sequence[int],
                  n_classes: int) -> list[str]:
    """Adapt a torchvision AlexNet, in place, to ``input_shape`` and ``n_classes``.

    For small images (height or width < 64) the first conv becomes 3x3 stride 1 padding 1 and
    every ``MaxPool2d`` of ``features`` ``MaxPool2d(2, 2, ceil_mode=True)``; otherwise only a
    channel count other than 3 replaces the first conv (11x11 stride 4). The last classifier
    ``Linear`` gets ``n_classes`` outputs. Replaced layers are fresh float layers (initialized
    from the global RNG); the adaptive average pool and the rest stay.

    Args:
        model: A torchvision ``AlexNet`` (float or binarized).
        input_shape: ``(channels, height, width)`` of one input.
        n_classes: Number of output logits.

    Returns:
        What was changed, one phrase per layer (empty when the model already fitted).
    """
    channels, changes = input_shape[0], []
    stem = model.features[0]
    if _is_small(input_shape):
        if (stem.in_channels, stem.kernel_size, stem.stride) != (channels, (3, 3), (1, 1)):
            model.features[0] = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1)
            changes.append(f"features.0: {channels}-channel 3x3 stride-1 stem "
                           f"(images under {SMALL_IMAGE} px)")
        pools = [i for i, layer in enumerate(model.features) if isinstance(layer, nn.MaxPool2d)
                 and (layer.kernel_size, layer.stride) not in ((2, 2), ((2, 2), (2, 2)))]
        for i in pools:
            model.features[i] = nn.MaxPool2d(2, 2, ceil_mode=True)
        if pools:
            changes.append("features: 2x2 max pools")
    elif stem.in_channels != channels:
        model.features[0] = nn.Conv2d(channels, 64, kernel_size=11, stride=4, padding=2)
        changes.append(f"features.0: {channels} input channels")
    last = model.classifier[-1]
    model.classifier[-1] = _classes(last, n_classes)
    if model.classifier[-1] is not last:
        changes.append(f"classifier.{len(model.classifier) - 1}: {n_classes} classes "
                       f"(was {last.out_features})")
    return changes


def adapt_resnet(model: torchvision.models.ResNet, input_shape: Sequence[int],
                 n_classes: int) -> list[str]:
    """Adapt a torchvision ResNet, in place, to ``input_shape`` and ``n_classes``.

    For small images (height or width < 64) ``conv1`` becomes 3x3 stride 1 padding 1 and
    ``maxpool`` ``nn.Identity`` (the usual CIFAR stem); otherwise only a channel count other
    than 3 replaces ``conv1`` (7x7 stride 2). ``fc`` gets ``n_classes`` outputs.

    Args:
        model: A torchvision ``ResNet`` (float or binarized).
        input_shape: ``(channels, height, width)`` of one input.
        n_classes: Number of output logits.

    Returns:
        What was changed, one phrase per layer (empty when the model already fitted).
    """
    channels, changes = input_shape[0], []
    conv1 = model.conv1
    if _is_small(input_shape):
        if (conv1.in_channels, conv1.kernel_size, conv1.stride) != (channels, (3, 3), (1, 1)):
            model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            changes.append(f"conv1: {channels}-channel 3x3 stride-1 stem "
                           f"(images under {SMALL_IMAGE} px)")
        if not isinstance(model.maxpool, nn.Identity):
            model.maxpool = nn.Identity()
            changes.append("maxpool: removed")
    elif conv1.in_channels != channels:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        changes.append(f"conv1: {channels} input channels")
    fc = model.fc
    model.fc = _classes(fc, n_classes)
    if model.fc is not fc:
        changes.append(f"fc: {n_classes} classes (was {fc.out_features})")
    return changes


def alexnet(input_shape: Sequence[int], n_classes: int) -> torchvision.models.AlexNet:
    """Float AlexNet (``weights=None``) taking ``input_shape[0]`` channels, adapted by
    :func:`adapt_alexnet`.

    Args:
        input_shape: ``(channels, height, width)`` of one input.
        n_classes: Number of output logits.
    """
    import torchvision

    model = torchvision.models.alexnet(weights=None, num_classes=n_classes)
    adapt_alexnet(model, input_shape, n_classes)
    return model


def resnet18(input_shape: Sequence[int], n_classes: int) -> torchvision.models.ResNet:
    """Float ResNet-18 (``weights=None``) taking ``input_shape[0]`` channels, adapted by
    :func:`adapt_resnet`.

    Args:
        input_shape: ``(channels, height, width)`` of one input.
        n_classes: Number of output logits.
    """
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=n_classes)
    adapt_resnet(model, input_shape, n_classes)
    return model
