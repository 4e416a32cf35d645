from __future__ import annotations

import pytest
import torch

from mcmc_core._validation import ConfigError
from mcmc_core.schedules import SCHEDULE_NAMES
from mcmc_core.schedules import BaseSchedule
from mcmc_core.schedules import ConstantSchedule
from mcmc_core.schedules import CosineSchedule
from mcmc_core.schedules import ExponentialSchedule
from mcmc_core.schedules import FlipRatioScheduleConfig
from mcmc_core.schedules import LinearSchedule
from mcmc_core.schedules import StepSchedule
from mcmc_core.schedules import TemperatureScheduleConfig
from mcmc_core.schedules import build_schedule

CLASSES: dict[str, type[BaseSchedule]] = {
    "exponential": ExponentialSchedule,
    "step": StepSchedule,
    "linear": LinearSchedule,
    "cosine": CosineSchedule,
    "constant": ConstantSchedule,
}


def _make_sampler() -> torch.optim.SGD:
    sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sampler.param_groups[0].update(temperature=1.0, flip_ratio=0.1)
    return sampler


def test_build_schedule_covers_every_name() -> None:
    assert set(CLASSES) == set(SCHEDULE_NAMES)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_build_schedule_picks_class(name: str) -> None:
    cfg = TemperatureScheduleConfig(name=name, unit="epochs", min_temperature=0.01)
    schedule = build_schedule(cfg, _make_sampler(), key="temperature", horizon=10)
    # The class follows cfg.name, the floor and unit follow the config.
    assert type(schedule) is CLASSES[name]
    assert schedule.key == "temperature"
    assert schedule.min_value == 0.01
    assert schedule.unit == "epochs"
    assert schedule.last_epoch == 0


def test_build_schedule_passes_hyperparameters() -> None:
    sampler = _make_sampler()
    cfg = TemperatureScheduleConfig(name="step", step_size=2, gamma=0.25)
    schedule = build_schedule(cfg, sampler, key="temperature", horizon=10)
    assert isinstance(schedule, StepSchedule)
    values = [sampler.param_groups[0]["temperature"]]
    for _ in range(4):
        schedule.step()
        values.append(sampler.param_groups[0]["temperature"])
    assert values == pytest.approx([1.0, 1.0, 0.25, 0.25, 0.0625])


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_build_schedule_uses_horizon_when_total_is_none(name: str) -> None:
    cfg = TemperatureScheduleConfig(name=name, total=None)
    schedule = build_schedule(cfg, _make_sampler(), key="temperature", horizon=37)
    # total=None means the whole run.
    assert isinstance(schedule, (LinearSchedule, CosineSchedule))
    assert schedule.total == 37


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_build_schedule_total_overrides_horizon(name: str) -> None:
    cfg = TemperatureScheduleConfig(name=name, total=5)
    schedule = build_schedule(cfg, _make_sampler(), key="temperature", horizon=37)
    assert isinstance(schedule, (LinearSchedule, CosineSchedule))
    assert schedule.total == 5


def test_build_schedule_flip_ratio() -> None:
    sampler = _make_sampler()
    cfg = FlipRatioScheduleConfig(name="linear", total=2, min_flip_ratio=0.02)
    schedule = build_schedule(cfg, sampler, key="flip_ratio", horizon=100)
    schedule.step()
    schedule.step()
    # flip_ratio reaches min_flip_ratio; temperature is untouched.
    assert sampler.param_groups[0]["flip_ratio"] == pytest.approx(0.02)
    assert sampler.param_groups[0]["temperature"] == 1.0


def test_build_schedule_rejects_invalid_config() -> None:
    cfg = TemperatureScheduleConfig(name="exponential", cooling_rate=1.5)
    sampler = _make_sampler()
    with pytest.raises(ConfigError, match=r"schedule\.cooling_rate=1\.5") as info:
        build_schedule(cfg, sampler, key="temperature", horizon=10)
    # One line per violation; the sampler is left untouched.
    assert len(info.value.errors) == 1
    assert "initial_temperature" not in sampler.param_groups[0]


def test_build_schedule_flip_prefix_and_all_errors() -> None:
    cfg = FlipRatioScheduleConfig(name="cosine", unit="batches", min_flip_ratio=2.0)
    with pytest.raises(ConfigError) as info:
        build_schedule(cfg, _make_sampler(), key="flip_ratio", horizon=10)
    # Every violation is reported, under the flip_schedule prefix.
    assert [line.split("=")[0] for line in info.value.errors] == [
        "flip_schedule.unit",
        "flip_schedule.min_flip_ratio",
    ]


def test_build_schedule_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match=r"key='lr'"):
        build_schedule(TemperatureScheduleConfig(), _make_sampler(), key="lr", horizon=10)


def test_build_schedule_rejects_empty_horizon_without_total() -> None:
    cfg = TemperatureScheduleConfig(name="cosine")
    with pytest.raises(ValueError, match=r"horizon=0"):
        build_schedule(cfg, _make_sampler(), key="temperature", horizon=0)
