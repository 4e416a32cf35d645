"""Tests of ``sign`` and the binary layers of ``mcmc_core.layers``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcmc_core.layers import BinaryConv1d
from mcmc_core.layers import BinaryConv2d
from mcmc_core.layers import BinaryConv3d
from mcmc_core.layers import BinaryLayer
from mcmc_core.layers import BinaryLinear
from mcmc_core.layers import sign

FLOAT_LAYERS = [
    (BinaryLinear, lambda: nn.Linear(6, 5)),
    (BinaryConv1d, lambda: nn.Conv1d(4, 6, 3, padding=1)),
    (BinaryConv2d, lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)),
    (BinaryConv3d, lambda: nn.Conv3d(2, 3, (1, 2, 3))),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64, torch.int64])
def test_sign_maps_zero_to_plus_one(dtype: torch.dtype) -> None:
    x = torch.tensor([-3, -1, 0, 2, 5]).to(dtype)
    out = sign(x)
    # x >= 0 -> +1, same dtype
    assert out.dtype == dtype
    assert out.tolist() == [-1, -1, 1, 1, 1]


def test_sign_negative_zero_and_tiny_values() -> None:
    x = torch.tensor([-0.0, 1e-30, -1e-30, float("inf"), -float("inf")])
    # -0.0 >= 0 holds, so it maps to +1 like +0.0
    assert sign(x).tolist() == [1.0, 1.0, -1.0, 1.0, -1.0]


def test_sign_is_plain_without_autograd() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    with torch.no_grad():
        out = sign(x)
    # no graph is recorded on the hot path
    assert out.grad_fn is None
    assert sign(x.detach()).grad_fn is None


def test_sign_straight_through_gradient_is_masked() -> None:
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    upstream = torch.arange(1.0, 8.0)
    (sign(x) * upstream).sum().backward()
    # backward is grad * (|x| <= 1)
    assert x.grad is not None
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]


@pytest.mark.parametrize(("binary_cls", "make"), FLOAT_LAYERS)
def test_from_float_binarizes_weight_and_drops_bias(binary_cls: type[BinaryLayer],
                                                    make: object) -> None:
    layer = make().double()  # type: ignore[operator]
    binary = binary_cls.from_float(layer)
    # still an instance of the float class, tagged as binary
    assert isinstance(binary, binary_cls._float_cls) and isinstance(binary, BinaryLayer)
    # weight = sign(float weight), a frozen ±1 Parameter of the same dtype; no bias
    assert torch.equal(binary.weight, torch.where(layer.weight >= 0, 1.0, -1.0).double())
    assert isinstance(binary.weight, nn.Parameter) and not binary.weight.requires_grad
    assert binary.weight.dtype == torch.float64
    assert binary.bias is None
    # the float layer is untouched
    assert layer.bias is not None and not torch.equal(layer.weight.abs(), binary.weight.abs())


def test_from_float_rejects_wrong_layer() -> None:
    with pytest.raises(TypeError, match="nn.Linear"):
        BinaryLinear.from_float(nn.Conv2d(1, 1, 1))


def test_binary_linear_output_is_scaled_integer_preactivation() -> None:
    torch.manual_seed(0)
    layer = BinaryLinear.from_float(nn.Linear(7, 3), output_factor=2.5)
    x = torch.randn(5, 7)
    x[0, 0] = 0.0
    expected = (torch.where(x >= 0, 1.0, -1.0) @ layer.weight.T) * (2.5 / math.sqrt(7))
    # exactly (sign(x) @ w.T) * scale
    assert layer.scale == 2.5 / math.sqrt(7)
    assert torch.equal(layer(x), expected)


@pytest.mark.parametrize(("binary_cls", "make"), FLOAT_LAYERS[1:])
def test_binary_conv_matches_functional_conv(binary_cls: type[BinaryLayer],
                                             make: object) -> None:
    torch.manual_seed(0)
    layer = binary_cls.from_float(make())  # type: ignore[operator]
    x = torch.randn(2, layer.in_channels, *([5] * len(layer.kernel_size)))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(layer.kernel_size)]
    expected = conv(sign(x), layer.weight, None, layer.stride, layer.padding, layer.dilation,
                    layer.groups) * layer.scale
    assert torch.allclose(layer(x), expected)


def test_conv_fan_in_counts_groups_and_kernel() -> None:
    layer = BinaryConv2d.from_float(nn.Conv2d(8, 6, (3, 5), groups=2))
    # fan_in = in_channels / groups * prod(kernel_size)
    assert layer.fan_in == 4 * 3 * 5
    assert layer.scale == 1 / math.sqrt(60)
    layer.set_output_factor(3.0)
    assert layer.scale == 3.0 / math.sqrt(60)


def test_linear_fan_in_is_in_features() -> None:
    assert BinaryLinear.from_float(nn.Linear(10, 2)).fan_in == 10


def test_binary_layer_gradients_flow_to_weight_and_input() -> None:
    torch.manual_seed(0)
    layer = BinaryLinear.from_float(nn.Linear(4, 3))
    layer.weight.requires_grad_(True)
    x = torch.tensor([[0.5, -2.0, 0.9, 3.0], [-0.2, 0.1, -1.5, 1.0]], requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    # the input gradient is zero exactly where |x| > 1
    assert x.grad is not None
    assert torch.equal(x.grad[x.abs() > 1], torch.zeros(3))
    assert (x.grad[x.abs() <= 1] != 0).any()


def test_repr_tags_binary_layers_and_shows_scale() -> None:
    linear = BinaryLinear.from_float(nn.Linear(4, 2))
    conv = BinaryConv2d.from_float(nn.Conv2d(1, 2, 3))
    assert repr(linear).startswith("[Binary]Linear(in_features=4, out_features=2, bias=False")
    assert "scale=0.5" in repr(linear)
    assert repr(conv).startswith("[Binary]Conv2d(1, 2, kernel_size=(3, 3)")
    assert repr(BinaryConv1d.from_float(nn.Conv1d(1, 1, 1))).startswith("[Binary]Conv1d(")
    assert repr(BinaryConv3d.from_float(nn.Conv3d(1, 1, 1))).startswith("[Binary]Conv3d(")


def test_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    source = BinaryConv2d.from_float(nn.Conv2d(2, 3, 3))
    target = BinaryConv2d.from_float(nn.Conv2d(2, 3, 3))
    # the weight is the only state; scale comes from the configuration
    assert list(source.state_dict()) == ["weight"]
    target.load_state_dict(source.state_dict())
    x = torch.randn(1, 2, 4, 4)
    assert torch.equal(target(x), source(x))
