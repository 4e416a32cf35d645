"""``kill -9`` of a 2-worker sweep whose workers run their trials as populations of two, once the
chains have checkpointed an early epoch, then the same command again: the killed trials are
retried with the same parameters, in populations again, each chain from its own checkpoint epoch
(its elapsed steps folded into its start temperature), and the study ends with exactly
``n_trials`` finished trials, each in one MLflow run continued across the kill."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from mcmc_core.trainers import load_checkpoint
from sweeptools import assert_as_uninterrupted, finished, retry_of, states, wait_for


N_TRIALS, POPULATION, EPOCHS, STEPS = 4, 2, 5, 15000
LONG = ["device=cpu", "dataset=synthetic", f"trainer.epochs={EPOCHS}",
        f"trainer.steps_per_epoch={STEPS}"]


@pytest.fixture(scope="module")
def killed(new_sweep):
    s = new_sweep("population-kill-9")
    # Two workers asking for two trials each: two populations of two (one thread each).
    args = s.args(f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2",
                  "hydra.sweeper.pruner=none", f"hydra.sweeper.population={POPULATION}", base=LONG)
    launch = s.start(args)
    name = launch.study_name()
    # Every chain has checkpointed an epoch, none is near its end (the two populations may be
    # an epoch apart).
    wait_for(lambda: (e := s.checkpoint_epochs("last.pt")) and len(e) == N_TRIALS and
             1 <= min(e.values()) and max(e.values()) <= EPOCHS - 2, 120,
             "checkpoints of an early epoch", launch)
    killed_ms = int(time.time() * 1000)
    before = launch.kill_and_reap(s.study(name))
    at_kill = s.checkpoint_epochs("last.pt")
    rerun = s.run(args).ok()
    return SimpleNamespace(s=s, killed_ms=killed_ms, at_kill=at_kill, before=before,
                           rerun=rerun, trials=s.study(name).get_trials(), runs=s.runs(name),
                           first_output=launch.output())



def by_worker(trials) -> list[list]:
    """The trials of each worker process (each ran them as one population)."""
    pids = sorted({t.user_attrs["pid"] for t in trials})
    return [[t for t in trials if t.user_attrs["pid"] == pid] for pid in pids]


def test_kill_left_the_populations_running_with_checkpoints(killed) -> None:
    assert [t.state for t in killed.before] == [TrialState.RUNNING] * N_TRIALS
    assert [len(group) for group in by_worker(killed.before)] == [POPULATION] * 2
    assert all(1 <= killed.at_kill[t.number] < EPOCHS for t in killed.before)
    assert "Traceback" not in killed.first_output


def test_rerun_ends_with_exactly_n_trials(killed) -> None:
    assert len(finished(killed.trials)) == N_TRIALS, states(killed.trials)
    assert not [t for t in killed.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for old in killed.before:
        now = killed.trials[old.number]
        assert now.state == TrialState.FAIL and "error" not in now.user_attrs
        retry = retry_of(killed.trials, old)
        assert retry.state == TrialState.COMPLETE and retry.params == old.params
        assert retry.user_attrs["pid"] != old.user_attrs["pid"]
    # The retries ran as populations again: each worker's together.
    retries = [retry_of(killed.trials, old) for old in killed.before]
    for group in by_worker(retries):
        assert max(t.datetime_start for t in group) < min(t.datetime_complete for t in group)


def test_each_chain_continued_from_its_own_checkpoint(killed) -> None:
    runs = killed.runs
    for old in killed.before:
        retry, epoch = retry_of(killed.trials, old), killed.at_kill[old.number]
        state = load_checkpoint(killed.s.checkpoints("last.pt")[old.number])
        assert state["epoch"] == EPOCHS and state["step"] == EPOCHS * STEPS
        assert [h["epoch"] for h in state["history"]] == list(range(1, EPOCHS + 1))
        # The same schedule across the kill: T0 * rate**steps, floored.
        t0, rate = old.params["temperature"], old.params["cooling_rate"]
        assert [h["temperature"] for h in state["history"]] == pytest.approx(
            [max(1e-6, t0 * rate ** (e * STEPS)) for e in range(1, EPOCHS + 1)], rel=1e-9)
        assert sorted(retry.intermediate_values) == list(range(1, EPOCHS + 1))
        for step, value in old.intermediate_values.items():
            assert step <= epoch and retry.intermediate_values[step] == pytest.approx(value)
        # One MLflow run, continued: epochs before the checkpoint's logged before the kill, the
        # others after it, none twice. The checkpoint's own epoch was logged before the kill,
        # or, if the kill fell between its checkpoint and its metrics, by the retry that
        # re-opened the run (from the checkpoint's history).
        run_id = retry.user_attrs["mlflow_run_id"]
        assert run_id == old.user_attrs["mlflow_run_id"]
        logged = runs.steps(run_id, "val_accuracy")
        assert [s for s, _ in logged] == list(range(1, EPOCHS + 1)), logged
        assert all(ts < killed.killed_ms for s, ts in logged if s < epoch), logged
        assert all(ts > killed.killed_ms for s, ts in logged if s > epoch), logged
        assert [v for _, v in sorted((m.step, m.value) for m in runs.client.get_metric_history(
            run_id, "n_steps"))] == [e * STEPS for e in range(1, EPOCHS + 1)]


def test_each_resumed_chain_is_bit_identical_to_an_uninterrupted_run(killed, tmp_path) -> None:
    for old in killed.before:
        state = load_checkpoint(killed.s.checkpoints("last.pt")[old.number])
        assert_as_uninterrupted(state, tmp_path / f"trial-{old.number}")


def test_mlflow_one_finished_child_per_trial_none_running(killed) -> None:
    runs = killed.runs
    assert len(runs.parents) == 1 and runs.parents[0].info.status == "FINISHED"
    assert len(runs.children) == N_TRIALS == len(runs.with_status("FINISHED"))
    assert not [r for r in runs.all if r.info.status == "RUNNING"]
