"""SIGINT to a 2-worker sweep's process group (what Ctrl-C in its terminal sends) stops it cleanly
after the running trials' current epoch: exit status 130 and a message to rerun, nothing left
RUNNING in Optuna or MLflow; the same command then runs only the remaining trials."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from mcmc_core.trainers import load_checkpoint
from sweeptools import finished, states, wait_for

N_TRIALS, EPOCHS = 3, 4
LONG = ["device=cpu", "dataset=synthetic", f"trainer.epochs={EPOCHS}",
        "trainer.steps_per_epoch=15000"]


@pytest.fixture(scope="module")
def stopped(new_sweep):
    """Start the sweep, send SIGINT to its process group mid-trial, then rerun the command."""
    s = new_sweep("sigint")
    args = s.args(f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2",
                  "hydra.sweeper.pruner=none", base=LONG)
    launch = s.start(args)
    name = launch.study_name()
    study = s.study(name)

    def mid_trial() -> bool:
        running = {t.number for t in study.get_trials(states=(TrialState.RUNNING,))}
        for key, path in s.checkpoints().items():
            try:
                if key in running and 1 <= load_checkpoint(path)["epoch"] <= EPOCHS - 2:
                    return True
            except (FileNotFoundError, EOFError, RuntimeError):
                pass
        return False

    wait_for(mid_trial, 600, "a RUNNING trial with a checkpoint", launch)
    launch.signal_group(signal.SIGINT)
    first = launch.wait(timeout=600)
    after = study.get_trials()
    runs_after = s.runs(name)
    rerun = s.run(args)
    return SimpleNamespace(s=s, name=name, first=first, after=after, runs_after=runs_after,
                           rerun=rerun, trials=study.get_trials(), runs=s.runs(name))


def interrupted(st) -> list:
    return [t for t in st.after if t.user_attrs.get("interrupted")]


def test_sigint_exits_130_with_a_message_to_rerun(stopped) -> None:
    result = stopped.first
    assert result.returncode == 130, result.describe()
    assert "stopping: trials end after their current epoch" in result.stdout
    done = len(finished(stopped.after))
    assert f"interrupted: {done}/{N_TRIALS} finished; run the same command to continue" in (
        result.stdout)
    assert "Traceback" not in result.stderr, result.stderr


def test_nothing_left_running_after_sigint(stopped) -> None:
    assert not [t for t in stopped.after if t.state == TrialState.RUNNING], states(stopped.after)
    stopped_trials = interrupted(stopped)
    assert stopped_trials, states(stopped.after)
    for t in stopped_trials:
        assert t.state == TrialState.FAIL and "error" not in t.user_attrs
        queued = [w for w in stopped.after if w.system_attrs.get("failed_trial") == t.number]
        assert [w.state for w in queued] == [TrialState.WAITING]
        assert queued[0].params == t.params
    runs = stopped.runs_after
    assert not [r for r in runs.all if r.info.status == "RUNNING"]
    assert runs.parents[0].info.status == "KILLED"
    for t in stopped_trials:
        run = runs.by_id(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED"
        assert run.data.tags["optuna.state"] in ("INTERRUPTED", "KILLED")


def test_rerun_runs_only_the_remaining_trials(stopped) -> None:
    stopped.rerun.ok()
    assert stopped.rerun.finished_before == len(finished(stopped.after))
    trials = stopped.trials
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    earlier = {t.number for t in finished(stopped.after)}
    # What the rerun ran: the queued retries and new trials (a trial it asked for and gave back
    # unstarted stays WAITING).
    ran = [t for t in trials if t.state != TrialState.WAITING and (
        t.number >= len(stopped.after) or stopped.after[t.number].state == TrialState.WAITING)]
    assert len(ran) == N_TRIALS - len(earlier), states(trials)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ran)
    # The interrupted trials are among them, continued from their checkpoints.
    for t in interrupted(stopped):
        retry = next(r for r in trials if r.system_attrs.get("failed_trial") == t.number)
        assert retry.state == TrialState.COMPLETE and retry.params == t.params
        assert sorted(retry.intermediate_values) == list(range(1, EPOCHS + 1))
        assert retry.user_attrs["mlflow_run_id"] == t.user_attrs["mlflow_run_id"]
        steps = [s for s, _ in stopped.runs.steps(retry.user_attrs["mlflow_run_id"],
                                                   "val_accuracy")]
        assert steps == list(range(1, EPOCHS + 1))  # each epoch logged once, none redone


def test_mlflow_after_rerun(stopped) -> None:
    runs = stopped.runs
    assert len(runs.parents) == 1 and runs.parents[0].info.status == "FINISHED"
    assert runs.parents[0].info.run_id == stopped.runs_after.parents[0].info.run_id
    assert len(runs.with_status("FINISHED")) == N_TRIALS
    assert not [r for r in runs.all if r.info.status == "RUNNING"]
