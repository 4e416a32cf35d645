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


def test_values_near_a_whole_number_keep_the_digits_that_tell_them_apart() -> None:
    """A cooling rate of 0.999996 shows as such, not as ``1`` (4 significant digits)."""
    dists = {"cooling_rate": FloatDistribution(0.99999, 0.999999),
             "temperature": FloatDistribution(1e-5, 1e-3), "steps": FloatDistribution(1, 9)}
    trial = create_trial(state=TrialState.FAIL, distributions=dists,
                         params={"cooling_rate": 0.99999634, "temperature": 2.81734e-05,
                                 "steps": 3.0})
    assert format_trial(trial, "val_accuracy").endswith(
        "(cooling_rate=0.999996, temperature=2.817e-05, steps=3)")


def test_status_lines_say_elapsed_counts_best_and_eta(capsys) -> None:
    """Without a terminal, a status line every ``status_every`` seconds; an ETA once this launch
    has finished a trial; no ``nan`` before the first result."""
    import time

    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(direction="maximize")
    progress = SweepProgress(study, 4, "val_accuracy", enabled=False, status_every=0.01)
    time.sleep(0.02)
    progress.update()
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.75, params={},
                                 distributions={}))
    time.sleep(0.02)
    progress.update()
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("status: ")]
    assert re.fullmatch(r"status: \d+s elapsed, 0/4 finished \(0 pruned, 0 failed\), 0 running, "
                        r"no result yet", lines[0]), lines
    assert re.fullmatch(r"status: \d+s elapsed, 1/4 finished \(0 pruned, 0 failed\), 0 running, "
                        r"best val_accuracy=0\.7500, ETA \d+s", lines[1]), lines
    assert "nan" not in "".join(lines)


def test_a_sweep_logged_to_a_file_prints_status_lines(new_sweep) -> None:
    """A real sweep whose stdout is a pipe (no bar): the workers' start, status lines with an
    elapsed time and, once a trial finished, an ETA; the report's writing; no library INFO
    lines (the MLflow store is new)."""
    from sweeptools import LONG

    s = new_sweep("status-lines")
    result = s.run(s.args("hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                          "hydra.sweeper.pruner=none", "hydra.sweeper.status_interval=1",
                          base=LONG)).ok()
    lines = result.stdout.splitlines()
    assert "starting 1 worker process on cpu" in lines
    status = [x for x in lines if x.startswith("status: ")]
    assert status and all(re.fullmatch(
        r"status: \S+ elapsed, \d/3 finished \(\d pruned, \d failed\), \d running, "
        r"(no result yet|best val_accuracy=[0-9.]+)(, ETA \S+)?", x) for x in status), status
    assert any(", ETA " in x for x in status), status
    assert lines.index("writing the report") > lines.index(status[-1])
    assert " INFO " not in result.stdout + result.stderr  # MLflow creating its tables, quiet
