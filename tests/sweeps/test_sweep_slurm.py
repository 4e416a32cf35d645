"""Workers as SLURM jobs (``hydra.sweeper.backend=slurm``, submitted with submitit) on a real
one-node SLURM cluster with two fake GPUs: a 6-trial sweep with two workers, one worker
``scancel``led and another requeued (``scontrol requeue``) mid-trial. The cancelled worker is
submitted again, the requeued one starts again, both trials continue from their checkpoints, the
sweep exits 0 with 6 finished trials, one parent run and nothing RUNNING, and each worker saw its
own ``CUDA_VISIBLE_DEVICES``. Then ``hydra.sweeper.slurm.detach=true`` returns once the workers
are submitted and the same command without it attaches to them and writes the report.

The storage is the PostgreSQL of ``MCMC_TEST_POSTGRES_URL`` where one is reachable (as workers
on several nodes need), else SQLite (one node)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from sweeptools import (
    LONG,
    LONG_EPOCHS,
    TINY,
    Sweep,
    assert_continued,
    finished,
    running,
    states,
    wait_for,
)

N_TRIALS = 6


@dataclasses.dataclass
class SharedSweep(Sweep):
    """A sweep whose storage is ``url`` (PostgreSQL) when given."""

    url: str | None = None

    @property
    def storage(self) -> str:
        return self.url or super().storage


@pytest.fixture(scope="module")
def storage_url() -> str | None:
    """The test PostgreSQL server, when reachable (None: SQLite)."""
    from test_sweep_postgres import URL, _reachable

    return URL if URL and _reachable(URL) is None else None


def slurm_args(s: SharedSweep, cluster, *extra: str, base=LONG) -> list[str]:
    """The command the README gives, on this cluster and these folders."""
    shared = ([f"hydra.sweeper.storage={s.url}",
               f"hydra.sweeper.study_name=slurm-{uuid.uuid4().hex[:8]}"] if s.url else [])
    return s.multirun_args("hydra.sweeper.backend=slurm", "hydra.sweeper.n_jobs=2",
                           "hydra.sweeper.slurm.gpus_per_worker=1",
                           f"hydra.sweeper.slurm.partition={cluster.partition}",
                           f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.pruner=none",
                           *shared, *extra, base=base)


def two_trials_mid_run(s: SharedSweep, study) -> list:
    """Two RUNNING trials in different SLURM jobs, each with an early epoch checkpointed."""
    epochs = s.checkpoint_epochs()
    trials = [t for t in running(study.get_trials()) if "slurm_job" in t.user_attrs
              and 1 <= epochs.get(t.number, 0) <= LONG_EPOCHS - 3]
    if len({t.user_attrs["slurm_job"] for t in trials}) < 2:
        return []
    first = trials[0]
    return [first, next(t for t in trials if t.user_attrs["slurm_job"] != first.user_attrs[
        "slurm_job"])]


@pytest.fixture(scope="module")
def stopped(new_sweep, slurm_cluster, storage_url) -> SimpleNamespace:
    s = SharedSweep(new_sweep("slurm").root, storage_url)
    launch = s.start(slurm_args(s, slurm_cluster), program="mcmc-train")
    name = launch.study_name()
    study = s.study(name)
    cancelled, requeued = wait_for(lambda: two_trials_mid_run(s, study), 300,
                                   "two RUNNING trials in two SLURM jobs", launch)
    at_stop = s.checkpoint_epochs()
    last_asked = max(t.number for t in study.get_trials())
    slurm_cluster.cancel(cancelled.user_attrs["slurm_job"])
    slurm_cluster.requeue(requeued.user_attrs["slurm_job"])
    result = launch.wait(timeout=900)
    trials = study.get_trials()
    try:
        yield SimpleNamespace(s=s, name=name, result=result, at_stop=at_stop, trials=trials,
                              stopped=[cancelled.number, requeued.number], runs=s.runs(name),
                              jobs=slurm_cluster.jobs(), last_asked=last_asked,
                              requeued_job=requeued.user_attrs["slurm_job"])
    finally:
        if storage_url:
            import optuna

            optuna.delete_study(study_name=name, storage=storage_url)


def test_the_sweep_finishes_despite_scancel_and_requeue(stopped) -> None:
    result = stopped.result.ok()
    assert "2 SLURM workers: SLURM job " in result.stdout
    assert "was stopped by its scheduler" in result.stdout or "died" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert len(finished(stopped.trials)) == N_TRIALS, states(stopped.trials)
    assert not [t for t in stopped.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_the_requeued_job_ran_the_worker_again(stopped) -> None:
    """The same job id, started again by SLURM, asked trials after the requeue."""
    again = [t.number for t in stopped.trials if t.number > stopped.last_asked
             and t.user_attrs.get("slurm_job") == stopped.requeued_job]
    assert again, [(t.number, t.user_attrs.get("slurm_job")) for t in stopped.trials]


def test_the_stopped_trials_continued_from_their_checkpoints(stopped) -> None:
    assert_continued(stopped.s, stopped.trials, stopped.runs, stopped.stopped, stopped.at_stop)


def test_each_worker_saw_its_own_gpu(stopped) -> None:
    """Every attempt ran with one of the node's GPUs; the two workers running at the stop (in
    two jobs at once) had different ones. (A requeued job may get the other GPU.)"""
    gpus = [t.user_attrs["cuda_visible_devices"] for t in stopped.trials
            if "slurm_job" in t.user_attrs]
    assert set(gpus) == {"0", "1"}, gpus
    at_stop = [stopped.trials[n].user_attrs for n in stopped.stopped]
    assert at_stop[0]["slurm_job"] != at_stop[1]["slurm_job"]
    assert at_stop[0]["cuda_visible_devices"] != at_stop[1]["cuda_visible_devices"], at_stop


def test_one_parent_run_and_nothing_running(stopped) -> None:
    runs = stopped.runs
    assert len(runs.parents) == 1 and runs.parents[0].info.status == "FINISHED"
    assert len(runs.with_status("FINISHED")) == N_TRIALS
    assert not [r for r in runs.all if r.info.status == "RUNNING"]


def test_no_worker_job_is_left(stopped) -> None:
    active = {"PENDING", "RUNNING", "COMPLETING", "REQUEUED", "CONFIGURING"}
    mine = [j for t in stopped.trials if (j := t.user_attrs.get("slurm_job"))]
    assert not [j for j in mine if stopped.jobs.get(j) in active], stopped.jobs


def test_detach_returns_and_the_same_command_attaches(new_sweep, slurm_cluster,
                                                        storage_url) -> None:
    s = SharedSweep(new_sweep("slurm-detach").root, storage_url)
    args = slurm_args(s, slurm_cluster, "hydra.sweeper.n_trials=4", base=TINY)
    detached = s.run([*args, "hydra.sweeper.slurm.detach=true"], program="mcmc-train").ok()
    assert "submitted 2 SLURM workers (SLURM job " in detached.stdout
    assert "report:" not in detached.stdout
    attached = s.run(args, program="mcmc-train", timeout=600).ok()
    study = s.study(attached.study_name)
    try:
        assert ("attached to 2 SLURM workers" in attached.stdout
                or attached.finished_before == 4), attached.describe()
        assert len(finished(study.get_trials())) == 4
        assert (s.out / "report").is_dir() and "best: trial" in attached.stdout
    finally:
        if storage_url:
            import optuna

            optuna.delete_study(study_name=attached.study_name, storage=storage_url)


def test_a_partition_that_does_not_exist_is_one_line(new_sweep, slurm_cluster) -> None:
    s = SharedSweep(new_sweep("slurm-partition").root)
    result = s.run([*slurm_args(s, slurm_cluster), "hydra.sweeper.slurm.partition=nope"],
                   program="mcmc-train")
    assert result.returncode == 2, result.describe()
    assert result.stderr.strip() == ("error: hydra.sweeper.slurm.partition=nope: no such "
                                     "partition; name one that sinfo lists, or null for the "
                                     "default")



def test_ctrl_c_stops_the_slurm_workers_after_their_epoch(new_sweep, slurm_cluster) -> None:
    """SIGINT to the launcher: the worker jobs end their trials after the epoch (queued to
    resume) and leave the queue; exit 130, nothing RUNNING; the same command finishes."""
    import signal

    s = SharedSweep(new_sweep("slurm-sigint").root)
    args = slurm_args(s, slurm_cluster, "hydra.sweeper.n_trials=3")
    launch = s.start(args, program="mcmc-train")
    study = s.study(launch.study_name())
    wait_for(lambda: two_trials_mid_run(s, study), 300, "two RUNNING trials", launch)
    launch.signal_group(signal.SIGINT)
    first = launch.wait(timeout=300)
    assert first.returncode == 130, first.describe()
    assert "interrupted: " in first.stdout
    trials = study.get_trials()
    assert not running(trials), states(trials)
    assert [t for t in trials if t.user_attrs.get("interrupted")], states(trials)
    jobs = slurm_cluster.jobs()
    assert not [j for t in trials if (j := t.user_attrs.get("slurm_job"))
                and jobs.get(j) in ("PENDING", "RUNNING")], jobs
    rerun = s.run(args, program="mcmc-train", timeout=600).ok()
    assert len(finished(s.study(rerun.study_name).get_trials())) == 3


def test_workers_slurm_refuses_are_one_line(new_sweep, slurm_cluster) -> None:
    """More GPUs per worker than the node has: sbatch refuses the job array; one line says so
    (no traceback), exit 1, nothing RUNNING."""
    s = SharedSweep(new_sweep("slurm-refused").root)
    result = s.run([*slurm_args(s, slurm_cluster), "hydra.sweeper.slurm.gpus_per_worker=8"],
                   program="mcmc-train")
    assert result.returncode == 1, result.describe()
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    [line] = [x for x in result.stdout.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: SLURM refused the workers: "), line
    assert not running(s.study(result.study_name).get_trials())


def test_past_max_resubmits_the_sweep_stops_and_the_rerun_continues(new_sweep,
                                                                      slurm_cluster) -> None:
    """``max_resubmits=0``: a cancelled worker is not replaced; one line says so, the other
    worker ends after its epoch, exit 1, nothing RUNNING; the same command finishes."""
    s = SharedSweep(new_sweep("slurm-max-resubmits").root)
    args = slurm_args(s, slurm_cluster, "hydra.sweeper.n_trials=3")
    launch = s.start([*args, "hydra.sweeper.slurm.max_resubmits=0"], program="mcmc-train")
    study = s.study(launch.study_name())
    cancelled, _ = wait_for(lambda: two_trials_mid_run(s, study), 300, "two RUNNING trials",
                            launch)
    slurm_cluster.cancel(cancelled.user_attrs["slurm_job"])
    first = launch.wait(timeout=300)
    assert first.returncode == 1, first.describe()
    job = cancelled.user_attrs["slurm_job"]
    assert re.search(rf"^error: SLURM job {job} (was stopped by its scheduler|died); 0 workers "
                     r"submitted again in this launch \(max_resubmits=0\): stopping$",
                     first.stdout, re.MULTILINE), first.describe()
    assert not running(study.get_trials()), states(study.get_trials())
    s.run(args, program="mcmc-train", timeout=600).ok()
    assert len(finished(study.get_trials())) == 3


def test_no_password_in_what_a_slurm_sweep_writes(new_sweep, slurm_cluster, mlflow_server,
                                                  storage_url) -> None:
    """submitit pickles each job's call into ``<output_dir>/slurm/``: with a password in
    ``tracking.uri`` (and in the PostgreSQL storage's URL, where reachable) the sweep works and
    no file under the sweep's folders, no output and no MLflow file holds the password."""
    from test_sweep_secrets import PASSWORD, in_text, leaks

    s = SharedSweep(new_sweep("slurm-secrets").root, storage_url)
    uri = mlflow_server.uri("slurm", PASSWORD)
    result = s.run(slurm_args(s, slurm_cluster, "hydra.sweeper.n_trials=2",
                              f"tracking.uri={uri}", base=TINY),
                   program="mcmc-train", timeout=600)
    result.ok()
    assert len(finished(s.study(result.study_name).get_trials())) == 2
    assert sorted(s.out.glob("slurm/*/*_submitted.pkl")), "no submitit pickle to check"
    assert not in_text(result.stdout + result.stderr)
    assert leaks(s.root, mlflow_server.root) == []


def test_a_sealed_spec_holds_no_password_and_unseals_in_the_job(monkeypatch) -> None:
    """:func:`seal` masks the storage and tracking URLs wherever the spec holds them;
    :func:`unseal`, given the environment sbatch passes on, restores them."""
    import pickle

    from sweeps.sweeper.settings import McmcOptunaSweeperConf
    from sweeps.workers.slurm_jobs import seal, unseal
    from sweeps.workers.job_folders import JobFolders
    from sweeps.workers.worker import WorkerSpec

    storage = "postgresql+psycopg://me:s3cret-storage@db:5432/optuna"
    tracking = "http://me:s3cret-tracking@mlflow:5000"
    spec = WorkerSpec(index=0, study_name="s", storage_url=storage,
                      settings=McmcOptunaSweeperConf(storage=storage),
                      base_config={"tracking": {"uri": tracking}, "seed": 0}, search={},
                      group_options={}, output_dir="/tmp/out", session="x", parent_run_id=None,
                      tracking_uri=tracking, device="cpu", threads=1, deadline=None,
                      jobs=JobFolders("multirun", ("seed=1", f"tracking.uri={tracking}")))
    sealed, env = seal(spec)
    assert b"s3cret" not in pickle.dumps(sealed)
    assert set(env.values()) == {storage, tracking}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    unsealed = unseal(sealed)
    assert unsealed.jobs.overrides == ("seed=1", "tracking.uri=http://me:***@mlflow:5000")
    assert dataclasses.replace(unsealed, jobs=spec.jobs) == spec
