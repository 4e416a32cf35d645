"""Typed configuration of temperature and flip-ratio schedules (Hydra schemas)."""

from __future__ import annotations

from dataclasses import dataclass

from mcmc_core._validation import check, check_choice

SCHEDULE_NAMES = ("exponential", "step", "linear", "cosine", "constant")
UNITS = ("steps", "epochs")


@dataclass
class ScheduleConfig:
    """Fields shared by every schedule.

    Args:
        name: ``exponential`` (v0 * cooling_rate**t), ``step`` (v0 * gamma**(t // step_size),
            the original), ``linear`` and ``cosine`` (v0 -> floor over ``total`` units),
            ``constant``.
        unit: what ``t`` counts: sampler ``steps`` or ``epochs``.
        cooling_rate: per-unit factor of ``exponential``; in (0, 1].
        step_size: units between two decays of ``step``.
        gamma: decay factor of ``step``; in (0, 1].
        total: units over which ``linear``/``cosine`` reach the floor; ``None`` means the
            whole run.
    """

    name: str = "constant"
    unit: str = "steps"
    cooling_rate: float = 0.999
    step_size: int = 1
    gamma: float = 0.5
    total: int | None = None

    @property
    def floor(self) -> float:
        """Lowest value the schedule may reach."""
        raise NotImplementedError

    def errors(self, prefix: str) -> list[str]:
        """Every violation of this config, one line each (empty when valid)."""
        errors: list[str] = []
        check_choice(errors, f"{prefix}.name", self.name, SCHEDULE_NAMES)
        check_choice(errors, f"{prefix}.unit", self.unit, UNITS)
        check(errors, 0 < self.cooling_rate <= 1, f"{prefix}.cooling_rate", self.cooling_rate,
              "0 < cooling_rate <= 1")
        check(errors, self.step_size >= 1, f"{prefix}.step_size", self.step_size, ">= 1")
        check(errors, 0 < self.gamma <= 1, f"{prefix}.gamma", self.gamma, "0 < gamma <= 1")
        check(errors, self.total is None or self.total >= 1, f"{prefix}.total", self.total,
              "null (the whole run) or >= 1")
        return errors


@dataclass
class TemperatureScheduleConfig(ScheduleConfig):
    """Annealing of the sampler temperature, with floor ``min_temperature``.

    Args:
        min_temperature: the temperature never goes below this.
    """

    name: str = "exponential"
    cooling_rate: float = 0.9995
    min_temperature: float = 1e-6

    @property
    def floor(self) -> float:
        return self.min_temperature

    def errors(self, prefix: str = "schedule") -> list[str]:
        errors = super().errors(prefix)
        check(errors, self.min_temperature >= 0, f"{prefix}.min_temperature",
              self.min_temperature, ">= 0")
        return errors


@dataclass
class FlipRatioScheduleConfig(ScheduleConfig):
    """Decay of the sampler flip ratio (constant by default), with floor ``min_flip_ratio``.

    Args:
        min_flip_ratio: the flip ratio never goes below this (a proposal still flips at least
            one weight).
    """

    name: str = "constant"
    min_flip_ratio: float = 0.0

    @property
    def floor(self) -> float:
        return self.min_flip_ratio

    def errors(self, prefix: str = "flip_schedule") -> list[str]:
        errors = super().errors(prefix)
        check(errors, 0 <= self.min_flip_ratio <= 1, f"{prefix}.min_flip_ratio",
              self.min_flip_ratio, "0 <= min_flip_ratio <= 1")
        return errors
