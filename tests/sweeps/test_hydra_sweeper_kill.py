"""``kill -9`` of a whole ``mcmc-train -m hparams_search=default`` sweep (parent and workers) in
the middle of its trials, then the same command again: the killed trials are retried with the
same parameters from their epoch checkpoints, no parameter set runs twice, and the study ends
with exactly ``n_trials`` finished trials under one MLflow parent run, none left RUNNING."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from optuna.trial import TrialState

from mcmc_core.trainers import load_checkpoint

from sweeptools import LONG, LONG_EPOCHS, finished, kill_mid_trial, retry_of, running, states

N_TRIALS, EPOCHS = 2, LONG_EPOCHS


@pytest.fixture(scope="module")
def killed(new_sweep) -> SimpleNamespace:
    """Start the sweep, SIGKILL its process group once a RUNNING trial has checkpointed an early
    epoch, then run the same command to its end, each launch in its own multirun folder
    (:func:`sweeptools.kill_mid_trial`)."""
    s = new_sweep("sweeper-kill-9")
    args = s.multirun_args(f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2",
                           "hydra.sweeper.pruner=none", base=LONG)
    return kill_mid_trial(s, [*args, f"hydra.sweep.dir={s.root / 'm1'}"],
                          [*args, f"hydra.sweep.dir={s.root / 'm2'}"], program="mcmc-train")


def test_the_kill_left_running_trials_with_checkpoints(killed) -> None:
    assert running(killed.before), states(killed.before)
    assert any(1 <= killed.at_kill.get(t.number, 0) < EPOCHS for t in running(killed.before))
    assert "Traceback" not in killed.first_output


def test_the_rerun_ends_with_exactly_n_trials_and_no_duplicate(killed) -> None:
    assert killed.rerun.study_name == killed.name
    trials = killed.trials
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    params = [tuple(sorted(t.params.items())) for t in finished(trials)]
    assert len(set(params)) == len(params), params


def test_killed_trials_continued_from_their_checkpoints(killed) -> None:
    resumed = [t for t in running(killed.before) if killed.at_kill.get(t.number, 0) >= 1]
    assert resumed
    for old in resumed:
        retry, epoch = retry_of(killed.trials, old), killed.at_kill[old.number]
        assert retry.state == TrialState.COMPLETE and retry.params == old.params
        # The checkpoint folder of the first attempt (keyed by its number) holds the whole run.
        state = load_checkpoint(killed.s.checkpoints()[old.number])
        assert [h["epoch"] for h in state["history"]] == list(range(1, EPOCHS + 1))
        # The same MLflow run, continued: every epoch once (a restart would log epoch 1
        # again), the epochs after the checkpoint logged after the kill (an epoch whose
        # metrics the kill cut off after its checkpoint is logged by the retry, as in
        # test_sweep_kill).
        assert retry.user_attrs["mlflow_run_id"] == old.user_attrs["mlflow_run_id"]
        logged = killed.runs.steps(retry.user_attrs["mlflow_run_id"], "val_accuracy")
        assert [s for s, _ in logged] == list(range(1, EPOCHS + 1)), logged
        assert all(ts > killed.killed_ms for s, ts in logged if s > epoch), logged
        # Each attempt has its job folder in its launch's multirun folder.
        for folder, trial in (("m1", old), ("m2", retry)):
            overrides = yaml.safe_load((killed.s.root / folder / str(trial.number) / ".hydra" /
                                        "overrides.yaml").read_text())
            assert f"sampler.temperature={trial.params['temperature']!r}" in overrides


def test_one_mlflow_parent_and_nothing_left_running(killed) -> None:
    runs = killed.runs
    assert len(runs.parents) == 1 and runs.parents[0].info.status == "FINISHED"
    assert len(runs.with_status("FINISHED")) == N_TRIALS
    assert not [r for r in runs.all if r.info.status == "RUNNING"]
