"""The sweep's progress lines count on: each trial that finished since the last poll gets the
finished count and the best value as of that trial (a real in-memory Optuna study)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeps.workers.progress import SweepProgress, format_trial

DIST = {"x": FloatDistribution(0, 1)}


def _add(study: optuna.Study, state: TrialState, value: float | None, minute: int) -> None:
    trial = create_trial(state=state, value=value, params={"x": 0.5}, distributions=DIST,
                         intermediate_values={1: 0.1} if state == TrialState.PRUNED else None)
    trial.datetime_start = datetime(2024, 1, 1) + timedelta(minutes=minute)
    trial.datetime_complete = trial.datetime_start + timedelta(seconds=30)
    study.add_trial(trial)


def test_each_line_of_a_batch_counts_on(capsys) -> None:
    study = optuna.create_study(direction="maximize")
    _add(study, TrialState.COMPLETE, 0.5, 0)
    progress = SweepProgress(study, n_trials=10, metric="val_accuracy", enabled=False)
    # Four trials finish between two polls (added out of order: lines follow completion time).
    _add(study, TrialState.COMPLETE, 0.7, 4)
    _add(study, TrialState.COMPLETE, 0.6, 1)
    _add(study, TrialState.FAIL, None, 2)
    _add(study, TrialState.PRUNED, None, 3)
    update = progress.update()
    lines = capsys.readouterr().out.splitlines()
    heads = [re.match(r"\[(\d+)/10 best ([0-9.]+)\] trial +(\d+) (\w+)", line).groups()
             for line in lines]
    assert heads == [("2", "0.6000", "2", "COMPLETE"), ("2", "0.6000", "3", "FAIL"),
                     ("3", "0.6000", "4", "PRUNED"), ("4", "0.7000", "1", "COMPLETE")]
    assert update["counts"].finished == 4 and update["best"] == 0.7
    progress.update()  # nothing new: no line
    _add(study, TrialState.COMPLETE, 0.2, 5)
    progress.close()
    assert capsys.readouterr().out.splitlines() == [
        "[5/10 best 0.7000] trial   5 COMPLETE val_accuracy=0.2000 (x=0.5)"]


def test_a_complete_trial_line_pairs_the_best_epochs_scores() -> None:
    trial = create_trial(state=TrialState.COMPLETE, value=0.92, params={"x": 0.5},  # unnumbered
                         distributions=DIST,
                         user_attrs={"best_epoch": 3.0, "best_val_accuracy": 0.92,
                                     "best_test_accuracy": 0.91, "test_accuracy": 0.85})
    assert format_trial(trial, "val_accuracy") == (
        "trial  -1 COMPLETE val_accuracy=0.9200 test_accuracy=0.9100 at epoch 3 (x=0.5)")
    # Another study metric: the test accuracy is labelled with the epoch it comes from.
    trial.value = 0.31
    assert format_trial(trial, "val_loss") == (
        "trial  -1 COMPLETE val_loss=0.3100 (best val_accuracy at epoch 3: "
        "test_accuracy=0.9100) (x=0.5)")
