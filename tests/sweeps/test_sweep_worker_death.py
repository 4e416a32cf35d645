"""One worker process of a 2-worker sweep killed with ``kill -9`` in the middle of its trial:
a new worker takes its place and resumes that trial from its checkpoint, the other worker's
trial is untouched, and the sweep exits 0 with exactly ``n_trials`` finished trials."""

from __future__ import annotations

import os
import signal

from optuna.trial import TrialState

from sweeptools import finished, states, wait_for

N_TRIALS, EPOCHS = 3, 4
ARGS = ["device=cpu", "dataset=synthetic", f"trainer.epochs={EPOCHS}",
        "trainer.steps_per_epoch=1500", f"hydra.sweeper.n_trials={N_TRIALS}",
        "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none"]


def test_a_killed_worker_is_replaced_and_the_sweep_finishes(new_sweep) -> None:
    s = new_sweep("worker-death")
    launch = s.start(s.args(base=ARGS))
    study = s.study(launch.study_name())

    def checkpointed_trial():
        epochs = s.checkpoint_epochs()
        running = study.get_trials(states=(TrialState.RUNNING,))
        return next((t for t in running if 1 <= epochs.get(t.number, 0) < EPOCHS), None)

    victim = wait_for(checkpointed_trial, 600, "a RUNNING trial with a checkpoint", launch)
    others = [t for t in study.get_trials(states=(TrialState.RUNNING,))
              if t.number != victim.number]
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    result = launch.wait(timeout=900)

    assert result.returncode == 0, result.describe()
    assert "died" in result.stdout and "starting a new worker" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    trials = study.get_trials()
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # The victim failed (died, did not raise) and its retry completed with the same values.
    assert trials[victim.number].state == TrialState.FAIL
    assert "error" not in trials[victim.number].user_attrs
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == victim.params
    assert retry[0].user_attrs["mlflow_run_id"] == victim.user_attrs["mlflow_run_id"]  # resumed
    # The healthy worker's trial ran on, in the same process, to its end.
    for t in others:
        assert trials[t.number].state == TrialState.COMPLETE, states(trials)
        assert trials[t.number].user_attrs["pid"] == t.user_attrs["pid"]
