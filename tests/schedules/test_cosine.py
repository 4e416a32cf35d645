from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from mcmc_core.schedules import CosineSchedule


def _make_sampler(**group: Any) -> torch.optim.SGD:
    sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sampler.param_groups[0].update(group)
    return sampler


def _values(schedule: CosineSchedule, sampler: torch.optim.SGD, n: int) -> list[float]:
    values = [sampler.param_groups[0]["temperature"]]
    for _ in range(n - 1):
        schedule.step()
        values.append(sampler.param_groups[0]["temperature"])
    return values


def test_cosine_schedule_values_per_step() -> None:
    sampler = _make_sampler(temperature=1.0)
    schedule = CosineSchedule(sampler, total=4)
    quarter = (1 + math.cos(math.pi / 4)) / 2  # 0.853553...
    expected = [1.0, quarter, 0.5, 1 - quarter] + [0.0] * 3
    # Half a cosine from the base value to 0 in total steps, then flat.
    assert _values(schedule, sampler, len(expected)) == pytest.approx(expected)


def test_cosine_schedule_goes_down_to_min_value() -> None:
    sampler = _make_sampler(temperature=3.0)
    schedule = CosineSchedule(sampler, total=2, min_value=1.0)
    expected = [3.0, 2.0] + [1.0] * 3
    assert _values(schedule, sampler, len(expected)) == pytest.approx(expected)


@pytest.mark.parametrize("total", [0, -1, 1.5])
def test_cosine_schedule_rejects_total(total: Any) -> None:
    sampler = _make_sampler(temperature=1.0)
    with pytest.raises(ValueError, match=rf"total={total}"):
        CosineSchedule(sampler, total=total)
