"""The report's plots on studies with too few trials for some of them: those are skipped without
a word, the others written, ``best.json`` lists exactly the files in the folder, and plot files of
an earlier report that this one does not write are removed. On a study shaped like the default
sweep's, the figures read at a glance: the metric's name on the value axes, log axes for log
searches, distinct tick labels near 1, no white line or point, a legend by trial state."""

from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace

import optuna
import pytest

from sweeps.report.writer import write_report
from sweeps.report.plots import HTML_NAME


def _study(complete: int, pruned: int = 0) -> optuna.Study:
    """An in-memory study of ``complete`` complete and ``pruned`` pruned trials."""
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(complete + pruned):
        trial = study.ask()
        x = trial.suggest_float("temperature", 1e-4, 1.0, log=True)
        trial.suggest_float("cooling_rate", 0.9, 1.0)
        for step in range(3):
            trial.report(x * step, step)
        if i < complete:
            study.tell(trial, x)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study


@pytest.mark.parametrize(("complete", "pruned", "images"), [
    (0, 0, set()),
    (0, 2, set()),  # intermediate values, but no complete trial: nothing to plot
    (1, 1, {"optimization_history", "parallel_coordinate", "slice", "intermediate_values"}),
    (3, 0, {"optimization_history", "param_importances", "parallel_coordinate", "slice",
            "intermediate_values"}),
])
def test_plots_the_trials_allow_and_lists_the_files(tmp_path, caplog, recwarn, complete, pruned,
                                                    images) -> None:
    folder = tmp_path / "report"
    folder.mkdir()
    for name in ("param_importances.png", "slice.html", HTML_NAME):  # an earlier report's
        (folder / name).write_text("old")
    caplog.set_level(logging.WARNING)
    optuna.logging.enable_propagation()
    try:
        summary = write_report(_study(complete, pruned), folder)
    finally:
        optuna.logging.disable_propagation()
    assert not [r for r in caplog.records if r.name.startswith("optuna")], caplog.text
    # The plots are drawn quietly (sweeps.study.trials ignores Optuna's experimental notes globally,
    # which pytest's recwarn undoes: only the plotting's own count here).
    assert not [str(w.message) for w in recwarn
                if issubclass(w.category, optuna.exceptions.ExperimentalWarning)
                and "visualization" in str(w.message)]
    written = {p.name for p in folder.iterdir()}
    expected = {"best.json"} | {f"{n}.png" for n in images}
    if complete + pruned:
        expected.add("trials.csv")
    if images:
        expected.add(HTML_NAME)
        assert (folder / HTML_NAME).stat().st_size > 3_000_000  # plotly.js inside
    assert written == expected
    assert sorted(json.loads((folder / "best.json").read_text())["files"]) == sorted(expected)
    assert summary["files"][0] == "best.json" and sorted(summary["files"]) == sorted(expected)


# --- Readable at a glance: the metric's name, log axes, distinct ticks, colours, legends ---

METRIC = "val_accuracy"
#: The default sweep's search space (conf/hparams_search/default.yaml).
SPACE = {"temperature": (1e-5, 1e-2, True), "cooling_rate": (0.999, 0.99995, False),
         "flip_ratio": (5e-4, 2e-2, True)}
LOG = {"temperature", "flip_ratio"}


def _sweep_like(n: int = 24, pruned_every: int = 3) -> optuna.Study:
    """A study shaped like the default sweep's: ``n`` trials of 10 epochs, every
    ``pruned_every``-th pruned at epoch 4."""
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    for i in range(n):
        trial = study.ask()
        x = {k: trial.suggest_float(k, lo, hi, log=log) for k, (lo, hi, log) in SPACE.items()}
        peak = 0.9 - 0.01 * abs(math.log10(x["temperature"]) + 3) - i * 1e-4
        for epoch in range(1, 11):
            trial.report(peak * epoch / 10, epoch)
            if i % pruned_every == pruned_every - 1 and epoch == 4:
                break
        if i % pruned_every == pruned_every - 1:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, peak)
    return study


@pytest.fixture(scope="module")
def figures():
    """The matplotlib and plotly figure of every plot of a 24-trial study, by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sweeps.report.plots import PLOTS, matplotlib_figure, plotly_figure

    study = _sweep_like()
    with plt.style.context("default"):
        mpl = {name: matplotlib_figure(study, name, METRIC) for name in PLOTS}
    yield SimpleNamespace(study=study, mpl=mpl,
                          plotly={name: plotly_figure(study, name, METRIC) for name in PLOTS})
    for figure in mpl.values():
        plt.close(figure)


def _luminance(colour) -> float:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_value_axes_are_named_by_the_metric(figures) -> None:
    from matplotlib.text import Text

    mpl, plotly = figures.mpl, figures.plotly
    assert mpl["optimization_history"].axes[0].get_ylabel() == METRIC
    slices = [ax for ax in mpl["slice"].axes if ax.get_xlabel() in SPACE]
    assert slices[0].get_ylabel() == METRIC and len(slices) == len(SPACE)
    curves = mpl["intermediate_values"].axes[0]
    assert (curves.get_xlabel(), curves.get_ylabel()) == ("epoch", METRIC)
    parallel, bar = mpl["parallel_coordinate"].axes
    assert parallel.get_xticklabels()[0].get_text() == METRIC and bar.get_ylabel() == METRIC
    # Nowhere Optuna's default name.
    texts = [t.get_text() for f in mpl.values() for t in f.findobj(Text)]
    assert not [t for t in texts if "Objective Value" in t]
    assert plotly["optimization_history"].layout.yaxis.title.text == METRIC
    assert plotly["slice"].layout.yaxis.title.text == METRIC
    assert plotly["intermediate_values"].layout.yaxis.title.text == METRIC
    assert plotly["parallel_coordinate"].layout.xaxis.ticktext[0] == METRIC
    assert "Objective Value" not in "".join(f.to_json() for f in plotly.values())


def test_log_searched_parameters_are_on_log_axes(figures) -> None:
    scales = {ax.get_xlabel(): ax.get_xscale() for ax in figures.mpl["slice"].axes
              if ax.get_xlabel() in SPACE}
    assert scales == {k: "log" if k in LOG else "linear" for k in SPACE}
    layout = figures.plotly["slice"].layout
    types = {layout[k].title.text: layout[k].type for k in layout if k.startswith("xaxis")}
    assert {k for k, v in types.items() if v == "log"} == LOG
    # Ticked at powers of ten over the search range, without crowded minor labels.
    figures.mpl["slice"].canvas.draw()
    (temperature,) = [a for a in figures.mpl["slice"].axes if a.get_xlabel() == "temperature"]
    assert [t.get_text() for t in temperature.get_xticklabels()] == [
        "1e-05", "0.0001", "0.001", "0.01"]
    assert not [t.get_text() for t in temperature.get_xticklabels(minor=True) if t.get_text()]
    # The parallel coordinates say so, and tick powers of ten evenly.
    names = figures.plotly["parallel_coordinate"].layout.xaxis.ticktext
    assert [n for n in names if n.endswith(" (log)")] == ["flip_ratio (log)",
                                                          "temperature (log)"]
    from sweeps.report.parallel import parallel

    scales = {a.name: a for a in parallel(figures.study, METRIC).axes}
    assert {n for n, a in scales.items() if a.log} == LOG
    assert scales["temperature"].labels == ("1e-05", "0.0001", "0.001", "0.01")


def _parallel_ticks(figure) -> dict[int, list[str]]:
    """The tick labels of each axis of the plotly parallel coordinates, by axis index."""
    ticks: dict[int, list[str]] = {}
    for note in figure.layout.annotations:
        ticks.setdefault(note.x, []).append(note.text)
    return ticks


def test_tick_labels_are_distinct_and_exact_near_one(figures) -> None:
    ticks = _parallel_ticks(figures.plotly["parallel_coordinate"])
    names = figures.plotly["parallel_coordinate"].layout.xaxis.ticktext
    for index, labels in ticks.items():
        assert len(set(labels)) == len(labels) >= 2, (names[index], labels)
    cooling = ticks[names.index("cooling_rate")]
    assert cooling == ["0.99900", "0.99925", "0.99950", "0.99975"]
    # The same labels in the PNG, each on a white box over the lines.
    parallel = figures.mpl["parallel_coordinate"].axes[0]
    drawn = [t for t in parallel.texts if t.get_text() in cooling]
    assert len(drawn) == len(cooling)
    assert all(t.get_bbox_patch().get_facecolor()[:3] == (1, 1, 1) for t in drawn)
    # The slice plot's linear axis: a few distinct labels, rotated, no offset text.
    (cooling_ax,) = [a for a in figures.mpl["slice"].axes if a.get_xlabel() == "cooling_rate"]
    figures.mpl["slice"].canvas.draw()
    labels = [t.get_text() for t in cooling_ax.get_xticklabels() if t.get_text()]
    assert len(set(labels)) == len(labels) and 3 <= len(labels) <= 6, labels
    assert all(len(label) >= 6 for label in labels), labels  # 0.9990, not 1
    assert cooling_ax.get_xticklabels()[0].get_rotation() == 30
    assert cooling_ax.xaxis.get_offset_text().get_text() == ""
    axis = [figures.plotly["slice"].layout[k] for k in figures.plotly["slice"].layout
            if k.startswith("xaxis") and figures.plotly["slice"].layout[k].title.text
            == "cooling_rate"][0]
    assert len(set(axis.ticktext)) == len(axis.ticktext) >= 3
    assert [float(t) for t in axis.ticktext] == pytest.approx(list(axis.tickvals), abs=1e-12)


def test_colours_show_on_a_white_background(figures) -> None:
    parallel = figures.mpl["parallel_coordinate"].axes[0]
    assert parallel.get_facecolor()[:3] == (1, 1, 1)
    lines = [line.get_color() for line in parallel.lines]
    assert len(lines) == 16  # the complete trials
    assert max(_luminance(c) for c in lines) < 0.75  # the worst too: no white line
    # Best on top: the last line drawn is the darkest.
    assert _luminance(lines[-1]) == min(_luminance(c) for c in lines)
    for ax in figures.mpl["slice"].axes:
        if ax.get_xlabel() in SPACE:
            assert ax.get_facecolor()[:3] == (1, 1, 1)
            points = ax.collections[0]
            colours = points.get_cmap()(points.norm(points.get_array()))
            assert max(_luminance(c) for c in colours) < 0.75


def test_per_epoch_values_have_a_legend_by_state(figures) -> None:
    ax = figures.mpl["intermediate_values"].axes[0]
    best = figures.study.best_trial.number
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "complete (16)", "pruned (8)", f"best: trial {best}"]
    colours = {line.get_color() for line in ax.lines}
    assert len(colours) == 3 and len(ax.lines) == 24
    shown = [t.name for t in figures.plotly["intermediate_values"].data if t.showlegend]
    assert shown == ["complete (16)", "pruned (8)", f"best: trial {best}"]
    assert len(figures.plotly["intermediate_values"].data) == 24
