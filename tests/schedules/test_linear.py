from __future__ import annotations

from typing import Any

import pytest
import torch

from mcmc_core.schedules import LinearSchedule


def _make_sampler(**group: Any) -> torch.optim.SGD:
    sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sampler.param_groups[0].update(group)
    return sampler


def _values(schedule: LinearSchedule, sampler: torch.optim.SGD, n: int) -> list[float]:
    values = [sampler.param_groups[0]["temperature"]]
    for _ in range(n - 1):
        schedule.step()
        values.append(sampler.param_groups[0]["temperature"])
    return values


def test_linear_schedule_values_per_step() -> None:
    sampler = _make_sampler(temperature=1.0)
    schedule = LinearSchedule(sampler, total=4)
    expected = [1.0, 0.75, 0.5, 0.25] + [0.0] * 3
    # Reaches min_value (0) after total steps, then stays there.
    assert _values(schedule, sampler, len(expected)) == pytest.approx(expected)


def test_linear_schedule_goes_down_to_min_value() -> None:
    sampler = _make_sampler(temperature=2.0)
    schedule = LinearSchedule(sampler, total=5, min_value=1.0)
    expected = [2.0, 1.8, 1.6, 1.4, 1.2] + [1.0] * 3
    assert _values(schedule, sampler, len(expected)) == pytest.approx(expected)


def test_linear_schedule_base_below_floor_is_floored() -> None:
    sampler = _make_sampler(temperature=0.1)
    schedule = LinearSchedule(sampler, total=2, min_value=0.5)
    # A base value below min_value is raised to min_value from step 0.
    assert _values(schedule, sampler, 4) == pytest.approx([0.5] * 4)


@pytest.mark.parametrize("total", [0, -3, 2.5])
def test_linear_schedule_rejects_total(total: Any) -> None:
    sampler = _make_sampler(temperature=1.0)
    with pytest.raises(ValueError, match=rf"total={total}"):
        LinearSchedule(sampler, total=total)
