"""The report's look: colours that show on a white background at both ends of their range
(Optuna's ``Blues`` draws the worst trial white on ggplot's grey), one colour per trial state,
and the restyling of the Optuna figures the report keeps (white background, the colours,
linear axes with few, distinct, rotated tick labels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sweeps.report.scales import linear_ticks, param_scale, tick_labels

__all__ = ["BEST_COLOUR", "STATE_COLOURS", "colour_of", "plotly_scale", "restyle_matplotlib",
           "restyle_plotly", "value_cmap"]

#: Each trial state's line colour (curves of per-epoch values).
STATE_COLOURS = {TrialState.COMPLETE: "#1f77b4", TrialState.PRUNED: "#ff7f0e",
                 TrialState.RUNNING: "#7f7f7f", TrialState.FAIL: "#d62728"}
#: The best trial's.
BEST_COLOUR = "#000000"
#: The part of matplotlib's ``plasma`` used, light end first: orange to dark blue.
_PLASMA = (0.8, 0.0)
_GRID = "#dddddd"


def value_cmap() -> Any:
    """A matplotlib colormap from orange (0: worst, first) to dark blue (1: best, latest)."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["plasma"](np.linspace(*_PLASMA, 256)), name="report")


def colour_of(fraction: float) -> str:
    """The hex colour of ``fraction`` (0 to 1) on :func:`value_cmap`."""
    from matplotlib.colors import to_hex

    return to_hex(value_cmap()(min(max(fraction, 0.0), 1.0)))


def plotly_scale() -> list[list[Any]]:
    """:func:`value_cmap` as a plotly colorscale."""
    return [[i / 10, colour_of(i / 10)] for i in range(11)]


def restyle_matplotlib(panels: Sequence[Any], study: optuna.Study) -> None:
    """Restyle Optuna's matplotlib ``panels``: white background, light grid, points and lines
    coloured by :func:`value_cmap`; the x axis of a parameter searched on a log scale ticked as
    :func:`~sweeps.report.scales.param_scale` ticks it (no crowded minor labels), of a linear
    float parameter with about five distinct tick labels, rotated; both over the search
    range."""
    from matplotlib.collections import Collection
    from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullFormatter

    floats = _linear_floats(study)
    trials = study.get_trials(deepcopy=False)
    for ax in panels:
        ax.set_facecolor("white")
        ax.grid(True, color=_GRID)
        for collection in ax.collections:
            if isinstance(collection, Collection) and collection.get_array() is not None:
                collection.set_cmap(value_cmap())
        name = ax.get_xlabel()
        if name == "Trial":  # the optimization history: trial numbers
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_xscale() == "log" and any(name in t.distributions for t in trials):
            scale = param_scale(name, trials)
            low, high = _padded(scale.low, scale.high)
            ax.set_xlim(10 ** low, 10 ** high)
            ax.xaxis.set_major_locator(FixedLocator([10 ** t for t in scale.ticks]))
            ax.xaxis.set_major_formatter(FixedFormatter(scale.labels))
            ax.xaxis.set_minor_formatter(NullFormatter())
        elif name in floats and ax.get_xscale() == "linear":
            ax.set_xlim(*_padded(*floats[name]))
            ticks = linear_ticks(*floats[name], count=5)
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FixedFormatter(tick_labels(ticks)))
        else:
            continue
        ax.tick_params(axis="x", labelrotation=30)


def restyle_plotly(figure: Any, study: optuna.Study) -> None:
    """Restyle Optuna's plotly ``figure``: markers coloured by :func:`plotly_scale`; the x axis
    of a parameter over its search range, ticked as in :func:`restyle_matplotlib`."""
    floats = _linear_floats(study)
    trials = study.get_trials(deepcopy=False)
    for trace in figure.data:
        marker = getattr(trace, "marker", None)
        if marker is not None and marker.colorscale is not None:
            marker.colorscale = plotly_scale()
    for key in figure.layout:
        axis = figure.layout[key]
        name = axis.title.text if key.startswith("xaxis") else None
        if name is not None and axis.type == "log" and any(
                name in t.distributions for t in trials):
            scale = param_scale(name, trials)
            axis.update(range=list(_padded(scale.low, scale.high)), tickmode="array",
                        tickvals=[10 ** t for t in scale.ticks], ticktext=list(scale.labels),
                        tickangle=-30)
        elif name in floats:
            low, high = floats[name]
            ticks = linear_ticks(low, high, count=5)
            axis.update(range=list(_padded(low, high)), tickmode="array", tickvals=list(ticks),
                        ticktext=list(tick_labels(ticks)), tickangle=-30)


def _padded(low: float, high: float) -> tuple[float, float]:
    """``low`` to ``high`` with 5 % of room on each side."""
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _linear_floats(study: optuna.Study) -> dict[str, tuple[float, float]]:
    """The range of each parameter searched as a float on a linear scale."""
    ranges: dict[str, tuple[float, float]] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if isinstance(dist, FloatDistribution) and not dist.log:
                low, high = ranges.get(name, (dist.low, dist.high))
                ranges[name] = (min(low, dist.low), max(high, dist.high))
    return ranges
