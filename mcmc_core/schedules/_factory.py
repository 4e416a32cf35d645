"""Build a schedule from its typed config."""

from __future__ import annotations

from typing import Any

from mcmc_core._validation import raise_if_any
from mcmc_core.schedules._base import BaseSchedule
from mcmc_core.schedules._base import SamplerLike
from mcmc_core.schedules._config import ScheduleConfig
from mcmc_core.schedules._constant import ConstantSchedule
from mcmc_core.schedules._cosine import CosineSchedule
from mcmc_core.schedules._exponential import ExponentialSchedule
from mcmc_core.schedules._linear import LinearSchedule
from mcmc_core.schedules._step import StepSchedule

_PREFIXES = {"temperature": "schedule", "flip_ratio": "flip_schedule"}


def build_schedule(
    cfg: ScheduleConfig, sampler: SamplerLike, *, key: str, horizon: int
) -> BaseSchedule:
    """Validate ``cfg`` and build the schedule it names, starting a new run.

    Example:
        >>> import torch
        >>> from mcmc_core.schedules import TemperatureScheduleConfig
        >>> sampler = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sampler.param_groups[0]["temperature"] = 1.0
        >>> cfg = TemperatureScheduleConfig(name="linear")
        >>> build_schedule(cfg, sampler, key="temperature", horizon=100).total
        100

    Args:
        cfg: A :class:`TemperatureScheduleConfig` or :class:`FlipRatioScheduleConfig`;
            ``cfg.floor`` becomes ``min_value``.
        sampler: Object with ``param_groups`` (a :class:`torch.optim.Optimizer` subclass).
        key: Group entry to schedule, ``"temperature"`` or ``"flip_ratio"``; also picks the
            config prefix of error messages (``schedule`` or ``flip_schedule``).
        horizon: Run length in ``cfg.unit``; the ``total`` of ``linear``/``cosine`` when
            ``cfg.total`` is ``None``.

    Returns:
        The schedule, already at step 0.

    Raises:
        ConfigError: If ``cfg`` has invalid values, one line per violation.
    """
    if key not in _PREFIXES:
        raise ValueError(f"key must be one of {', '.join(_PREFIXES)}, but got {key=}.")
    raise_if_any(cfg.errors(_PREFIXES[key]))
    common: dict[str, Any] = {"key": key, "min_value": cfg.floor, "unit": cfg.unit}
    if cfg.name == "exponential":
        return ExponentialSchedule(sampler, cfg.cooling_rate, **common)
    if cfg.name == "step":
        return StepSchedule(sampler, cfg.step_size, cfg.gamma, **common)
    if cfg.name == "constant":
        return ConstantSchedule(sampler, **common)
    total = cfg.total if cfg.total is not None else horizon
    if total < 1:
        raise ValueError(f"horizon must be >= 1 when total is None, but got {horizon=}.")
    if cfg.name == "linear":
        return LinearSchedule(sampler, total, **common)
    return CosineSchedule(sampler, total, **common)
