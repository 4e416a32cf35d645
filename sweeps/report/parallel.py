"""Parallel coordinates of a study's complete trials: a vertical axis for the metric, then one
per searched parameter (over its search range, on a log scale where searched on one), each trial
a line coloured by its value, the best on top. Drawn here rather than by Optuna, whose tick
labels (``.3g``) read ``1`` for every cooling rate and whose figure changes between versions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeps.report.scales import Scale, metric_scale, param_scale
from sweeps.report.style import colour_of, plotly_scale, value_cmap

__all__ = ["Parallel", "parallel", "plot_matplotlib", "plot_plotly"]

_TITLE = "Parallel coordinates"


@dataclass(frozen=True)
class Parallel:
    """What the plot shows.

    Args:
        axes: the metric's scale, then each parameter's, by name.
        trials: the complete trials with a finite value, worst first.
        goodness: per trial, 0 (worst) to 1 (best): its colour.
    """

    axes: tuple[Scale, ...]
    trials: tuple[optuna.trial.FrozenTrial, ...]
    goodness: tuple[float, ...]

    def fractions(self, trial: optuna.trial.FrozenTrial) -> list[float]:
        """Where ``trial``'s line crosses each axis (0 bottom, 1 top; NaN: no such param)."""
        values = [trial.value, *(trial.params.get(a.name) for a in self.axes[1:])]
        return [axis.fraction(v) for axis, v in zip(self.axes, values)]


def parallel(study: optuna.Study, metric: str) -> Parallel | None:
    """The plot of ``study``'s complete trials, None without one with a parameter."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.value is not None and math.isfinite(t.value)]
    names = sorted({name for t in trials for name in t.params})
    if not trials or not names:
        return None
    low, high = min(t.value for t in trials), max(t.value for t in trials)
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    trials.sort(key=lambda t: sign * t.value)
    goodness = [0.5 if high == low else (t.value - low) / (high - low) for t in trials]
    if sign < 0:
        goodness = [1.0 - g for g in goodness]
    axes = (metric_scale(metric, [t.value for t in trials]),
            *(param_scale(name, trials) for name in names))
    return Parallel(axes, tuple(trials), tuple(goodness))


def plot_matplotlib(study: optuna.Study, metric: str) -> Any:
    """The plot as a matplotlib figure (None: nothing to plot)."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    plot = parallel(study, metric)
    if plot is None:
        return None
    n = len(plot.axes)
    figure, ax = plt.subplots(figsize=(2.0 + 2.2 * n, 5.0))
    for trial, goodness in zip(plot.trials, plot.goodness):
        ax.plot(range(n), plot.fractions(trial), color=colour_of(goodness), linewidth=1.6,
                alpha=0.85)
    ax.vlines(range(n), 0, 1, color="#555555", linewidth=1.0, zorder=0)
    for x, axis in enumerate(plot.axes):
        for tick, label in zip(axis.ticks, axis.labels):
            y = 0.5 if axis.high == axis.low else (tick - axis.low) / (axis.high - axis.low)
            ax.text(x - 0.03, y, label, ha="right", va="center", fontsize=8, zorder=3,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    ax.set_xlim(-0.45, n - 0.9)
    ax.set_ylim(-0.04, 1.04)
    ax.set_xticks(range(n), [a.name + (" (log)" if a.log else "") for a in plot.axes])
    ax.set_yticks([])
    ax.set_facecolor("white")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{_TITLE} ({metric})")
    values = [t.value for t in plot.trials]
    cmap = value_cmap() if study.direction.name == "MAXIMIZE" else value_cmap().reversed()
    bar = figure.colorbar(ScalarMappable(Normalize(min(values), max(values)), cmap), ax=ax,
                          pad=0.02)
    bar.set_label(metric)
    return figure


def plot_plotly(study: optuna.Study, metric: str) -> Any:
    """The plot as a plotly figure (None: nothing to plot); a hover names a trial's values."""
    import plotly.graph_objects as go

    plot = parallel(study, metric)
    if plot is None:
        return None
    n = len(plot.axes)
    traces = []
    for trial, goodness in zip(plot.trials, plot.goodness):
        values = [trial.value, *(trial.params.get(a.name) for a in plot.axes[1:])]
        text = [f"trial {trial.number}<br>{a.name}: {a.format(v)}"
                for a, v in zip(plot.axes, values)]
        traces.append(go.Scatter(x=list(range(n)), y=plot.fractions(trial), mode="lines",
                                 line={"color": colour_of(goodness), "width": 1.6},
                                 text=text, hovertemplate="%{text}<extra></extra>",
                                 showlegend=False))
    values = [t.value for t in plot.trials]
    traces.append(go.Scatter(  # the colour bar
        x=[None, None], y=[None, None], mode="markers", showlegend=False, hoverinfo="skip",
        marker={"color": [min(values), max(values)], "colorscale": plotly_scale(),
                "reversescale": study.direction.name != "MAXIMIZE", "showscale": True,
                "colorbar": {"title": {"text": metric}}}))
    annotations = [
        {"x": x, "y": 0.5 if a.high == a.low else (tick - a.low) / (a.high - a.low),
         "text": label, "showarrow": False, "xanchor": "right", "xshift": -4,
         "bgcolor": "rgba(255,255,255,0.8)", "font": {"size": 10, "color": "#333"}}
        for x, a in enumerate(plot.axes) for tick, label in zip(a.ticks, a.labels)]
    shapes = [{"type": "line", "x0": x, "x1": x, "y0": 0, "y1": 1, "layer": "below",
               "line": {"color": "#555", "width": 1}} for x in range(n)]
    layout = go.Layout(
        title={"text": f"{_TITLE} ({metric})"}, plot_bgcolor="white", hovermode="closest",
        xaxis={"tickmode": "array", "tickvals": list(range(n)),
               "ticktext": [a.name + (" (log)" if a.log else "") for a in plot.axes],
               "range": [-0.45, n - 0.9], "showgrid": False, "zeroline": False},
        yaxis={"range": [-0.04, 1.04], "visible": False, "fixedrange": True},
        annotations=annotations, shapes=shapes)
    return go.Figure(data=traces, layout=layout)
