from __future__ import annotations

from typing import Any

import pytest
import torch

from mcmc_core.schedules import ConstantSchedule


def _make_sampler(**group: Any) -> torch.optim.SGD:
    sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sampler.param_groups[0].update(group)
    return sampler


def test_constant_schedule_values_per_step() -> None:
    sampler = _make_sampler(temperature=1.0, flip_ratio=0.02)
    schedule = ConstantSchedule(sampler, key="flip_ratio")
    values = [sampler.param_groups[0]["flip_ratio"]]
    for _ in range(4):
        schedule.step()
        values.append(sampler.param_groups[0]["flip_ratio"])
    # The base value is kept at every step.
    assert values == pytest.approx([0.02] * 5)
    assert schedule.last_epoch == 4


def test_constant_schedule_respects_floor() -> None:
    sampler = _make_sampler(temperature=0.1)
    ConstantSchedule(sampler, min_value=0.4)
    # A base value below the floor is raised to the floor.
    assert sampler.param_groups[0]["temperature"] == pytest.approx(0.4)
