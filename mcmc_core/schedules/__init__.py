"""Schedules that anneal the sampler's ``temperature`` and ``flip_ratio`` (like LR schedulers)."""

from __future__ import annotations

from mcmc_core.schedules._base import BaseSchedule
from mcmc_core.schedules._chains import ChainSchedules
from mcmc_core.schedules._config import SCHEDULE_NAMES
from mcmc_core.schedules._config import FlipRatioScheduleConfig
from mcmc_core.schedules._config import ScheduleConfig
from mcmc_core.schedules._config import TemperatureScheduleConfig
from mcmc_core.schedules._constant import ConstantSchedule
from mcmc_core.schedules._cosine import CosineSchedule
from mcmc_core.schedules._exponential import ExponentialSchedule
from mcmc_core.schedules._factory import build_schedule
from mcmc_core.schedules._linear import LinearSchedule
from mcmc_core.schedules._step import StepSchedule

__all__ = [
    "SCHEDULE_NAMES",
    "BaseSchedule",
    "ChainSchedules",
    "ConstantSchedule",
    "CosineSchedule",
    "ExponentialSchedule",
    "FlipRatioScheduleConfig",
    "LinearSchedule",
    "ScheduleConfig",
    "StepSchedule",
    "TemperatureScheduleConfig",
    "build_schedule",
]
