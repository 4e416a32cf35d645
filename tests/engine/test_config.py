"""Validation of a whole run's configuration: one line per violation, before any work."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from mcmc_core import ConfigError, TrainerMCMC, TrainerSTE, binarize_model
from mcmc_core.config import TrainConfig, build_trainer
from mcmc_core.data import DataConfig
from mcmc_core.models import ModelConfig
from mcmc_core.optim import SamplerConfig
from mcmc_core.schedules import FlipRatioScheduleConfig, TemperatureScheduleConfig
from mcmc_core.trainers import TrainerConfig


def _config(**groups: Any) -> TrainConfig:
    """A valid, tiny run, with some groups' fields replaced: ``sampler={"temperature": 0}``."""
    cfg = TrainConfig(
        model=ModelConfig(name="mlp"),
        dataset=DataConfig(name="synthetic"),
        trainer=TrainerConfig(epochs=1, steps_per_epoch=5, verbose=False),
        device="cpu",
    )
    for group, fields in groups.items():
        setattr(cfg, group, replace(getattr(cfg, group), **fields))
    return cfg


# (group, field, bad value, key in the message, what the message says is allowed)
BAD_INPUTS = [
    ("sampler", "temperature", 0.0, "sampler.temperature", "> 0"),
    ("sampler", "temperature", -0.5, "sampler.temperature", "> 0"),
    ("sampler", "temperature", float("nan"), "sampler.temperature", "> 0"),
    ("sampler", "flip_ratio", 0.0, "sampler.flip_ratio", "0 < flip_ratio <= 1"),
    ("sampler", "flip_ratio", 1.5, "sampler.flip_ratio", "0 < flip_ratio <= 1"),
    ("sampler", "flip_ratio", -0.1, "sampler.flip_ratio", "0 < flip_ratio <= 1"),
    ("schedule", "cooling_rate", 0.0, "schedule.cooling_rate", "0 < cooling_rate <= 1"),
    ("schedule", "cooling_rate", 1.5, "schedule.cooling_rate", "0 < cooling_rate <= 1"),
    ("flip_schedule", "cooling_rate", 2.0, "flip_schedule.cooling_rate", "0 < cooling_rate <= 1"),
    ("trainer", "epochs", 0, "trainer.epochs", ">= 1"),
    ("trainer", "epochs", -3, "trainer.epochs", ">= 1"),
    ("model", "name", "vgg16", "model.name", "one of mlp, cnn, alexnet, resnet18"),
    ("dataset", "name", "imagenet", "dataset.name",
     "one of digits, mnist, fashion_mnist, cifar10, idx, synthetic"),
    ("schedule", "name", "zigzag", "schedule.name",
     "one of exponential, step, linear, cosine, constant"),
    ("flip_schedule", "name", "sawtooth", "flip_schedule.name",
     "one of exponential, step, linear, cosine, constant"),
    ("sampler", "acceptance", "glauber", "sampler.acceptance", "one of metropolis, barker"),
    ("sampler", "proposal", "neuron", "sampler.proposal", "one of layer, all"),
    ("sampler", "energy", "batch", "sampler.energy", "one of full, minibatch"),
    ("trainer", "name", "adam", "trainer.name", "one of mcmc, ste"),
]


@pytest.mark.parametrize(("group", "field", "value", "key", "allowed"), BAD_INPUTS,
                         ids=[f"{k}={v}" for _, _, v, k, _ in BAD_INPUTS])
def test_each_bad_input_is_one_line_naming_key_value_and_what_is_allowed(
        group: str, field: str, value: Any, key: str, allowed: str) -> None:
    cfg = _config(**{group: {field: value}})
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert info.value.errors == [message]
    assert message.startswith(f"{key}={value!r} ")
    assert message.endswith(f"expected {allowed}")


def test_valid_configs_pass() -> None:
    cfg = _config()
    assert cfg.errors() == []
    assert cfg.validate() is cfg
    assert TrainConfig().errors() == []  # the defaults
    edge = _config(sampler={"flip_ratio": 1.0}, schedule={"cooling_rate": 1.0},
                   trainer={"epochs": 1})
    assert edge.errors() == []


def test_several_violations_give_one_line_each() -> None:
    cfg = _config(sampler={"temperature": 0.0, "flip_ratio": 1.5},
                  schedule={"cooling_rate": 0.0, "name": "zigzag"},
                  trainer={"epochs": 0}, model={"name": "vgg16"}, dataset={"name": "imagenet"})
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    lines = str(info.value).splitlines()
    assert len(lines) == 7
    keys = sorted(line.split("=", 1)[0] for line in lines)
    assert keys == sorted(["sampler.temperature", "sampler.flip_ratio", "schedule.cooling_rate",
                           "schedule.name", "trainer.epochs", "model.name", "dataset.name"])
    assert all(" is not allowed: expected " in line for line in lines)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_build_trainer_validates_before_any_work(tmp_path: Path) -> None:
    # A dataset that cannot be loaded offline: validation must fail first, without touching it.
    cfg = _config(dataset={"name": "mnist", "root": str(tmp_path / "nowhere"), "download": False},
                  sampler={"temperature": -1.0}, trainer={"epochs": 0})
    with pytest.raises(ConfigError) as info:
        build_trainer(cfg)
    assert len(str(info.value).splitlines()) == 2
    assert not (tmp_path / "nowhere").exists()


def test_build_trainer_builds_the_named_trainer() -> None:
    mcmc = build_trainer(_config(sampler={"temperature": 0.01, "acceptance": "barker"}))
    assert isinstance(mcmc, TrainerMCMC)
    assert mcmc.engine.acceptance == "barker"
    assert mcmc.engine.temperatures()[0] == 0.01
    assert mcmc.train()["epoch"] == 1
    ste = build_trainer(_config(trainer={"name": "ste"}))
    assert isinstance(ste, TrainerSTE)
    assert ste.train()["epoch"] == 1


def _linear_model() -> nn.Module:
    return binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        (dict(temperature=0.0), "sampler.temperature"),
        (dict(flip_ratio=0.0), "sampler.flip_ratio"),
        (dict(flip_ratio=1.01), "sampler.flip_ratio"),
        (dict(schedule=TemperatureScheduleConfig(cooling_rate=0.0)), "schedule.cooling_rate"),
        (dict(flip_schedule=FlipRatioScheduleConfig(name="zigzag")), "flip_schedule.name"),
        (dict(trainer=TrainerConfig(epochs=0)), "trainer.epochs"),
        (dict(sampler=SamplerConfig(n_replicas=0)), "sampler.n_replicas"),
    ],
)
def test_the_python_api_validates_too(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainerMCMC(_linear_model(), nn.CrossEntropyLoss(), "synthetic", **kwargs)
    assert str(info.value).startswith(f"{key}=")
    assert len(str(info.value).splitlines()) == 1


def test_the_python_api_validates_the_ste_trainer() -> None:
    with pytest.raises(ConfigError, match=r"^trainer.epochs=0 "):
        TrainerSTE(_linear_model(), dataset_name="synthetic", trainer=TrainerConfig(epochs=0))


def test_train_rejects_a_non_positive_epoch_count() -> None:
    trainer = TrainerMCMC(_linear_model(), None, "synthetic", 0.01, 0.05, device="cpu",
                          trainer=TrainerConfig(epochs=1, steps_per_epoch=2, verbose=False))
    with pytest.raises(ValueError, match="n_epoch"):
        trainer.train(n_epoch=0)
