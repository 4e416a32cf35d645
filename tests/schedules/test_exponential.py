from __future__ import annotations

from typing import Any

import pytest
import torch

from mcmc_core.schedules import ExponentialSchedule


def _make_sampler(**group: Any) -> torch.optim.SGD:
    sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sampler.param_groups[0].update(group)
    return sampler


def test_exponential_schedule_values_per_step() -> None:
    sampler = _make_sampler(temperature=1.0)
    schedule = ExponentialSchedule(sampler, cooling_rate=0.5)
    expected = [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    for t, value in enumerate(expected):
        if t > 0:
            schedule.step()
        # The group holds base * cooling_rate**t after t steps.
        assert sampler.param_groups[0]["temperature"] == pytest.approx(value)
        assert schedule.get_last_value() == pytest.approx([value])
        assert schedule.last_epoch == t


def test_exponential_schedule_cooling_rate_one_is_constant() -> None:
    sampler = _make_sampler(temperature=0.3)
    schedule = ExponentialSchedule(sampler, cooling_rate=1.0)
    for _ in range(5):
        schedule.step()
    # cooling_rate=1 is allowed and never changes the value.
    assert sampler.param_groups[0]["temperature"] == pytest.approx(0.3)


def test_exponential_schedule_respects_floor() -> None:
    sampler = _make_sampler(temperature=1.0)
    schedule = ExponentialSchedule(sampler, cooling_rate=0.5, min_value=0.2)
    expected = [1.0, 0.5, 0.25] + [0.2] * 4
    values = [sampler.param_groups[0]["temperature"]]
    for _ in expected[1:]:
        schedule.step()
        values.append(sampler.param_groups[0]["temperature"])
    # The value never goes below min_value.
    assert values == pytest.approx(expected)


@pytest.mark.parametrize("cooling_rate", [0.0, -0.5, 1.5])
def test_exponential_schedule_rejects_cooling_rate(cooling_rate: float) -> None:
    sampler = _make_sampler(temperature=1.0)
    # The message names the argument and its value.
    with pytest.raises(ValueError, match=rf"cooling_rate=.*{cooling_rate}"):
        ExponentialSchedule(sampler, cooling_rate=cooling_rate)
    # A rejected schedule does not touch the group.
    assert "initial_temperature" not in sampler.param_groups[0]
