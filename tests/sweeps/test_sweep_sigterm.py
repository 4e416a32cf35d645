"""SIGTERM -- what ``timeout``, SLURM's ``scancel`` or preemption, Kubernetes and systemd send --
to a 2-worker sweep mid-trial, to the launcher alone or to its whole process group: the running
trials end after their current epoch and are queued to resume, one line says so, exit status
143, no process is left, nothing RUNNING in Optuna or MLflow; the same command then continues the
stopped trials from their checkpoints."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from mcmc_core.trainers import load_checkpoint
from sweeptools import (
    LONG,
    LONG_EPOCHS,
    finished,
    pid_alive,
    running,
    states,
    wait_for,
    wait_mid_trial,
)

N_TRIALS = 3
SETTINGS = [f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.pruner=none"]


def stop_mid_trial(s, signum: int, group: bool) -> SimpleNamespace:
    """Start the sweep, send ``signum`` to the launcher (or its ``group``) once a RUNNING trial
    has checkpointed an early epoch, wait until the launcher and its workers are gone, then run
    the same command to its end."""
    args = s.multirun_args(*SETTINGS, base=LONG)
    launch = s.start(args, program="mcmc-train")
    name = launch.study_name()
    study = s.study(name)
    wait_mid_trial(s, study, launch)
    workers = {t.user_attrs["pid"] for t in study.get_trials() if "pid" in t.user_attrs}
    if group:
        launch.signal_group(signum)
    else:
        os.kill(launch.proc.pid, signum)
    at_signal = s.checkpoint_epochs()  # read after the signal: no epoch ends in between
    first = launch.wait(timeout=600)
    # Every worker process ends with the launcher: none is left behind as an orphan.
    wait_for(lambda: not any(pid_alive(p) for p in workers), 300, "the workers to be gone")
    after, at_exit, runs_after = study.get_trials(), s.checkpoint_epochs(), s.runs(name)
    rerun = s.run(args, program="mcmc-train")
    return SimpleNamespace(s=s, name=name, first=first, after=after, at_signal=at_signal,
                           at_exit=at_exit, runs_after=runs_after, rerun=rerun,
                           trials=study.get_trials(), runs=s.runs(name))


@pytest.fixture(scope="module", params=["launcher", "group"])
def terminated(request, new_sweep) -> SimpleNamespace:
    """SIGTERM to the launcher alone, or to its whole process group."""
    return stop_mid_trial(new_sweep(f"sigterm-{request.param}"), signal.SIGTERM,
                          group=request.param == "group")


@pytest.fixture(scope="module")
def launcher_killed(new_sweep) -> SimpleNamespace:
    """``kill -9`` of the launcher alone: its workers find their parent gone."""
    return stop_mid_trial(new_sweep("launcher-kill-9"), signal.SIGKILL, group=False)


def test_sigterm_exits_143_with_one_line(terminated) -> None:
    result = terminated.first
    assert result.returncode == 143, result.describe()
    output = result.stdout + result.stderr
    assert output.count("interrupted (SIGTERM): ") == 1, result.describe()
    assert "run the same command to continue" in output
    assert "Traceback" not in output


def test_the_trials_stopped_after_their_current_epoch(terminated) -> None:
    """Stopped within an epoch of the signal: no checkpoint moved on by more than one epoch."""
    for key, epoch in terminated.at_exit.items():
        assert epoch <= terminated.at_signal.get(key, 0) + 1, (terminated.at_signal,
                                                               terminated.at_exit)


def test_nothing_left_running_after_the_stop(terminated) -> None:
    assert not running(terminated.after), states(terminated.after)
    stopped = [t for t in terminated.after if t.user_attrs.get("interrupted")]
    assert stopped, states(terminated.after)
    assert not [r for r in terminated.runs_after.all if r.info.status == "RUNNING"]


def test_the_rerun_continues_the_stopped_trials_from_their_checkpoints(terminated) -> None:
    terminated.rerun.ok()
    trials = terminated.trials
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not running(trials)
    for old in [t for t in terminated.after if t.user_attrs.get("interrupted")]:
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == old.number)
        assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert retry.params == old.params
        epoch = terminated.at_exit.get(old.number, 0)
        if epoch >= 1:  # the same checkpoint folder now holds the whole run, epochs once each
            state = load_checkpoint(terminated.s.checkpoints()[old.number])
            assert [h["epoch"] for h in state["history"]] == list(range(1, LONG_EPOCHS + 1))
            logged = terminated.runs.steps(retry.user_attrs["mlflow_run_id"], "val_accuracy")
            assert [s for s, _ in logged] == list(range(1, LONG_EPOCHS + 1)), logged


def test_workers_of_a_killed_launcher_stop_and_queue_their_trials(launcher_killed) -> None:
    """No orphans: with their launcher gone, workers end their trials after the current epoch,
    queued to resume (not left RUNNING), and exit; the next launch continues them."""
    assert launcher_killed.first.returncode == -signal.SIGKILL
    assert not running(launcher_killed.after), states(launcher_killed.after)
    assert [t for t in launcher_killed.after if t.user_attrs.get("interrupted")]
    # Within an epoch of noticing: the parent watch polls each second, so one more may end.
    for key, epoch in launcher_killed.at_exit.items():
        assert epoch <= launcher_killed.at_signal.get(key, 0) + 2
    launcher_killed.rerun.ok()
    assert len(finished(launcher_killed.trials)) == N_TRIALS, states(launcher_killed.trials)
    assert not running(launcher_killed.trials)
