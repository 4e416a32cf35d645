"""Step decay: value(t) = base * gamma**(t // step_size), the original research schedule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mcmc_core.schedules._base import BaseSchedule
from mcmc_core.schedules._base import SamplerLike
from mcmc_core.schedules._power import power, power_t


class StepSchedule(BaseSchedule):
    """Multiply each group's value by ``gamma`` every ``step_size`` units.

    Example:
        >>> import torch
        >>> sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sampler.param_groups[0]["temperature"] = 1.0
        >>> schedule = StepSchedule(sampler, step_size=2, gamma=0.5)
        >>> for _ in range(4):
        ...     schedule.step()
        >>> schedule.get_last_value()
        [0.25]

    Args:
        sampler: Object with ``param_groups`` (a :class:`torch.optim.Optimizer` subclass).
        step_size: Units between two decays; >= 1.
        gamma: Decay factor; in (0, 1]. (default: 0.5)
        **base_kwargs: ``key``, ``min_value``, ``unit``, ``last_epoch`` of
            :class:`BaseSchedule`.
    """

    def __init__(
        self, sampler: SamplerLike, step_size: int, gamma: float = 0.5, **base_kwargs: Any
    ) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size must be an int >= 1, but got {step_size=}.")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], but got {gamma=}.")
        self.step_size = step_size
        self.gamma = float(gamma)
        super().__init__(sampler, **base_kwargs)

    def _get_closed_form_value(self, base: float, t: int) -> float:
        return base * power(self.gamma, t // self.step_size)

    @classmethod
    def values_t(cls, schedules: Sequence[BaseSchedule], t: Tensor) -> Tensor:
        sizes = {s.step_size for s in schedules}  # type: ignore[attr-defined]
        if len(sizes) != 1:  # one exponent row per step size
            return super().values_t(schedules, t)
        base, gamma, floor = cls._columns(schedules, "base", "gamma", "min_value")
        return torch.maximum(floor, base * power_t(gamma, t // sizes.pop()))
