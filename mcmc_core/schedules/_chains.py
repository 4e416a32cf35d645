"""Every chain's own temperature and flip-ratio schedule, read ahead by the batched kernel."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mcmc_core.schedules._base import BaseSchedule
from mcmc_core.schedules._config import FlipRatioScheduleConfig, TemperatureScheduleConfig
from mcmc_core.schedules._factory import build_schedule

__all__ = ["ChainSchedules"]


class _Groups:
    """The param groups one chain's schedules write into (its temperature and flip ratio)."""

    def __init__(self, temperature: float, flip_ratio: float) -> None:
        self.param_groups: list[dict[str, Any]] = [
            {"temperature": float(temperature), "flip_ratio": float(flip_ratio)}]


class ChainSchedules:
    """The temperature and flip-ratio schedules of ``K`` chains, each chain its own objects.

    A chain's schedules are the :class:`BaseSchedule` objects a lone run builds from its
    configs, evaluated in closed form at the chain's step: a population that knows the step
    reads every chain's temperatures a block of steps ahead (:meth:`temperatures`), and a chain
    gets the same values alone or batched, after a resume or after other chains left.

    Args:
        temperatures: every chain's initial temperature.
        flip_ratios: every chain's initial flip ratio.
        schedules: every chain's temperature schedule config (one for all, or one per chain).
        flip_schedules: every chain's flip-ratio schedule config (one for all, or one per chain).
        epochs: the run's length, the horizon of ``linear``/``cosine`` without a ``total``.
        steps_per_epoch: steps per epoch, for schedules whose unit is ``epochs``.
    """

    def __init__(self, temperatures: Sequence[float], flip_ratios: Sequence[float],
                 schedules: Sequence[TemperatureScheduleConfig] | TemperatureScheduleConfig,
                 flip_schedules: Sequence[FlipRatioScheduleConfig] | FlipRatioScheduleConfig,
                 *, epochs: int, steps_per_epoch: int) -> None:
        k = len(temperatures)
        if isinstance(schedules, TemperatureScheduleConfig):
            schedules = [schedules] * k
        if isinstance(flip_schedules, FlipRatioScheduleConfig):
            flip_schedules = [flip_schedules] * k
        if not len(flip_ratios) == len(schedules) == len(flip_schedules) == k:
            raise ValueError(f"every chain needs its temperature, flip ratio and schedules, but "
                             f"got {k}, {len(flip_ratios)}, {len(schedules)}, "
                             f"{len(flip_schedules)}.")
        self.steps_per_epoch = steps_per_epoch
        self.temperature: list[BaseSchedule] = []
        self.flip_ratio: list[BaseSchedule] = []
        for t0, f0, sc, fc in zip(temperatures, flip_ratios, schedules, flip_schedules):
            groups = _Groups(t0, f0)
            for cfg, key, made in ((sc, "temperature", self.temperature),
                                   (fc, "flip_ratio", self.flip_ratio)):
                horizon = epochs * steps_per_epoch if cfg.unit == "steps" else epochs
                made.append(build_schedule(cfg, groups, key=key, horizon=horizon))

    @classmethod
    def exponential(cls, temperatures: Sequence[float], cooling_rate: float | Sequence[float],
                    min_temperature: float | Sequence[float] = 0.0) -> ChainSchedules:
        """Every chain cooled per step, ``max(min_temperature_k, T_k * cooling_rate_k ** t)``
        (one value for all chains or one per chain), e.g. for a population:
        ``Population(..., schedule=ChainSchedules.exponential(ts, 0.999).temperatures)``."""
        k = len(temperatures)
        rates = [cooling_rate] * k if isinstance(cooling_rate, (int, float)) else cooling_rate
        floors = ([min_temperature] * k if isinstance(min_temperature, (int, float))
                  else min_temperature)
        configs = [TemperatureScheduleConfig(name="exponential", cooling_rate=float(r),
                                             min_temperature=float(m))
                   for r, m in zip(rates, floors, strict=True)]
        return cls(temperatures, [1.0] * k, configs, FlipRatioScheduleConfig(), epochs=1,
                   steps_per_epoch=1)

    def __len__(self) -> int:
        return len(self.temperature)

    def _unit(self, schedule: BaseSchedule, step: int) -> int:
        return step if schedule.unit == "steps" else step // self.steps_per_epoch

    def _at(self, schedule: BaseSchedule, step: int) -> float:
        return schedule.value_at(self._unit(schedule, step))[0]

    def temperatures(self, start: int, length: int) -> Tensor:
        """Every chain's temperature at steps ``start .. start + length - 1``: float64
        ``[K, length]`` (what :class:`~mcmc_core.population.Population` takes as ``schedule``),
        equal to each schedule's :meth:`~BaseSchedule.value_at`; the chains of one kind of
        schedule are computed together (:meth:`~BaseSchedule.values_t`)."""
        steps = torch.arange(start, start + length)
        kinds: dict[tuple[type, str], list[int]] = {}
        for i, s in enumerate(self.temperature):
            kinds.setdefault((type(s), s.unit), []).append(i)
        if len(kinds) == 1:  # one kind of schedule (a sweep's usual case): no scatter
            (kind, unit), = kinds
            units = steps if unit == "steps" else steps // self.steps_per_epoch
            return kind.values_t(self.temperature, units)
        out = torch.empty(len(self), length, dtype=torch.float64)
        for (kind, unit), rows in kinds.items():
            units = steps if unit == "steps" else steps // self.steps_per_epoch
            out[torch.tensor(rows)] = kind.values_t([self.temperature[i] for i in rows], units)
        return out

    def flip_ratios(self, step: int) -> list[float]:
        """Every chain's flip ratio at ``step``."""
        return [self._at(s, step) for s in self.flip_ratio]

    def at(self, step: int) -> tuple[list[float], list[float]]:
        """Every chain's temperature and flip ratio at ``step`` (what a chain stepped one step
        at a time takes)."""
        return [self._at(s, step) for s in self.temperature], self.flip_ratios(step)

    def steps_with_same_flips(self, step: int) -> int | float:
        """Steps from ``step`` on during which no flip ratio can change: 1 under a varying
        per-step schedule, to the epoch's end under a varying per-epoch one, else infinite."""
        ahead: int | float = math.inf
        for s in self.flip_ratio:
            if s.value_at(0) == s.value_at(1 << 30):  # constant (or floored from the start)
                continue
            ahead = min(ahead, 1 if s.unit == "steps" else
                        self.steps_per_epoch - step % self.steps_per_epoch)
        return ahead

    def reported(self, step: int) -> tuple[list[float], list[float]]:
        """The temperatures and flip ratios an epoch reports after ``step`` steps: per-step
        schedules give the next step's value, per-epoch ones that of the epoch just run."""

        def at(s: BaseSchedule) -> float:
            return self._at(s, step if s.unit == "steps" else max(step - 1, 0))

        return [at(s) for s in self.temperature], [at(s) for s in self.flip_ratio]

    def keep(self, index: Sequence[int]) -> None:
        """Keep only the chains ``index``, in that order (as ``Population.keep``)."""
        self.temperature = [self.temperature[i] for i in index]
        self.flip_ratio = [self.flip_ratio[i] for i in index]
