"""Workers as SLURM jobs (``hydra.sweeper.backend=slurm``), submitted with submitit.

The workers of a launch are one job array (``<output_dir>/slurm/<job id>/`` holds each job's
submission and logs). A job's state is read with ``squeue`` (submitit reads it with ``sacct``,
which needs SLURM's accounting database); a job that has left the queue has ended. The jobs
still queued or running are listed in ``<output_dir>/slurm/jobs.json``, so that the same command
run again (after ``hydra.sweeper.slurm.detach=true``, or a launcher that was stopped) attaches
to them instead of submitting more.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from sweeps.sweeper.settings import SlurmSettings
from sweeps.workers.cluster import Worker, ended_reason
from sweeps.workers.worker import WorkerSpec, run_worker

__all__ = ["SlurmBackend", "job_states"]

#: squeue states of a job that has not ended (a requeued job goes back to PENDING).
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                 "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
                 "RESV_DEL_HOLD"}


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
        with self.executor.batch():  # one job array
            jobs = [self.executor.submit(run_worker, spec) for spec in specs]
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
