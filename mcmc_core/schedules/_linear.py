"""Linear decay from the base value to ``min_value`` over ``total`` units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mcmc_core.schedules._base import BaseSchedule
from mcmc_core.schedules._base import SamplerLike


class LinearSchedule(BaseSchedule):
    """Go linearly from each group's base value to ``min_value`` in ``total`` units, then stay.

    value(t) = ``base + (min_value - base) * min(t, total) / total``.

    Example:
        >>> import torch
        >>> sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sampler.param_groups[0]["temperature"] = 1.0
        >>> schedule = LinearSchedule(sampler, total=4)
        >>> schedule.step()
        >>> schedule.get_last_value()
        [0.75]

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
        return base + (self.min_value - base) * min(t, self.total) / self.total

    @classmethod
    def values_t(cls, schedules: Sequence[BaseSchedule], t: Tensor) -> Tensor:
        base, floor, total = cls._columns(schedules, "base", "min_value", "total")
        done = torch.minimum(t.to(torch.float64).unsqueeze(0), total)
        return torch.maximum(floor, base + (floor - base) * done / total)
