"""Workers as tasks on a real Dask cluster (``hydra.sweeper.backend=dask``): a scheduler and two
Dask workers on 127.0.0.1, each with its own ``CUDA_VISIBLE_DEVICES`` and the resource
``GPU=1``. A 6-trial sweep with two worker tasks, one Dask worker killed with ``kill -9``
mid-trial: its nanny restarts it, Dask runs the task again, the trial it held continues from its
checkpoint, and the sweep finishes with one parent run and nothing RUNNING."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from sweeptools import (
    LONG,
    assert_continued,
    finished,
    running,
    states,
    wait_for,
    wait_mid_trial,
)

N_TRIALS = 6


def dask_args(s, cluster, *extra: str) -> list[str]:
    return s.multirun_args(f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2",
                           "hydra.sweeper.pruner=none", "hydra.sweeper.backend=dask",
                           f"hydra.sweeper.dask.scheduler_file={cluster.scheduler_file}",
                           "hydra.sweeper.dask.gpus_per_worker=1", *extra, base=LONG)


@pytest.fixture(scope="module")
def killed(new_sweep, dask_cluster) -> SimpleNamespace:
    """The sweep, with the Dask worker process of a trial that has checkpointed an epoch killed
    with ``kill -9``."""
    s = new_sweep("dask")
    launch = s.start(dask_args(s, dask_cluster), program="mcmc-train")
    name = launch.study_name()
    study = s.study(name)
    wait_mid_trial(s, study, launch)
    at_kill = s.checkpoint_epochs()
    victim = next(t for t in running(study.get_trials())
                  if at_kill.get(t.number, 0) >= 1 and "pid" in t.user_attrs)
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    result = launch.wait(timeout=900)
    dask_cluster.wait_workers(2)  # the nanny restarted it
    return SimpleNamespace(s=s, name=name, result=result, victim=victim, at_kill=at_kill,
                           trials=study.get_trials(), runs=s.runs(name))


def test_the_sweep_finishes_despite_the_killed_worker(killed) -> None:
    result = killed.result.ok()
    assert "2 Dask workers" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert len(finished(killed.trials)) == N_TRIALS, states(killed.trials)
    assert not [t for t in killed.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_the_killed_trial_continued_from_its_checkpoint(killed) -> None:
    assert_continued(killed.s, killed.trials, killed.runs, [killed.victim.number], killed.at_kill)


def test_each_worker_ran_on_its_own_gpu(killed) -> None:
    """Trials ran in two Dask worker processes whose GPUs (``CUDA_VISIBLE_DEVICES``) differ."""
    gpus = {t.user_attrs["cuda_visible_devices"] for t in finished(killed.trials)}
    assert gpus == {"0", "1"}, gpus
    assert len({t.user_attrs["pid"] for t in killed.trials if "pid" in t.user_attrs}) >= 3


def test_one_parent_run_and_nothing_running(killed) -> None:
    runs = killed.runs
    assert len(runs.parents) == 1 and runs.parents[0].info.status == "FINISHED"
    assert len(runs.with_status("FINISHED")) == N_TRIALS
    assert not [r for r in runs.all if r.info.status == "RUNNING"]


def test_an_unreachable_scheduler_is_one_line_before_any_work(new_sweep, dask_cluster) -> None:
    s = new_sweep("dask-unreachable")
    args = [a for a in dask_args(s, dask_cluster) if "scheduler_file" not in a]
    result = s.run([*args, "hydra.sweeper.dask.address=tcp://127.0.0.1:9"], program="mcmc-train")
    assert result.returncode == 1, result.describe()
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(
        "error: hydra.sweeper.dask.address=tcp://127.0.0.1:9: the Dask scheduler did not answer")
    assert not s.out.exists() or not list(s.out.rglob("optuna.db"))


def test_a_gpu_resource_no_worker_offers_is_one_line(new_sweep, dask_cluster) -> None:
    s = new_sweep("dask-gpus")
    result = s.run(dask_args(s, dask_cluster, "hydra.sweeper.dask.gpus_per_worker=4"),
                   program="mcmc-train")
    assert result.returncode == 2, result.describe()
    assert result.stderr.strip() == (
        "error: hydra.sweeper.dask.gpus_per_worker=4: no Dask worker offers the resource GPU=4; "
        "start workers with --resources GPU=1 (one per GPU), or set 0")
