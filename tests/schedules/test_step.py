from __future__ import annotations

from typing import Any

import pytest
import torch

from mcmc_core.schedules import StepSchedule


def _make_sampler(**group: Any) -> torch.optim.SGD:
    sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sampler.param_groups[0].update(group)
    return sampler


def _values(schedule: StepSchedule, sampler: torch.optim.SGD, n: int, key: str) -> list[float]:
    values = [sampler.param_groups[0][key]]
    for _ in range(n - 1):
        schedule.step()
        values.append(sampler.param_groups[0][key])
    return values


def test_step_schedule_values_per_step() -> None:
    sampler = _make_sampler(temperature=1.0)
    schedule = StepSchedule(sampler, step_size=2)
    expected = [1.0] * 2 + [0.5] * 2 + [0.25] * 2 + [0.125] * 2
    # The default gamma halves the value every step_size steps.
    assert _values(schedule, sampler, len(expected), "temperature") == pytest.approx(expected)


def test_step_schedule_custom_gamma() -> None:
    sampler = _make_sampler(temperature=2.0)
    schedule = StepSchedule(sampler, step_size=3, gamma=0.1)
    expected = [2.0] * 3 + [0.2] * 3 + [0.02] * 3
    assert _values(schedule, sampler, len(expected), "temperature") == pytest.approx(expected)


def test_step_schedule_respects_floor() -> None:
    sampler = _make_sampler(temperature=1.0)
    schedule = StepSchedule(sampler, step_size=1, gamma=0.5, min_value=0.3)
    expected = [1.0, 0.5] + [0.3] * 4
    assert _values(schedule, sampler, len(expected), "temperature") == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"step_size": 0}, r"step_size=0"),
        ({"step_size": 1.5}, r"step_size=1\.5"),
        ({"step_size": 2, "gamma": 0.0}, r"gamma=0\.0"),
        ({"step_size": 2, "gamma": 1.5}, r"gamma=1\.5"),
    ],
)
def test_step_schedule_rejects_invalid_args(kwargs: dict[str, Any], pattern: str) -> None:
    sampler = _make_sampler(temperature=1.0)
    # The message names the argument and its value.
    with pytest.raises(ValueError, match=pattern):
        StepSchedule(sampler, **kwargs)
