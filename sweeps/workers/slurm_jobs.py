"""Workers as SLURM jobs (``hydra.sweeper.backend=slurm``), submitted with submitit.

The workers of a launch are one job array (``<output_dir>/slurm/<job id>/`` holds each job's
submission and logs). A job's state is read with ``squeue`` (submitit reads it with ``sacct``,
which needs SLURM's accounting database); a job that has left the queue has ended. The jobs
still queued or running are listed in ``<output_dir>/slurm/jobs.json``, so that the same command
run again (after ``hydra.sweeper.slurm.detach=true``, or a launcher that was stopped) attaches
to them instead of submitting more.

submitit pickles each job's call into that folder, so the call carries no password: the
storage and tracking URLs in it are masked, and their real values reach the jobs through the
environment, which ``sbatch`` passes on (:func:`seal`, :func:`run_sealed_worker`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mcmc_core.secrets import mask_text, mask_url

from sweeps.sweeper.settings import SlurmSettings
from sweeps.workers.cluster import Worker, ended_reason
from sweeps.workers.worker import WorkerSpec, run_worker

__all__ = ["SlurmBackend", "job_states", "run_sealed_worker", "seal", "unseal"]

#: squeue states of a job that has not ended (a requeued job goes back to PENDING).
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                 "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
                 "RESV_DEL_HOLD"}


#: The environment variables that carry a sealed spec's real URLs to its job.
SECRET_ENV = {"storage_url": "MCMC_SWEEPS_STORAGE_URL", "tracking_uri": "MCMC_SWEEPS_TRACKING_URI"}


def seal(spec: WorkerSpec) -> tuple[WorkerSpec, dict[str, str]]:
    """``spec`` with its storage and tracking URLs masked (also where the sweep's settings, the
    training config and the command-line overrides repeat them), and the environment that holds
    their real values. The overrides stay masked: a trial writes them masked anyway."""
    env = {SECRET_ENV[f]: getattr(spec, f) for f in SECRET_ENV
           if getattr(spec, f) and mask_url(getattr(spec, f)) != getattr(spec, f)}
    sealed = _replace_urls(spec, mask_url)
    if sealed.jobs is not None:
        sealed = dataclasses.replace(sealed, jobs=dataclasses.replace(
            sealed.jobs, overrides=tuple(mask_text(o) for o in sealed.jobs.overrides)))
    return sealed, env


def unseal(spec: WorkerSpec) -> WorkerSpec:
    """A sealed ``spec`` with its real URLs again, from the environment :func:`seal` gave."""
    real = {mask_url(os.environ[var]): os.environ[var] for var in SECRET_ENV.values()
            if var in os.environ}
    return _replace_urls(spec, lambda url: real.get(url, url))


def _replace_urls(spec: WorkerSpec, swap) -> WorkerSpec:
    tracking = dict(spec.base_config.get("tracking") or {})
    if tracking.get("uri"):
        tracking["uri"] = swap(tracking["uri"])
    settings = spec.settings
    if settings.storage:
        settings = dataclasses.replace(settings, storage=swap(settings.storage))
    return dataclasses.replace(
        spec, storage_url=swap(spec.storage_url),
        tracking_uri=swap(spec.tracking_uri) if spec.tracking_uri else spec.tracking_uri,
        settings=settings, base_config={**spec.base_config, "tracking": tracking}
        if "tracking" in spec.base_config else spec.base_config)


def run_sealed_worker(spec: WorkerSpec) -> str:
    """A SLURM job's call: :func:`~sweeps.workers.worker.run_worker` on the unsealed ``spec``."""
    return run_worker(unseal(spec))


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in this process (which sbatch passes to the jobs) while the block runs."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def job_states() -> dict[str, str]:
    """``{job id: state}`` of every job SLURM still shows (array tasks as ``<job>_<task>``).

    Raises:
        RuntimeError: squeue failed (its message).
    """
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
    return dict(line.split("|", 1) for line in out.stdout.split())


class SlurmBackend:
    """Submits, watches and cancels worker jobs (:class:`~sweeps.workers.cluster.ClusterBackend`)."""

    name = "SLURM"

    def __init__(self, settings: SlurmSettings, output_dir: Path, job_name: str) -> None:
        import submitit

        self.settings, self.folder = settings, output_dir / "slurm"
        self._unanswered = False  # squeue failed at the last poll
        self.executor = submitit.SlurmExecutor(folder=self.folder / "%j", python=sys.executable)
        s = settings
        self.executor.update_parameters(
            job_name=job_name, partition=s.partition, time=s.time_minutes,
            cpus_per_task=s.cpus_per_worker, mem=f"{int(s.mem_gb * 1024)}MB" if s.mem_gb else None,
            gres=f"gpu:{s.gpus_per_worker}" if s.gpus_per_worker else None,
            setup=list(s.setup), additional_parameters=dict(s.additional_parameters),
            stderr_to_stdout=True)

    @property
    def jobs_file(self) -> Path:
        return self.folder / "jobs.json"

    def submit(self, specs: list[WorkerSpec]) -> list[Worker]:
        if not specs:
            return []
        sealed = [seal(spec) for spec in specs]
        env = {k: v for _, e in sealed for k, v in e.items()}
        with _environment(env), self.executor.batch():  # one job array
            jobs = [self.executor.submit(run_sealed_worker, spec) for spec, _ in sealed]
        workers = [Worker(spec, job.job_id, f"SLURM job {job.job_id}")
                   for spec, job in zip(specs, jobs)]
        self._record(workers)
        return workers

    def attach(self, template: WorkerSpec) -> list[Worker]:
        """The workers of earlier launches whose jobs are still queued or running."""
        try:
            recorded = json.loads(self.jobs_file.read_text())
        except (OSError, ValueError):
            return []
        try:
            states = job_states()
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            return []  # nothing to attach to that we can see
        return [Worker(dataclasses.replace(template, session=r["session"], index=r["index"]),
                       r["job"], f"SLURM job {r['job']}")
                for r in recorded if states.get(r["job"]) in ACTIVE_STATES]

    def ended(self, workers: list[Worker]) -> list[Worker]:
        """The workers whose jobs have left the queue; none while squeue fails (the controller
        restarting), said in one line when that starts and when it ends."""
        try:
            states = job_states()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
            if not self._unanswered:
                print(f"SLURM does not answer ({str(err).splitlines()[0]}): waiting for it; "
                      "the workers go on", flush=True)
            self._unanswered = True
            return []
        if self._unanswered:
            print("SLURM answers again", flush=True)
            self._unanswered = False
        return [w for w in workers if states.get(w.handle) not in ACTIVE_STATES]

    def outcome(self, worker: Worker) -> str | None:
        return ended_reason(worker.spec)

    def cancel(self, workers: list[Worker]) -> None:
        if workers:
            subprocess.run(["scancel", *(w.handle for w in workers)], capture_output=True,
                           timeout=60)

    def close(self) -> None:
        """Nothing to let go of: the jobs and their list outlive the launch."""

    def _record(self, new: list[Worker]) -> None:
        """Add ``new`` to the jobs file, dropping the jobs that have ended."""
        try:
            recorded = json.loads(self.jobs_file.read_text())
        except (OSError, ValueError):
            recorded = []
        states = job_states()
        recorded = [r for r in recorded if states.get(r["job"]) in ACTIVE_STATES]
        recorded += [{"job": w.handle, "session": w.spec.session, "index": w.spec.index}
                     for w in new]
        tmp = self.jobs_file.with_name(f".jobs.{os.getpid()}")
        tmp.write_text(json.dumps(recorded, indent=1))
        os.replace(tmp, self.jobs_file)
