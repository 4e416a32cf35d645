"""Exponential cooling: value(t) = base * cooling_rate**t."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mcmc_core.schedules._base import BaseSchedule
from mcmc_core.schedules._base import SamplerLike
from mcmc_core.schedules._power import power, power_t


class ExponentialSchedule(BaseSchedule):
    """Multiply each group's value by ``cooling_rate`` every unit: ``base * cooling_rate**t``.

    Example:
        >>> import torch
        >>> sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sampler.param_groups[0]["temperature"] = 1.0
        >>> schedule = ExponentialSchedule(sampler, cooling_rate=0.5)
        >>> schedule.step(); schedule.step()
        >>> sampler.param_groups[0]["temperature"]
        0.25

    Args:
        sampler: Object with ``param_groups`` (a :class:`torch.optim.Optimizer` subclass).
        cooling_rate: Factor applied every unit; in (0, 1].
        **base_kwargs: ``key``, ``min_value``, ``unit``, ``last_epoch`` of
            :class:`BaseSchedule`.
    """

    def __init__(self, sampler: SamplerLike, cooling_rate: float, **base_kwargs: Any) -> None:
        if not 0 < cooling_rate <= 1:
            raise ValueError(f"cooling_rate must be in (0, 1], but got {cooling_rate=}.")
        self.cooling_rate = float(cooling_rate)
        super().__init__(sampler, **base_kwargs)

    def _get_closed_form_value(self, base: float, t: int) -> float:
        return base * power(self.cooling_rate, t)

    @classmethod
    def values_t(cls, schedules: Sequence[BaseSchedule], t: Tensor) -> Tensor:
        base, rate, floor = cls._columns(schedules, "base", "cooling_rate", "min_value")
        return torch.maximum(floor, base * power_t(rate, t))
