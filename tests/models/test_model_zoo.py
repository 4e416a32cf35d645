"""Forward shapes and structure of the binarized model zoo (mlp, cnn, alexnet, resnet18)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from mcmc_core.layers import BinaryLayer
from mcmc_core.layers import binary_parameters
from mcmc_core.models import MLP
from mcmc_core.models import ModelConfig
from mcmc_core.models import SmallCNN
from mcmc_core.models import build_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def _forward(model: nn.Module, shape: tuple[int, ...], batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, *shape))


def _check_binary(model: nn.Module) -> None:
    layers = [m for m in model.modules() if isinstance(m, BinaryLayer)]
    assert layers
    # every binary weight is ±1 and no binary layer has a bias
    for layer in layers:
        assert bool(((layer.weight == 1) | (layer.weight == -1)).all())
        assert layer.bias is None
    # no float Linear/Conv is left
    float_layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    assert all(isinstance(m, BinaryLayer) for m in model.modules()
               if isinstance(m, float_layers))
    # ReLUs are Identity by default
    assert not any(isinstance(m, (nn.ReLU, nn.PReLU)) for m in model.modules())


@pytest.fixture(scope="module")
def alexnet_small() -> nn.Module:
    # ~54M weights: built once per module, used in eval mode with tiny batches
    return build_model(ModelConfig(name="alexnet"), (1, 8, 8), 10).eval()


@pytest.mark.parametrize("hidden", [[], [32]])
@pytest.mark.parametrize("shape", SHAPES)
def test_mlp_forward_shape(hidden: list[int], shape: tuple[int, int, int]) -> None:
    model = build_model(ModelConfig(name="mlp", hidden=hidden), shape, 10)
    assert isinstance(model, MLP)
    assert _forward(model, shape).shape == (2, 10)
    _check_binary(model)
    # one binary layer per hidden width plus the output layer
    assert len(binary_parameters(model)) == len(hidden) + 1


@pytest.mark.parametrize("shape", SHAPES)
def test_cnn_forward_shape(shape: tuple[int, int, int]) -> None:
    model = build_model(ModelConfig(name="cnn", channels=[4, 8]), shape, 10)
    assert isinstance(model, SmallCNN)
    assert _forward(model, shape).shape == (2, 10)
    _check_binary(model)
    # BatchNorm and pooling stay
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2


def test_cnn_pools_down_to_one_pixel() -> None:
    # 8 -> 4 -> 2 -> 1 -> 1 with ceil_mode pooling
    model = build_model(ModelConfig(name="cnn", channels=[2, 2, 2, 3]), (1, 8, 8), 5)
    assert model.classifier.in_features == 3
    assert _forward(model, (1, 8, 8)).shape == (2, 5)


def test_alexnet_small_forward_and_structure(alexnet_small: nn.Module) -> None:
    model = alexnet_small
    assert type(model) is torchvision.models.AlexNet
    assert _forward(model, (1, 8, 8), batch=1).shape == (1, 10)
    _check_binary(model)
    first = model.features[0]
    assert (first.in_channels, first.kernel_size, first.stride, first.padding) == (
        1, (3, 3), (1, 1), (1, 1))
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3
    assert all((p.kernel_size, p.stride, p.ceil_mode) == (2, 2, True) for p in pools)
    # adaptive pool, dropout and classifier are torchvision's
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    assert model.classifier[-1].out_features == 10


def test_alexnet_repr_tags_binary_layers(alexnet_small: nn.Module) -> None:
    text = repr(alexnet_small)
    assert text.startswith("AlexNet(")
    assert "[Binary]Conv2d(1, 64, kernel_size=(3, 3)" in text
    assert "[Binary]Linear(in_features=9216, out_features=4096" in text
    assert "ReLU" not in text


def test_alexnet_eval_mode_is_deterministic(alexnet_small: nn.Module) -> None:
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        first, second = alexnet_small(x), alexnet_small(x)
    # Dropout is off in eval mode
    assert torch.equal(first, second)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_resnet18_forward_shape(shape: tuple[int, int, int]) -> None:
    model = build_model(ModelConfig(name="resnet18"), shape, 10)
    assert type(model) is torchvision.models.ResNet
    assert _forward(model, shape).shape == (2, 10)
    _check_binary(model)
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (
        shape[0], (3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    # attributes that held ReLUs still exist (BasicBlock.forward calls self.relu)
    assert isinstance(model.relu, nn.Identity) and isinstance(model.layer1[0].relu, nn.Identity)
    assert isinstance(model.bn1, nn.BatchNorm2d)


def test_resnet18_large_image_keeps_imagenet_stem() -> None:
    model = build_model(ModelConfig(name="resnet18"), (1, 64, 64), 3)
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (
        1, (7, 7), (2, 2))
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert _forward(model, (1, 64, 64)).shape == (2, 3)


def test_keep_activations_keeps_relus() -> None:
    model = build_model(ModelConfig(name="resnet18", keep_activations=True), (1, 8, 8), 10)
    assert isinstance(model.relu, nn.ReLU) and isinstance(model.layer4[1].relu, nn.ReLU)
    model = build_model(ModelConfig(name="mlp", hidden=[8], keep_activations=True), (1, 8, 8), 2)
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 1


def test_backward_through_binary_cnn_reaches_every_weight() -> None:
    model = build_model(ModelConfig(name="cnn", channels=[4, 8]), (1, 8, 8), 10).train()
    for weight in binary_parameters(model):
        weight.requires_grad_(True)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.arange(4))
    loss.backward()
    # straight-through gradients reach every binary weight, BatchNorm included
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in binary_parameters(model))
    assert model.features[1].weight.grad is not None
