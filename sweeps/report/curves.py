"""The metric of every trial at each epoch (the values a trial reports for pruning), coloured by
the trial's state, the best trial in black on top: a legend of a few entries (``complete
(20)``, ``pruned (4)``, ``best: trial 7``) however many trials there are, where Optuna's
intermediate values plot lists every trial in 20 repeating colours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeps.report.style import BEST_COLOUR, STATE_COLOURS

__all__ = ["Curve", "curves", "plot_matplotlib", "plot_plotly"]

_TITLE = "Per-epoch values"
_STATES = tuple(STATE_COLOURS)


@dataclass(frozen=True)
class Curve:
    """One trial's per-epoch values.

    Args:
        number: the trial's number.
        state: its state.
        epochs: the epochs it reported at.
        values: the metric at each.
        best: the study's best trial.
    """

    number: int
    state: TrialState
    epochs: tuple[int, ...]
    values: tuple[float, ...]
    best: bool


def curves(study: optuna.Study) -> list[Curve]:
    """The curves of ``study``'s trials that reported a value, the best last."""
    trials = [t for t in study.get_trials(deepcopy=False, states=_STATES)
              if t.intermediate_values]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial.number if complete else None
    out = [Curve(t.number, t.state, tuple(sorted(t.intermediate_values)),
                 tuple(v for _, v in sorted(t.intermediate_values.items())), t.number == best)
           for t in trials]
    return sorted(out, key=lambda c: c.best)


def _labels(found: list[Curve]) -> dict[Any, str]:
    """The legend entry of each state present (with its count) and of the best trial."""
    labels: dict[Any, str] = {}
    for state in _STATES:
        count = sum(c.state == state for c in found)
        if count:
            labels[state] = f"{state.name.lower()} ({count})"
    labels.update({"best": f"best: trial {c.number}" for c in found if c.best})
    return labels


def plot_matplotlib(study: optuna.Study, metric: str) -> Any:
    """The plot as a matplotlib figure (None: no trial reported a value)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    found = curves(study)
    if not found:
        return None
    figure, ax = plt.subplots(figsize=(7.5, 4.8))
    for c in found:
        colour = BEST_COLOUR if c.best else STATE_COLOURS[c.state]
        ax.plot(c.epochs, c.values, color=colour, linewidth=2.2 if c.best else 1.2,
                alpha=1.0 if c.best else 0.6, marker="." if len(c.epochs) < 30 else None)
    labels = _labels(found)
    handles = [Line2D([], [], color=BEST_COLOUR if key == "best" else STATE_COLOURS[key],
                      linewidth=2.2 if key == "best" else 1.2, label=label)
               for key, label in labels.items()]
    ax.legend(handles=handles, loc="lower right")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{_TITLE} ({metric})")
    ax.set_facecolor("white")
    ax.grid(True, color="#dddddd")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return figure


def plot_plotly(study: optuna.Study, metric: str) -> Any:
    """The plot as a plotly figure (None: no trial reported a value); one legend entry per
    state toggles its trials."""
    import plotly.graph_objects as go

    found = curves(study)
    if not found:
        return None
    labels, shown = _labels(found), set()
    traces = []
    for c in found:
        key = "best" if c.best else c.state
        colour = BEST_COLOUR if c.best else STATE_COLOURS[c.state]
        traces.append(go.Scatter(
            x=list(c.epochs), y=list(c.values), mode="lines+markers", name=labels[key],
            legendgroup=str(key), showlegend=key not in shown,
            line={"color": colour, "width": 2.2 if c.best else 1.2},
            marker={"size": 4}, opacity=1.0 if c.best else 0.6,
            hovertemplate=f"trial {c.number} ({c.state.name.lower()})<br>epoch %{{x}}: "
                          f"{metric} %{{y}}<extra></extra>"))
        shown.add(key)
    layout = go.Layout(title={"text": f"{_TITLE} ({metric})"}, plot_bgcolor="white",
                       xaxis={"title": {"text": "epoch"}, "gridcolor": "#dddddd"},
                       yaxis={"title": {"text": metric}, "gridcolor": "#dddddd"})
    return go.Figure(data=traces, layout=layout)
