"""The report's plots on studies with too few trials for some of them: those are skipped without
a word, the others written, ``best.json`` lists exactly the files in the folder, and plot files of
an earlier report that this one does not write are removed."""

from __future__ import annotations

import json
import logging

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
