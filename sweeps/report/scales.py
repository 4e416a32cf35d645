"""How a searched parameter or the metric maps to a plot axis: its range, whether it is drawn on
a log scale (a ``log=True`` search), and tick labels that read distinctly however close the
values are (a cooling rate between 0.999 and 0.99995 gets ``0.9992``, ``0.9994``, ... rather
than ``1``, ``1``, ...)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

__all__ = ["Scale", "decimals", "linear_ticks", "metric_scale", "param_scale", "tick_labels"]


@dataclass(frozen=True)
class Scale:
    """One axis: values are placed at ``position`` (``log10`` of the value on a log scale, the
    index of a category), between ``low`` and ``high`` (same units), with labelled ``ticks``.

    Args:
        name: the parameter's or metric's name.
        low: the lowest position.
        high: the highest position.
        ticks: tick positions.
        labels: the tick labels, distinct.
        log: drawn on a log scale.
        choices: the categories of a categorical parameter.
    """

    name: str
    low: float
    high: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]
    log: bool = False
    choices: tuple[Any, ...] = ()

    def position(self, value: Any) -> float:
        """Where ``value`` sits on the axis (NaN for a missing value)."""
        if value is None:
            return math.nan
        if self.choices:
            return float(self.choices.index(value)) if value in self.choices else math.nan
        return math.log10(value) if self.log else float(value)

    def fraction(self, value: Any) -> float:
        """``value``'s position as a fraction of the axis: 0 at ``low``, 1 at ``high``."""
        if self.high == self.low:
            return 0.5
        return (self.position(value) - self.low) / (self.high - self.low)

    def format(self, value: Any) -> str:
        """``value`` in full, for hover texts."""
        return f"{value:.6g}" if isinstance(value, float) else str(value)


def decimals(ticks: Sequence[float]) -> int:
    """The fewest digits after the point that write every one of ``ticks`` exactly (to a
    millionth of their spacing)."""
    spacing = min((abs(b - a) for a, b in zip(ticks, ticks[1:]) if b != a), default=1.0)
    for digits in range(16):
        if all(abs(round(t, digits) - t) <= spacing * 1e-6 for t in ticks):
            return digits
    return 16


def tick_labels(ticks: Sequence[float]) -> tuple[str, ...]:
    """``ticks`` written with as many decimals as the closest two need."""
    if len(ticks) < 2:
        return tuple(f"{t:.6g}" for t in ticks)
    digits = decimals(ticks)
    return tuple(f"{t:.{digits}f}" for t in ticks)


def linear_ticks(low: float, high: float, count: int = 5) -> tuple[float, ...]:
    """Round tick values between ``low`` and ``high``: about ``count`` of them."""
    from matplotlib.ticker import MaxNLocator

    if high == low:
        return (low,)
    ticks = MaxNLocator(nbins=count - 1, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    slack = (high - low) * 1e-9
    return tuple(float(t) for t in ticks if low - slack <= t <= high + slack)


def _log_ticks(low: float, high: float) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """Ticks of a log axis from ``10**low`` to ``10**high``, at powers of ten (and 2 and 5
    times them when the axis spans less than two)."""
    factors = (1.0,) if high - low >= 2 else (1.0, 2.0, 5.0)
    ticks = [math.log10(f) + e for e in range(math.floor(low), math.ceil(high) + 1)
             for f in factors]
    inside = [t for t in ticks if low - 1e-9 <= t <= high + 1e-9]
    return tuple(inside), tuple(f"{10 ** t:.3g}" for t in inside)


def param_scale(name: str, trials: Sequence[optuna.trial.FrozenTrial]) -> Scale:
    """The axis of parameter ``name`` over ``trials``: its search range (widened to the values
    found, should a study's range have changed), on a log scale when searched on one."""
    dists = [t.distributions[name] for t in trials if name in t.distributions]
    values = [t.params[name] for t in trials if name in t.params]
    dist = dists[-1]
    if isinstance(dist, CategoricalDistribution):
        choices = tuple(dict.fromkeys([*dist.choices, *values]))
        return Scale(name, 0.0, float(len(choices) - 1), tuple(map(float, range(len(choices)))),
                     tuple(str(c) for c in choices), choices=choices)
    assert isinstance(dist, (FloatDistribution, IntDistribution)), dist
    low, high = min([dist.low, *values]), max([dist.high, *values])
    if dist.log:
        low, high = math.log10(low), math.log10(high)
        ticks, labels = _log_ticks(low, high)
        return Scale(name, low, high, ticks, labels, log=True)
    ticks = linear_ticks(low, high)
    labels = tick_labels(ticks) if isinstance(dist, FloatDistribution) else tuple(
        str(int(t)) for t in ticks)
    return Scale(name, float(low), float(high), ticks, labels)


def metric_scale(name: str, values: Sequence[float]) -> Scale:
    """The axis of the metric ``name`` over ``values``."""
    low, high = min(values), max(values)
    ticks = linear_ticks(low, high, count=6)
    return Scale(name, low, high, ticks, tick_labels(ticks))
