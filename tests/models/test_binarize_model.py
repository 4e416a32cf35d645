"""Tests of ``binarize_model`` and ``binary_parameters`` on hand-made modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mcmc_core.layers import BinaryConv1d
from mcmc_core.layers import BinaryConv2d
from mcmc_core.layers import BinaryLayer
from mcmc_core.layers import BinaryLinear
from mcmc_core.layers import binarize_model
from mcmc_core.layers import binary_parameters


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 8), nn.PReLU(),
                                  nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.relu(self.bn(self.conv(x)))))


def test_binarize_replaces_layers_in_place() -> None:
    model = Net()
    out = binarize_model(model)
    # same object, same class
    assert out is model and type(out) is Net
    assert isinstance(model.conv, BinaryConv2d) and isinstance(model.conv, nn.Conv2d)
    assert isinstance(model.head[2], BinaryLinear) and isinstance(model.head[4], BinaryLinear)
    # activations become Identity (replaced, so indices and attributes still exist)
    assert isinstance(model.relu, nn.Identity) and isinstance(model.head[3], nn.Identity)
    # other layers stay
    assert isinstance(model.bn, nn.BatchNorm2d) and isinstance(model.pool, nn.MaxPool2d)
    assert isinstance(model.head[0], nn.Flatten) and isinstance(model.head[1], nn.Dropout)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_binarize_keeps_activations_on_request() -> None:
    model = binarize_model(Net(), keep_activations=True)
    assert isinstance(model.relu, nn.ReLU) and isinstance(model.head[3], nn.PReLU)


def test_binarize_sets_output_scale_on_last_layer_only() -> None:
    model = binarize_model(Net(), output_scale=4.0)
    # hidden layers: 1 / sqrt(fan_in); last: output_scale / sqrt(fan_in)
    assert model.conv.scale == 1 / math.sqrt(9)
    assert model.head[2].scale == 1 / math.sqrt(64)
    assert model.head[4].scale == 4.0 / math.sqrt(8)


def test_binarize_twice_is_a_noop() -> None:
    model = binarize_model(Net(), output_scale=2.0)
    modules = list(model.modules())
    weights = [w.clone() for w in binary_parameters(model)]
    assert binarize_model(model, output_scale=2.0) is model
    # same module objects, same weights
    assert all(a is b for a, b in zip(model.modules(), modules, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(binary_parameters(model), weights, strict=True))
    # another output_scale only updates the last layer's scale
    binarize_model(model, output_scale=3.0)
    assert model.head[4].scale == 3.0 / math.sqrt(8)
    assert model.head[2].scale == 1 / math.sqrt(64)


def test_binary_parameters_in_module_order() -> None:
    model = binarize_model(Net())
    params = binary_parameters(model)
    assert [p is q for p, q in zip(params, [model.conv.weight, model.head[2].weight,
                                            model.head[4].weight])] == [True] * 3
    # every binary weight is ±1
    assert all(bool(((p == 1) | (p == -1)).all()) for p in params)


def test_shared_module_is_replaced_once_everywhere() -> None:
    shared = nn.Linear(5, 5)
    block = nn.Sequential(nn.Linear(5, 5), nn.ReLU())
    model = nn.Sequential(shared, block, shared, block, nn.Linear(5, 2))
    model.alias = shared  # registered twice under the same parent as well
    binarize_model(model, output_scale=2.0)
    assert isinstance(model[0], BinaryLinear)
    assert model[0] is model[2] is model.alias
    assert model[1] is model[3] and isinstance(model[1][0], BinaryLinear)
    # shared weights appear once; the last binary layer in module order gets output_scale
    assert len(binary_parameters(model)) == 3
    assert model[4].scale == 2.0 / math.sqrt(5) and model[0].scale == 1 / math.sqrt(5)


def test_nested_containers() -> None:
    model = nn.ModuleDict({
        "a": nn.ModuleList([nn.Conv1d(2, 3, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 3))]),
        "b": nn.Linear(3, 1),
    })
    binarize_model(model)
    assert isinstance(model["a"][0], BinaryConv1d)
    assert isinstance(model["a"][1][0], nn.Identity)
    assert isinstance(model["a"][1][1], BinaryLinear)
    assert isinstance(model["b"], BinaryLinear)


def test_bare_layer_returns_its_replacement() -> None:
    layer = nn.Linear(3, 2)
    out = binarize_model(layer, output_scale=2.0)
    assert isinstance(out, BinaryLinear) and out.scale == 2.0 / math.sqrt(3)


def test_binarize_does_not_touch_global_rng() -> None:
    model = Net()
    state = torch.get_rng_state()
    binarize_model(model)
    assert torch.equal(torch.get_rng_state(), state)


def test_binarize_rejects_nonpositive_output_scale() -> None:
    with pytest.raises(ValueError, match="output_scale"):
        binarize_model(Net(), output_scale=0.0)


def test_binarize_rejects_uninitialized_lazy_layer() -> None:
    with pytest.raises(ValueError, match="forward pass"):
        binarize_model(nn.Sequential(nn.LazyLinear(3)))


def test_all_binary_layers_are_binary_layer_instances() -> None:
    model = binarize_model(Net())
    kinds = {type(m) for m in model.modules() if isinstance(m, BinaryLayer)}
    assert kinds == {BinaryConv2d, BinaryLinear}
