"""Cosine annealing from the base value to ``min_value`` over ``total`` units."""

from __future__ import annotations

import math
from typing import Any

from mcmc_core.schedules._base import BaseSchedule
from mcmc_core.schedules._base import SamplerLike


class CosineSchedule(BaseSchedule):
    """Follow half a cosine from each group's base value to ``min_value`` in ``total`` units.

    value(t) = ``min_value + (base - min_value) * (1 + cos(pi * min(t, total) / total)) / 2``;
    after ``total`` units it stays at ``min_value`` (no warm restart).

    Example:
        >>> import torch
        >>> sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sampler.param_groups[0]["temperature"] = 1.0
        >>> schedule = CosineSchedule(sampler, total=2)
        >>> schedule.step()
        >>> round(sampler.param_groups[0]["temperature"], 6)
        0.5

    Args:
        sampler: Object with ``param_groups`` (a :class:`torch.optim.Optimizer` subclass).
        total: Units to reach ``min_value``; >= 1.
        **base_kwargs: ``key``, ``min_value``, ``unit``, ``last_epoch`` of
            :class:`BaseSchedule`.
    """

    def __init__(self, sampler: SamplerLike, total: int, **base_kwargs: Any) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total must be an int >= 1, but got {total=}.")
        self.total = total
        super().__init__(sampler, **base_kwargs)

    def _get_closed_form_value(self, base: float, t: int) -> float:
        progress = min(t, self.total) / self.total
        return self.min_value + (base - self.min_value) * (1 + math.cos(math.pi * progress)) / 2
