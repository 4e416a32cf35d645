"""``kill -9`` of a whole 2-worker sweep (parent and workers) in the middle of its trials, then the
same command again: the killed trials are retried with the same parameters from their epoch
checkpoints, the study ends with exactly ``n_trials`` finished trials, and MLflow holds one parent
run and one finished child run per finished trial, none left RUNNING."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from mcmc_core.trainers import load_checkpoint

from sweeptools import LONG, LONG_EPOCHS, finished, kill_mid_trial, retry_of, running, states

N_TRIALS, EPOCHS = 2, LONG_EPOCHS


@pytest.fixture(scope="module")
def killed(new_sweep) -> SimpleNamespace:
    """Start the sweep, SIGKILL its process group once a RUNNING trial has checkpointed an early
    epoch, then run the same command to its end (:func:`sweeptools.kill_mid_trial`)."""
    s = new_sweep("kill-9")
    args = s.args("hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none",
                  base=LONG)
    return kill_mid_trial(s, args, args)


def test_kill_left_running_trials_with_checkpoints(killed) -> None:
    assert running(killed.before), states(killed.before)
    assert any(1 <= killed.at_kill.get(t.number, 0) < EPOCHS for t in running(killed.before))
    assert not finished(killed.before)
    assert "Traceback" not in killed.first_output


def test_rerun_ends_with_exactly_n_trials(killed) -> None:
    assert killed.rerun.study_name == killed.name
    assert len(finished(killed.trials)) == N_TRIALS, states(killed.trials)
    assert not [t for t in killed.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_killed_trials_were_retried_with_same_params(killed) -> None:
    for old in running(killed.before):
        now = killed.trials[old.number]
        assert now.state == TrialState.FAIL
        assert "error" not in now.user_attrs  # died, did not raise
        retry = retry_of(killed.trials, old)
        assert retry.state == TrialState.COMPLETE
        assert retry.params == old.params
        assert retry.system_attrs["retry_history"] == [old.number]
        assert retry.user_attrs["pid"] != old.user_attrs["pid"]


def test_retries_continued_from_their_checkpoints(killed) -> None:
    runs = killed.runs
    resumed = [t for t in running(killed.before) if killed.at_kill.get(t.number, 0) >= 1]
    assert resumed
    for old in resumed:
        retry, epoch = retry_of(killed.trials, old), killed.at_kill[old.number]
        # The same checkpoint folder (keyed by the first trial) now holds the whole run.
        state = load_checkpoint(killed.s.checkpoints()[old.number])
        assert state["epoch"] == EPOCHS and len(state["history"]) == EPOCHS
        assert [h["epoch"] for h in state["history"]] == list(range(1, EPOCHS + 1))
        # Every epoch reported to Optuna once, the early ones re-reported from the checkpoint.
        assert sorted(retry.intermediate_values) == list(range(1, EPOCHS + 1))
        for step, value in old.intermediate_values.items():
            if step <= epoch:
                assert retry.intermediate_values[step] == pytest.approx(value)
        # The same MLflow run, continued: every epoch once (a restart would log epoch 1
        # again), those before the checkpoint's logged before the kill, the later ones after
        # it; the checkpoint's own epoch before the kill or, if the kill fell between its
        # checkpoint and its metrics, by the retry from the checkpoint's history.
        assert retry.user_attrs["mlflow_run_id"] == old.user_attrs["mlflow_run_id"]
        logged = runs.steps(retry.user_attrs["mlflow_run_id"], "val_accuracy")
        assert [s for s, _ in logged] == list(range(1, EPOCHS + 1)), logged
        assert all(ts < killed.killed_ms for s, ts in logged if s < epoch), logged
        assert all(ts > killed.killed_ms for s, ts in logged if s > epoch), logged


def test_mlflow_one_parent_and_one_finished_child_per_finished_trial(killed) -> None:
    runs = killed.runs
    assert len(runs.parents) == 1
    assert runs.parents[0].info.status == "FINISHED"
    done = finished(killed.trials)
    assert len(runs.with_status("FINISHED")) == len(done) == N_TRIALS
    assert not [r for r in runs.all if r.info.status == "RUNNING"]
    by_id = {r.info.run_id: r for r in runs.children}
    for t in done:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.trial_number"] == str(t.number)
        assert run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.metrics["final_epoch"] == EPOCHS
        # Resumed or not: the objective of every epoch once, then the trial's value.
        objective = runs.steps(run.info.run_id, "objective")
        assert [s for s, _ in objective] == [*range(1, EPOCHS + 1), EPOCHS], objective
        assert run.data.metrics["objective"] == t.value
    # A trial killed before its first checkpoint left a run closed as KILLED, linked to its retry.
    for r in runs.children:
        if r.info.status != "FINISHED":
            assert r.info.status == "KILLED" and r.data.tags["optuna.retried"] == "true"
            assert any(o.data.tags.get("optuna.retry_of_run_id") == r.info.run_id
                       for o in runs.children)
