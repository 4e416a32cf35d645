"""Tests of ``build_model``: validation, seeding, and the config fields it applies."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from mcmc_core._validation import ConfigError
from mcmc_core.layers import binary_parameters
from mcmc_core.models import MODEL_NAMES
from mcmc_core.models import ModelConfig
from mcmc_core.models import build_model
from mcmc_core.models._build import _BUILDERS


def _weights(cfg: ModelConfig, seed: int) -> list[torch.Tensor]:
    return binary_parameters(build_model(cfg, (1, 8, 8), 10, seed=seed))


def test_every_model_name_has_a_builder() -> None:
    assert set(_BUILDERS) == set(MODEL_NAMES)


@pytest.mark.parametrize("cfg", [ModelConfig(name="mlp", hidden=[16]),
                                 ModelConfig(name="cnn", channels=[4, 8])])
def test_build_model_is_reproducible_by_seed(cfg: ModelConfig) -> None:
    same = zip(_weights(cfg, seed=3), _weights(cfg, seed=3), strict=True)
    assert all(torch.equal(a, b) for a, b in same)
    # another seed gives other weights
    other = zip(_weights(cfg, seed=3), _weights(cfg, seed=4), strict=True)
    assert not all(torch.equal(a, b) for a, b in other)


def test_build_model_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    build_model(ModelConfig(name="resnet18"), (1, 8, 8), 10, seed=7)
    assert torch.equal(torch.get_rng_state(), state)


def test_build_model_applies_output_scale() -> None:
    model = build_model(ModelConfig(name="mlp", hidden=[16], output_scale=3.0), (1, 8, 8), 10)
    first, last = model.layers[1], model.layers[3]
    assert first.scale == 1 / math.sqrt(64)
    assert last.scale == 3.0 / math.sqrt(16)


@pytest.mark.parametrize(("overrides", "key"), [
    ({"name": "vgg"}, "model.name"),
    ({"hidden": [8, 0]}, "model.hidden"),
    ({"channels": []}, "model.channels"),
    ({"output_scale": 0.0}, "model.output_scale"),
    ({"init": "zeros"}, "model.init"),
    ({"init": "data"}, "model.init"),  # no hidden layer
    ({"name": "cnn", "init": "data"}, "model.init"),
])
def test_build_model_rejects_invalid_config(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_model(ModelConfig(**overrides), (1, 8, 8), 10)


def test_build_model_reports_every_violation() -> None:
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(name="vgg", output_scale=-1.0), (1, 8, 8), 10)
    assert len(info.value.errors) == 2


@pytest.mark.parametrize(("shape", "n_classes", "match"), [
    ((8, 8), 10, "input_shape"),
    ((1, 0, 8), 10, "input_shape"),
    ((1, 8, 8), 0, "n_classes"),
])
def test_build_model_rejects_bad_data_shape(shape: tuple[int, ...], n_classes: int,
                                            match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(ModelConfig(), shape, n_classes)
