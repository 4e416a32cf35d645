"""Base class of the schedules that anneal a sampler hyperparameter (mirrors ``LRScheduler``)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any
from typing import Protocol

import torch
from torch import Tensor

UNITS = ("steps", "epochs")


class SamplerLike(Protocol):
    """Anything with ``torch.optim.Optimizer``-style ``param_groups``."""

    param_groups: list[dict[str, Any]]


class BaseSchedule(abc.ABC):
    """Set ``group[key]`` of every param group to a closed-form function of the step count.

    Like ``torch.optim.lr_scheduler.LRScheduler``: construction writes ``initial_<key>`` into
    each group, keeps them as ``base_values`` and takes one step, so that ``last_epoch`` is 0
    and each group holds value(0). Every :meth:`step` then sets value(t) =
    ``max(min_value, _get_closed_form_value(base, t))``. Values only depend on ``t``, so a
    schedule restored by :meth:`load_state_dict` continues exactly.

    Args:
        sampler: Object with ``param_groups`` (a :class:`torch.optim.Optimizer` subclass).
        key: Group entry to schedule, ``"temperature"`` or ``"flip_ratio"``.
            (default: ``"temperature"``)
        min_value: Floor of the value; >= 0. (default: 0.0)
        unit: ``"steps"`` or ``"epochs"``: how often the trainer calls :meth:`step`; the
            schedule itself only counts calls. (default: ``"steps"``)
        last_epoch: Index of the last step taken; -1 starts a new run, anything else resumes
            and needs ``initial_<key>`` in every group. (default: -1)
    """

    def __init__(
        self,
        sampler: SamplerLike,
        *,
        key: str = "temperature",
        min_value: float = 0.0,
        unit: str = "steps",
        last_epoch: int = -1,
    ) -> None:
        if min_value < 0:
            raise ValueError(f"min_value must be >= 0, but got {min_value=}.")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, but got {unit=}.")
        if last_epoch < -1:
            raise ValueError(f"last_epoch must be >= -1, but got {last_epoch=}.")
        initial_key = f"initial_{key}"
        for i, group in enumerate(sampler.param_groups):
            if last_epoch == -1:
                if key not in group:
                    raise KeyError(f"param '{key}' is not specified in param_groups[{i}]")
                group.setdefault(initial_key, group[key])
            elif initial_key not in group:
                raise KeyError(
                    f"param '{initial_key}' is not specified in param_groups[{i}] "
                    "when resuming a schedule"
                )
        self.sampler = sampler
        self.key = key
        self.min_value = float(min_value)
        self.unit = unit
        self.base_values: list[float] = [
            float(group[initial_key]) for group in sampler.param_groups
        ]
        self.last_epoch = last_epoch
        self._last_value: list[float] = []
        self.step()

    @abc.abstractmethod
    def _get_closed_form_value(self, base: float, t: int) -> float:
        """Unfloored value after ``t`` steps for a group whose initial value is ``base``."""
        raise NotImplementedError

    def value_at(self, t: int) -> list[float]:
        """Every group's (floored) value after ``t`` units; the schedule itself is unchanged."""
        return [max(self.min_value, float(self._get_closed_form_value(base, t)))
                for base in self.base_values]

    @classmethod
    def values_t(cls, schedules: Sequence[BaseSchedule], t: Tensor) -> Tensor:
        """The values of ``schedules`` (of this class, one param group each) after ``t`` units
        (int64 ``[L]``): float64 ``[len(schedules), L]``, equal to :meth:`value_at`'s. This
        evaluates :meth:`value_at` once per distinct unit; schedules whose closed form is plain
        arithmetic compute it as tensors instead (the batched kernel reads every chain's
        temperatures a block of steps ahead)."""
        units, inverse = torch.unique(t, return_inverse=True)
        rows = [[s.value_at(u)[0] for u in units.tolist()] for s in schedules]
        return torch.tensor(rows, dtype=torch.float64)[:, inverse]

    @staticmethod
    def _columns(schedules: Sequence[BaseSchedule], *names: str) -> list[Tensor]:
        """Each attribute in ``names`` (``base`` for the base value) of every schedule, as a
        float64 ``[len(schedules), 1]`` column."""
        return [torch.tensor([s.base_values[0] if n == "base" else getattr(s, n)
                              for s in schedules], dtype=torch.float64).unsqueeze(1)
                for n in names]

    def _apply(self) -> None:
        """Write value(``last_epoch``) into every group and cache it."""
        values = self.value_at(max(self.last_epoch, 0))
        for group, value in zip(self.sampler.param_groups, values):
            group[self.key] = value
        self._last_value = values

    def step(self) -> None:
        """Advance one unit and set each group's value to the value at the new count."""
        self.last_epoch += 1
        self._apply()

    def get_last_value(self) -> list[float]:
        """Values the last :meth:`step` wrote, one per param group."""
        return list(self._last_value)

    def state_dict(self) -> dict[str, Any]:
        """State of the schedule: every attribute except the sampler."""
        return {name: value for name, value in self.__dict__.items() if name != "sampler"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` and write the values of its ``last_epoch`` back.

        Raises:
            ValueError: If the state has another number of param groups than the sampler.
        """
        n_groups = len(self.sampler.param_groups)
        n_saved = len(state_dict.get("base_values", self.base_values))
        if n_saved != n_groups:
            raise ValueError(
                f"state_dict has {n_saved} param groups but the sampler has {n_groups}."
            )
        self.__dict__.update(state_dict)
        for group, base in zip(self.sampler.param_groups, self.base_values):
            group[f"initial_{self.key}"] = base
        self._apply()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, last_epoch={self.last_epoch})"
