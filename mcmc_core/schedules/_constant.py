"""Constant schedule: value(t) = base."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mcmc_core.schedules._base import BaseSchedule


class ConstantSchedule(BaseSchedule):
    """Keep each group's base value (floored at ``min_value``) for the whole run.

    Useful as the default flip-ratio schedule, so the trainer can always call ``step()``.

    Example:
        >>> import torch
        >>> sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sampler.param_groups[0]["flip_ratio"] = 0.01
        >>> schedule = ConstantSchedule(sampler, key="flip_ratio")
        >>> schedule.step()
        >>> schedule.get_last_value()
        [0.01]

    Args:
        sampler: Object with ``param_groups`` (a :class:`torch.optim.Optimizer` subclass).
        **base_kwargs: ``key``, ``min_value``, ``unit``, ``last_epoch`` of
            :class:`BaseSchedule`.
    """

    def _get_closed_form_value(self, base: float, t: int) -> float:
        return base

    @classmethod
    def values_t(cls, schedules: Sequence[BaseSchedule], t: Tensor) -> Tensor:
        base, floor = cls._columns(schedules, "base", "min_value")
        return torch.maximum(floor, base).expand(-1, t.shape[0]).clone()
