"""The sweep loop of the parent process: create or load the study and the MLflow parent run,
start the workers, show progress, stop cleanly on SIGINT, and write the report.

The parent creates the Optuna storage and the MLflow store before any worker starts, so the
workers never race to create their schemas.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from mcmc_core._validation import ConfigError, violation
from mcmc_core.secrets import mask_error, mask_url
from sweeps.cli.main import exit_status
from sweeps.checks.disk import is_disk_full
from sweeps.report.best import format_reproduce
from sweeps.sweeper.config import Sweep
from sweeps.workers.job_folders import JobFolders
from sweeps.report.writer import format_best, write_report
from sweeps.study.stores import absolute_url, ensure_mlflow_store, store_lock
from sweeps.study.trials import (
    count_trials,
    fail_dead_trials,
    open_storage,
    open_study,
    pruning_note,
    recover_trials,
)
from sweeps.tracking.parent_run import (
    close_killed_run,
    close_orphan_runs,
    end_run,
    log_sweep_settings,
    open_parent_run,
)
from sweeps.tracking.best_run import best_run_id, mark_best_run
from sweeps.tracking.mlflow_run import tracking_uri
from sweeps.tracking.outage import set_retry_seconds
from sweeps.tracking.ui_links import closing_lines
from sweeps.workers.supervisor import run_workers
from sweeps.sweeper.settings import McmcOptunaSweeperConf
from sweeps.workers.worker import WorkerSpec, stop_file

__all__ = ["SweepPlan", "launch", "plan", "portable_config", "worker_devices"]

ATTR_PARENT_RUN = "mlflow_parent_run_id"
#: The study's key, the tag that finds its parent run (:data:`sweeps.tracking.mlflow_run.TAG_STUDY_KEY`).
ATTR_SWEEP_KEY = "sweep_key"
#: Study user attribute: how many launches the study has had (each launch's number seeds its
#: workers' samplers).
ATTR_LAUNCHES = "launches"


@dataclass
class SweepPlan:
    """Where a sweep lives and what it runs: computed before any work."""

    name: str
    output_dir: Path
    storage_url: str
    tracking_uri: str | None
    devices: list[str]
    threads: int


def plan(sweep: Sweep) -> SweepPlan:
    """Name, folders, storage, tracking and the device of each worker."""
    import torch

    cfg, settings, name = sweep.train, sweep.settings, sweep.study_name()
    workers = settings.n_jobs
    uri = tracking_uri(cfg.tracking) if cfg.tracking.enabled else None
    if settings.backend != "local":  # each worker takes the GPU its cluster engine gives it
        device = "cuda" if cfg.device.startswith("cuda") else cfg.device
        threads = (settings.slurm.cpus_per_worker if settings.backend == "slurm"
                   else settings.dask.threads)
        return SweepPlan(name=name, output_dir=sweep.output_dir(name).resolve(),
                         storage_url=absolute_url(sweep.storage_url(name)),
                         tracking_uri=uri and absolute_url(uri), devices=[device] * workers,
                         threads=threads)
    use_cuda = (cfg.device.startswith("cuda")
                or (cfg.device == "auto" and torch.cuda.is_available()))
    gpus: list[int] | None = None  # None: every worker on the CPU
    if use_cuda:
        gpus = (settings.gpus if settings.gpus is not None
                else list(range(torch.cuda.device_count())))
        visible = torch.cuda.device_count()
        bad = [g for g in gpus if g >= visible]
        if not gpus or bad:
            raise ConfigError([violation("hydra.sweeper.gpus" if settings.gpus else "device",
                                         settings.gpus or cfg.device,
                                         f"GPU indices below {visible} (visible CUDA GPUs)"
                                         if visible else "cpu or auto: no CUDA GPU is visible")])
    devices = worker_devices(gpus, workers)
    threads = max(1, (os.cpu_count() or 1) // workers)
    return SweepPlan(name=name, output_dir=sweep.output_dir(name),
                     storage_url=sweep.storage_url(name),
                     tracking_uri=uri, devices=devices, threads=threads)


def worker_devices(gpus: list[int] | None, workers: int) -> list[str]:
    """Each worker's device: the CUDA GPUs ``gpus`` round robin, several workers per GPU when
    they outnumber the GPUs (``hydra.sweeper.n_jobs=4 hydra.sweeper.gpus=[0]``: four on
    ``cuda:0``), or the CPU for every worker when ``gpus`` is None."""
    if gpus is None:
        return ["cpu"] * workers
    return [f"cuda:{gpus[i % len(gpus)]}" for i in range(workers)]


def portable_config(base: dict[str, Any], p: SweepPlan) -> dict[str, Any]:
    """``base`` for workers whose working directory is not the launcher's (Dask workers, jobs
    on other nodes): the dataset folder and the tracking store as absolute paths."""
    dataset = {**base["dataset"], "root": str(Path(base["dataset"]["root"]).resolve())}
    return {**base, "dataset": dataset,
            "tracking": {**base["tracking"], "uri": p.tracking_uri or base["tracking"]["uri"]}}


def study_lock(p: SweepPlan) -> Any:
    """The study's lock (:func:`sweeps.study.stores.store_lock`): what touches its MLflow parent run
    -- finding or creating it, the report, closing orphan runs, ending it -- runs under it, so
    that launchers on several machines do it one at a time."""
    return store_lock(p.storage_url, f"parent-run:{p.name}")


def next_launch(p: SweepPlan, study: optuna.Study) -> int:
    """This launch's number in the study (0 for its first), drawn from the storage under the
    study's lock: launchers started together, on one host or several, get different numbers --
    and their workers different sampler seeds -- while a new study's first launch is the same
    on any machine."""
    with study_lock(p):
        number = int(study.user_attrs.get(ATTR_LAUNCHES, 0))
        study.set_user_attr(ATTR_LAUNCHES, number + 1)
    return number


def launch(sweep: Sweep, jobs: JobFolders | None = None) -> int:
    """Run the sweep to ``n_trials`` finished trials; returns the process exit status
    (0 done, 1 ended by ``max_failures``, dead workers or an exhausted space, 130
    interrupted). With ``jobs`` (``mcmc-train -m``), each trial writes its Hydra job folder."""
    p, settings = plan(sweep), sweep.settings
    p.output_dir.mkdir(parents=True, exist_ok=True)
    set_retry_seconds(sweep.train.tracking.retry_seconds)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(p.storage_url, settings,
                           on_retry=lambda t: close_killed_run(p.tracking_uri, t))
    study = open_study(storage, p.name, settings, create=True)
    parent_run_id = None
    if p.tracking_uri:
        ensure_mlflow_store(p.tracking_uri)
        with study_lock(p):  # one run for all launchers
            key = study.user_attrs.get(ATTR_SWEEP_KEY) or uuid.uuid4().hex
            study.set_user_attr(ATTR_SWEEP_KEY, key)
            parent_run_id = open_parent_run(
                p.tracking_uri, p.name, key=key, run_name=f"sweep-{p.name}",
                tags={"optuna.study": p.name, "optuna.storage": p.storage_url},
                run_id=study.user_attrs.get(ATTR_PARENT_RUN))
            study.set_user_attr(ATTR_PARENT_RUN, parent_run_id)
            log_sweep_settings(p.tracking_uri, parent_run_id,
                               dataclasses.replace(settings, study_name=p.name), sweep.search,
                               config=sweep.base)
    # Trials of a previous launch whose processes died are failed and queued for a retry;
    # the MLflow runs they left RUNNING are ended.
    recover_trials(study, settings.grace_period)
    if p.tracking_uri:
        with study_lock(p):
            close_orphan_runs(p.tracking_uri, p.name, study.get_trials(deepcopy=False))

    n_trials = settings.n_trials
    before = count_trials(study.get_trials(deepcopy=False))
    print(f"study {p.name!r}: {before.finished}/{n_trials} finished trials, storage "
          f"{mask_url(p.storage_url)}, output {p.output_dir}", flush=True)
    if before.finished >= n_trials:  # nothing to run: just refresh the report
        return _finish(settings, p, study, parent_run_id, reasons=[], interrupted=None)
    note = pruning_note(settings, before.complete)
    if note:
        print(note, flush=True)
    session = uuid.uuid4().hex[:12]
    deadline = time.time() + settings.timeout if settings.timeout else None
    base = sweep.base if settings.backend == "local" else portable_config(sweep.base, p)
    specs = [WorkerSpec(index=i, study_name=p.name, storage_url=p.storage_url,
                        settings=settings, base_config=base, search=dict(sweep.search),
                        group_options=sweep.group_options, output_dir=str(p.output_dir),
                        session=session, parent_run_id=parent_run_id,
                        tracking_uri=p.tracking_uri, device=p.devices[i], threads=p.threads,
                        deadline=deadline, launch=next_launch(p, study), jobs=jobs)
             for i in range(settings.n_jobs)]
    if settings.backend == "local":
        print(f"starting {len(specs)} worker process{'es' if len(specs) > 1 else ''} on "
              f"{', '.join(p.devices)}", flush=True)
        reasons, interrupted = run_workers(specs, study, n_trials, settings.metric,
                                           stop_file(p.output_dir, session), settings.max_failures)
    else:
        ran = _run_on_cluster(settings, p, specs, study)
        if ran is None:  # detached
            return 0
        reasons, interrupted = ran
    stop_file(p.output_dir, session).unlink(missing_ok=True)
    try:
        fail_dead_trials(study)  # workers killed by a second signal leave RUNNING trials
    except Exception as err:  # on a full disk the next launch does it
        if not is_disk_full(err):
            raise
        reasons.append("disk_full")
    return _finish(settings, p, study, parent_run_id, reasons, interrupted)


def _run_on_cluster(settings: McmcOptunaSweeperConf, p: SweepPlan, specs: list[WorkerSpec],
                    study: optuna.Study) -> tuple[list[str], int | None] | None:
    """Run the workers as SLURM jobs or Dask tasks (:mod:`sweeps.workers.cluster`); None when
    ``hydra.sweeper.slurm.detach`` returns once they are submitted."""
    from sweeps.workers.cluster import run_cluster_workers, submit_workers

    template = specs[0]
    if settings.backend == "slurm":
        from sweeps.workers.slurm_jobs import SlurmBackend

        backend: Any = SlurmBackend(settings.slurm, p.output_dir, job_name=f"mcmc-{p.name}")
        attached = backend.attach(specs[0])
        if attached:
            print(f"attached to {len(attached)} SLURM workers still queued or running: "
                  + ", ".join(w.label for w in attached), flush=True)
        specs, max_resubmits = specs[:max(0, len(specs) - len(attached))], \
            settings.slurm.max_resubmits
        if settings.slurm.detach:
            if (workers := submit_workers(backend, specs)) is None:
                return ["worker_error"], None
            print(f"submitted {len(workers)} SLURM workers ("
                  f"{', '.join(w.label for w in workers) or 'none'}); run the same command "
                  "without hydra.sweeper.slurm.detach to follow them and write the report",
                  flush=True)
            return None
    else:
        from sweeps.workers.dask_tasks import DaskBackend

        backend, attached, max_resubmits = DaskBackend(settings.dask), [], \
            settings.dask.max_resubmits
    try:
        return run_cluster_workers(backend, specs, template, study, settings.n_trials,
                                   settings.metric, max_resubmits, attached=tuple(attached))
    finally:
        backend.close()


def _finish(settings: McmcOptunaSweeperConf, p: SweepPlan, study: optuna.Study,
            parent_run_id: str | None, reasons: list[str], interrupted: int | None) -> int:
    """Write the report, print the outcome, close the parent run; return the exit status.
    A launch stopped by SIGTERM or SIGHUP (a scheduler's or system's stop, with a kill seconds
    later) skips the report: the next launch writes it."""
    n_trials = settings.n_trials
    counts = count_trials(study.get_trials(deepcopy=False))
    disk_full = "disk_full" in reasons
    if interrupted in (None, signal.SIGINT) and not disk_full:
        print("writing the report", flush=True)
        try:
            with study_lock(p):  # other machines log there too
                summary = write_report(study, p.output_dir / "report", metric=settings.metric,
                                       tracking_uri=p.tracking_uri, parent_run_id=parent_run_id)
        except Exception as err:
            if not is_disk_full(err):
                raise
            disk_full = True
        else:
            print(format_best(summary, settings.metric), flush=True)
            if reproduce := format_reproduce(summary):
                print(reproduce, flush=True)
            print(f"report: {p.output_dir / 'report'}", flush=True)
            print(closing_lines(p.tracking_uri, parent_run_id, p.storage_url), flush=True)
    if disk_full:
        status, code = "FAILED", 1
        print(f"error: no space left on the disk of {p.output_dir}: {counts.finished}/"
              f"{n_trials} finished, the trials in progress queued to resume, no report "
              "written; free some space and run the same command to continue", flush=True)
    elif interrupted is not None:
        status, code = "KILLED", exit_status(interrupted)
        name = "" if interrupted == signal.SIGINT else f" ({signal.Signals(interrupted).name})"
        print(f"interrupted{name}: {counts.finished}/{n_trials} finished; run the same command "
              "to continue", flush=True)
    elif "worker_error" in reasons:
        status, code = "FAILED", 1
        print(f"stopped: {counts.finished}/{n_trials} finished; run the same command to "
              "continue", flush=True)
    elif "tracking_outage" in reasons:
        status, code = "FAILED", 1
        print(f"stopped: {counts.finished}/{n_trials} finished; the MLflow server stayed "
              "unreachable longer than tracking.retry_seconds; run the same command to continue "
              "once it is back", flush=True)
    elif "exhausted" in reasons:
        status, code = "FAILED", 1
        print(f"stopped: {counts.finished}/{n_trials} finished; the sampler keeps proposing "
              "parameter sets that earlier trials ran: the search space has too few points "
              "(lower hydra.sweeper.n_trials or widen hydra.sweeper.params)", flush=True)
    elif "max_failures" in reasons:
        status, code = "FAILED", 1
        print(f"stopped: {settings.max_failures} trials failed in this launch "
              f"(hydra.sweeper.max_failures); see the 'error' of each failed trial in trials.csv",
              flush=True)
    elif counts.finished >= n_trials:
        status, code = "FINISHED", 0
    else:
        status, code = "KILLED", 0
        print(f"timeout: {counts.finished}/{n_trials} finished; run the same command to "
              "continue", flush=True)
    if parent_run_id is not None and p.tracking_uri:
        with study_lock(p):
            trials = study.get_trials(deepcopy=False)
            close_orphan_runs(p.tracking_uri, p.name, trials)
            _mark_best(p.tracking_uri, parent_run_id, study)
            if not count_trials(trials).running:  # else another machine ends it later
                end_run(p.tracking_uri, parent_run_id, status)
    return code


def _mark_best(uri: str, parent_run_id: str, study: optuna.Study) -> None:
    """Mark the best trial's run (:mod:`sweeps.tracking.best_run`); a store that fails here
    only costs the mark (the next launch sets it)."""
    try:
        mark_best_run(uri, parent_run_id, best_run_id(study))
    except Exception as err:  # noqa: BLE001 -- the sweep's outcome stands
        print(f"warning: the best run was not marked in MLflow ({mask_error(err)})", flush=True)
