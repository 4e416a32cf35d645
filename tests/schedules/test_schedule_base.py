from __future__ import annotations

import copy
import doctest
import importlib
from collections.abc import Callable
from typing import Any

import pytest
import torch

from mcmc_core.schedules import BaseSchedule
from mcmc_core.schedules import ConstantSchedule
from mcmc_core.schedules import CosineSchedule
from mcmc_core.schedules import ExponentialSchedule
from mcmc_core.schedules import LinearSchedule
from mcmc_core.schedules import StepSchedule

ScheduleFactory = Callable[..., BaseSchedule]

FACTORIES: dict[str, ScheduleFactory] = {
    "exponential": lambda s, **kw: ExponentialSchedule(s, cooling_rate=0.8, **kw),
    "step": lambda s, **kw: StepSchedule(s, step_size=3, gamma=0.5, **kw),
    "linear": lambda s, **kw: LinearSchedule(s, total=12, **kw),
    "cosine": lambda s, **kw: CosineSchedule(s, total=12, **kw),
    "constant": lambda s, **kw: ConstantSchedule(s, **kw),
}


def _make_sampler(*groups: dict[str, Any]) -> torch.optim.SGD:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], **group} for group in groups]
    return torch.optim.SGD(params, lr=0.1)


def _values(sampler: torch.optim.SGD, key: str = "temperature") -> list[float]:
    return [group[key] for group in sampler.param_groups]


def test_base_schedule_is_abstract() -> None:
    sampler = _make_sampler({"temperature": 1.0})
    # _get_closed_form_value is the one method a subclass must provide.
    with pytest.raises(TypeError):
        BaseSchedule(sampler)  # type: ignore[abstract]


def test_base_schedule_construction_writes_initial_value_and_steps_once() -> None:
    sampler = _make_sampler({"temperature": 2.0})
    schedule = ExponentialSchedule(sampler, cooling_rate=0.5, unit="epochs")
    group = sampler.param_groups[0]
    # Like LRScheduler: initial_<key> is written and one step is taken, to t=0.
    assert group["initial_temperature"] == 2.0
    assert schedule.base_values == [2.0]
    assert schedule.last_epoch == 0
    assert schedule.get_last_value() == [2.0]
    # unit is only stored: it tells the trainer how often to call step().
    assert schedule.unit == "epochs"


def test_base_schedule_flip_ratio_key_leaves_temperature_alone() -> None:
    sampler = _make_sampler({"temperature": 1.0, "flip_ratio": 0.1})
    schedule = StepSchedule(sampler, step_size=1, gamma=0.5, key="flip_ratio")
    for _ in range(3):
        schedule.step()
    # flip_ratio is annealed, temperature keeps its value and gets no initial_ entry.
    assert _values(sampler, "flip_ratio") == pytest.approx([0.0125])
    assert _values(sampler) == [1.0]
    assert sampler.param_groups[0]["initial_flip_ratio"] == 0.1
    assert "initial_temperature" not in sampler.param_groups[0]


def test_base_schedule_temperature_and_flip_ratio_schedules_together() -> None:
    sampler = _make_sampler({"temperature": 1.0, "flip_ratio": 0.2})
    temperature = ExponentialSchedule(sampler, cooling_rate=0.5)
    flip = LinearSchedule(sampler, total=2, key="flip_ratio", min_value=0.1)
    for _ in range(2):
        temperature.step()
        flip.step()
    # Each schedule only writes its own key.
    assert _values(sampler) == pytest.approx([0.25])
    assert _values(sampler, "flip_ratio") == pytest.approx([0.1])


def test_base_schedule_geometric_ladder_keeps_ratio() -> None:
    sampler = _make_sampler({"temperature": 1.0}, {"temperature": 2.0}, {"temperature": 4.0})
    schedule = ExponentialSchedule(sampler, cooling_rate=0.9)
    for _ in range(10):
        schedule.step()
    values = _values(sampler)
    # Each group anneals from its own base value, so the ladder keeps ratio 2.
    assert schedule.base_values == [1.0, 2.0, 4.0]
    assert values == pytest.approx([0.9**10, 2 * 0.9**10, 4 * 0.9**10])
    assert values[1] / values[0] == pytest.approx(2.0)
    assert values[2] / values[1] == pytest.approx(2.0)
    assert schedule.get_last_value() == values


def test_base_schedule_floor_applies_per_group() -> None:
    sampler = _make_sampler({"temperature": 1.0}, {"temperature": 8.0})
    schedule = StepSchedule(sampler, step_size=1, gamma=0.5, min_value=0.75)
    expected = [[1.0, 8.0], [0.75, 4.0], [0.75, 2.0], [0.75, 1.0], [0.75, 0.75], [0.75, 0.75]]
    for t, values in enumerate(expected):
        if t > 0:
            schedule.step()
        assert _values(sampler) == pytest.approx(values)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_base_schedule_state_dict_round_trip(name: str) -> None:
    factory = FACTORIES[name]
    groups = ({"temperature": 1.0}, {"temperature": 3.0})
    reference_sampler = _make_sampler(*groups)
    reference = factory(reference_sampler, min_value=0.05)
    interrupted_sampler = _make_sampler(*groups)
    interrupted = factory(interrupted_sampler, min_value=0.05)
    for _ in range(7):
        reference.step()
        interrupted.step()
    state = copy.deepcopy(interrupted.state_dict())
    # The state holds everything but the sampler.
    assert "sampler" not in state
    assert state["last_epoch"] == 7

    # Resume on a fresh sampler with other starting values: the state decides.
    resumed_sampler = _make_sampler({"temperature": 9.0}, {"temperature": 9.0})
    resumed = factory(resumed_sampler, min_value=0.05)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 7
    assert _values(resumed_sampler) == pytest.approx(_values(reference_sampler))
    assert [g["initial_temperature"] for g in resumed_sampler.param_groups] == [1.0, 3.0]
    for _ in range(10):
        reference.step()
        resumed.step()
        # The resumed schedule continues exactly like the uninterrupted one.
        assert _values(resumed_sampler) == pytest.approx(_values(reference_sampler))
        assert resumed.get_last_value() == pytest.approx(reference.get_last_value())


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_base_schedule_resume_with_last_epoch(name: str) -> None:
    factory = FACTORIES[name]
    reference_sampler = _make_sampler({"temperature": 1.0}, {"temperature": 3.0})
    reference = factory(reference_sampler)
    for _ in range(7):
        reference.step()
    # The sampler's own state_dict carries initial_temperature in its param groups.
    resumed_sampler = _make_sampler({"temperature": 9.0}, {"temperature": 9.0})
    resumed_sampler.load_state_dict(copy.deepcopy(reference_sampler.state_dict()))
    # As in torch, last_epoch is the index of the last step taken before the
    # construction step, so resuming after step 7 passes 6.
    resumed = factory(resumed_sampler, last_epoch=6)
    assert resumed.last_epoch == 7
    assert _values(resumed_sampler) == pytest.approx(_values(reference_sampler))
    for _ in range(10):
        reference.step()
        resumed.step()
        assert _values(resumed_sampler) == pytest.approx(_values(reference_sampler))


def test_base_schedule_resume_without_initial_value_raises_key_error() -> None:
    sampler = _make_sampler({"temperature": 1.0, "initial_temperature": 1.0}, {"temperature": 2.0})
    # The missing entry and the group are named, as in torch.
    with pytest.raises(KeyError, match=r"initial_temperature.*param_groups\[1\]"):
        ExponentialSchedule(sampler, cooling_rate=0.5, last_epoch=3)


def test_base_schedule_missing_key_raises_key_error() -> None:
    sampler = _make_sampler({"temperature": 1.0})
    with pytest.raises(KeyError, match=r"flip_ratio.*param_groups\[0\]"):
        ConstantSchedule(sampler, key="flip_ratio")


def test_base_schedule_load_state_dict_rejects_other_group_count() -> None:
    saved = ConstantSchedule(_make_sampler({"temperature": 1.0}, {"temperature": 2.0}))
    schedule = ConstantSchedule(_make_sampler({"temperature": 1.0}))
    with pytest.raises(ValueError, match="2 param groups"):
        schedule.load_state_dict(saved.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"min_value": -0.1}, r"min_value=-0\.1"),
        ({"unit": "batches"}, r"unit='batches'"),
        ({"last_epoch": -2}, r"last_epoch=-2"),
    ],
)
def test_base_schedule_rejects_invalid_args(kwargs: dict[str, Any], pattern: str) -> None:
    sampler = _make_sampler({"temperature": 1.0})
    # The message names the argument and its value.
    with pytest.raises(ValueError, match=pattern):
        ConstantSchedule(sampler, **kwargs)


@pytest.mark.parametrize(
    "module",
    ["_exponential", "_step", "_linear", "_cosine", "_constant", "_factory"],
)
def test_schedule_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"mcmc_core.schedules.{module}"))
    # Every public class shows a runnable example.
    assert result.attempted > 0
    assert result.failed == 0
