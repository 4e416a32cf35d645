"""The study's plots for the report: one PNG image per plot (matplotlib, Agg backend: no display
needed; MLflow's artifact viewer previews them) and one self-contained HTML page with the
interactive plotly figures (plotly.js inline, once, so it renders offline and in MLflow).

Optuna draws the optimization history, the parameter importances and the slice plot (restyled:
:mod:`.style`); the parallel coordinates (:mod:`.parallel`) and the per-epoch values
(:mod:`.curves`) are drawn here. Every value axis is named by the metric."""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeps.checks.disk import write_atomic
from sweeps.report import curves, parallel
from sweeps.report.style import restyle_matplotlib, restyle_plotly

__all__ = ["HTML_NAME", "PLOTS", "available", "matplotlib_figure", "plotly_figure", "write_html",
           "write_images", "write_plots"]

#: The plots, in report order, with the number of complete trials each needs to say anything.
PLOTS = {
    "optimization_history": 1,
    "param_importances": 2,  # one trial gives every parameter the same importance
    "parallel_coordinate": 1,
    "slice": 1,
    "intermediate_values": 1,  # and a trial that reported intermediate values
}
#: The HTML page holding every plotly figure.
HTML_NAME = "plots.html"
_TITLES = {name: name.replace("_", " ").capitalize() for name in PLOTS}
_TITLES["intermediate_values"] = "Per-epoch values"
#: The plots drawn here rather than by Optuna.
_OURS: dict[str, Any] = {"parallel_coordinate": parallel, "intermediate_values": curves}


def available(study: optuna.Study) -> list[str]:
    """The plots ``study`` has enough trials for, in report order."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    has_params = any(t.params for t in complete)
    names = []
    for name, needed in PLOTS.items():
        if len(complete) < needed:
            continue
        if name == "intermediate_values":
            if not any(t.intermediate_values for t in trials):
                continue
        elif name != "optimization_history" and not has_params:
            continue
        names.append(name)
    return names


def write_plots(study: optuna.Study, folder: Path, metric: str = "Objective Value") -> list[str]:
    """Write the PNG images and the HTML page of the plots ``study`` has enough trials for into
    ``folder``, their value axes named ``metric``; remove plot files left there by earlier
    reports (or versions) that this one does not write. Returns the names of the files
    written."""
    names = available(study)
    written = (write_images(study, folder, names, metric)
               + write_html(study, folder, names, metric))
    stale = [f"{n}.png" for n in PLOTS] + [f"{n}.html" for n in PLOTS] + [HTML_NAME]
    for name in set(stale) - set(written):
        (folder / name).unlink(missing_ok=True)
    return written


def matplotlib_figure(study: optuna.Study, name: str, metric: str) -> Any:
    """The matplotlib figure of plot ``name`` (None: too few trials for it); the parallel
    coordinates and the per-epoch values are ours (:mod:`.parallel`, :mod:`.curves`), the
    others Optuna's, restyled (:func:`~sweeps.report.style.restyle_matplotlib`)."""
    from optuna.visualization import matplotlib as optuna_mpl

    if name in _OURS:
        return _OURS[name].plot_matplotlib(study, metric)
    with _quiet():
        axes = _plot(getattr(optuna_mpl, f"plot_{name}"), study, metric)
    if axes is None:
        return None
    panels = list(axes.flat) if hasattr(axes, "flat") else [axes]
    figure = panels[0].get_figure()
    if len(panels) > 1:  # the slice plot: one panel per parameter, side by side
        figure.set_size_inches(max(6.4, 1.5 + 3.4 * len(panels)), 4.8)
    restyle_matplotlib(panels, study)
    return figure


def plotly_figure(study: optuna.Study, name: str, metric: str) -> Any:
    """The plotly figure of plot ``name`` (None: too few trials for it), as
    :func:`matplotlib_figure` chooses them."""
    if name in _OURS:
        return _OURS[name].plot_plotly(study, metric)
    with _quiet():
        figure = _plot(getattr(optuna.visualization, f"plot_{name}"), study, metric)
    if figure is not None:
        restyle_plotly(figure, study)
    return figure


def write_images(study: optuna.Study, folder: Path, names: list[str],
                 metric: str = "Objective Value") -> list[str]:
    """Save the matplotlib figure of each of ``names`` as ``<name>.png``; returns the files."""
    import matplotlib

    matplotlib.use("Agg")  # no display; also when pyplot was imported with another backend
    import matplotlib.pyplot as plt

    written = []
    for name in names:
        with plt.style.context("default"):  # Optuna's plt.style.use("ggplot") stays inside
            figure = matplotlib_figure(study, name, metric)
            if figure is None:
                continue
            try:
                write_atomic(folder / f"{name}.png", lambda p: figure.savefig(
                    p, format="png", dpi=100, bbox_inches="tight"))
            finally:
                plt.close(figure)
        written.append(f"{name}.png")
    return written


def write_html(study: optuna.Study, folder: Path, names: list[str],
               metric: str = "Objective Value") -> list[str]:
    """Write the plotly figures of ``names`` into one HTML page that carries plotly.js itself
    (no script from the network); returns ``[HTML_NAME]``, or ``[]`` without a plot."""
    sections = []
    for name in names:
        figure = plotly_figure(study, name, metric)
        if figure is None:
            continue
        div = figure.to_html(full_html=False, include_plotlyjs=not sections, div_id=name,
                             default_height="520px")
        sections.append(f'<section><h2 id="{name}-title">{_TITLES[name]}</h2>\n{div}</section>')
    if not sections:
        return []
    title = html.escape(f"Study {study.study_name}: Optuna plots")
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
            "<style>body{font-family:sans-serif;margin:1em 2em}</style></head>\n"
            f"<body><h1>{title}</h1>\n" + "\n".join(sections) + "\n</body></html>\n")
    write_atomic(folder / HTML_NAME, lambda p: p.write_text(page, encoding="utf-8"))
    return [HTML_NAME]


def _plot(plot: Callable[..., Any], study: optuna.Study, metric: str) -> Any:
    """``plot(study)`` with the value named ``metric``, or None where Optuna finds the trials
    too few for it."""
    try:
        return plot(study, target_name=metric)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None


@contextmanager
def _quiet() -> Iterator[None]:
    """Without Optuna's experimental-feature warnings and its log lines about missing trials."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
