"""The launcher's watch over workers that a cluster engine runs (SLURM jobs, Dask tasks): submit
them, show progress, submit a worker again when its job ended while the study is not done, and
stop them on Ctrl-C, SIGTERM or SIGHUP.

Every backend runs the same worker loop (:func:`sweeps.workers.worker.run_worker`) against the
shared storage, so what a backend adds is only how a worker is submitted, seen to end and
cancelled (:class:`ClusterBackend`). A worker ends the way it says in its worker file
(:func:`sweeps.workers.timing.worker_file`): ``done`` and the other reasons of
:func:`~sweeps.workers.worker.run_worker`; a worker with no file, or ``stopped`` although this
launch asked nothing (a preemption, ``scancel``, a time limit), left its trials queued to resume,
and is submitted again while the study needs it, up to ``max_resubmits`` times per launch.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import optuna

from mcmc_core.secrets import mask_text
from sweeps.cli.main import STOP_SIGNALS
from sweeps.study.trials import count_trials
from sweeps.workers.progress import SweepProgress
from sweeps.workers.timing import worker_file
from sweeps.workers.worker import WorkerSpec

__all__ = ["ClusterBackend", "Worker", "ended_reason", "run_cluster_workers",
           "submit_workers"]

POLL_SECONDS = 2.0


@dataclasses.dataclass(eq=False)
class Worker:
    """A submitted worker: its spec and the engine's handle (a job id, a future)."""

    spec: WorkerSpec
    handle: Any
    label: str  #: how lines name it (``SLURM job 12_0``)


class ClusterBackend(Protocol):
    """How a cluster engine runs workers."""

    name: str

    def submit(self, specs: list[WorkerSpec]) -> list[Worker]:
        """Submit one worker per spec."""

    def ended(self, workers: list[Worker]) -> list[Worker]:
        """The workers among ``workers`` whose job or task has ended."""

    def outcome(self, worker: Worker) -> str | None:
        """Why an ended worker stopped (its worker file; None when it died without one)."""

    def cancel(self, workers: list[Worker]) -> None:
        """End the workers at once (after a second stop signal)."""

    def close(self) -> None:
        """Let go of the engine (its client connection) once the launch is over."""


def ended_reason(spec: WorkerSpec) -> str | None:
    """The reason in ``spec``'s worker file (``done``, ``stopped``, ...), None without one."""
    path = worker_file(spec.output_dir, spec.session, spec.index)
    try:
        return json.loads(path.read_text()).get("stopped")
    except (OSError, ValueError):
        return None


def submit_workers(backend: ClusterBackend, specs: list[WorkerSpec]) -> list[Worker] | None:
    """``backend.submit(specs)``; None, after one line saying why, when the engine refused
    (sbatch's error, a lost scheduler)."""
    try:
        return backend.submit(specs) if specs else []
    except Exception as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        print(mask_text(f"error: {backend.name} refused the workers: {first}"), flush=True)
        return None


def run_cluster_workers(backend: ClusterBackend, specs: list[WorkerSpec], template: WorkerSpec,
                        study: optuna.Study, n_trials: int, metric: str, max_resubmits: int,
                        attached: tuple[Worker, ...] = ()) -> tuple[list[str], int | None]:
    """Submit a worker per spec (``attached``: workers of an earlier launch, still running,
    watched as ours; ``template``: this launch's spec, that of a worker submitted again) and
    watch them to their end while the main thread shows progress. The
    first stop signal asks every worker to stop after its epoch (the stop files), a second one
    cancels them. Returns why the workers stopped and the signal that interrupted them (None if
    none did), as :func:`sweeps.workers.supervisor.run_workers` does."""
    interrupted: int | None = None
    stops = {template.stop_file, *(w.spec.stop_file for w in attached)}

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal interrupted
        if interrupted is not None:
            raise KeyboardInterrupt
        interrupted = signum
        for path in stops:
            path.touch()
        name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
        print(f"\nstopping{name}: trials end after their current epoch and are queued to "
              f"resume (Ctrl-C again to cancel the {backend.name} workers)", flush=True)

    reasons: list[str] = []
    submitted = submit_workers(backend, specs)
    if submitted is None:
        reasons.append("worker_error")
    running = [*attached, *(submitted or [])]
    if not running:
        return reasons, None
    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    labels = ", ".join(w.label for w in running)
    print(f"{len(running)} {backend.name} workers: {labels}", flush=True)
    progress = SweepProgress(study, n_trials, metric, enabled=sys.stdout.isatty(),
                             status_every=template.settings.status_interval)
    resubmits, next_index = 0, max((s.index for s in specs), default=template.index) + 1
    try:
        while running:
            progress.update()
            for worker in backend.ended(running):
                running.remove(worker)
                reason = backend.outcome(worker)
                needed = (count_trials(study.get_trials(deepcopy=False)).finished < n_trials
                          and not any(p.exists() for p in stops))
                if reason not in (None, "stopped") or not needed:
                    reasons.append(reason or "stopped")
                    continue
                cause = "died" if reason is None else "was stopped by its scheduler"
                if resubmits >= max_resubmits:
                    print(f"error: {worker.label} {cause}; {resubmits} workers submitted again "
                          f"in this launch (max_resubmits={max_resubmits}): stopping",
                          flush=True)
                    reasons.append("worker_error")
                    template.stop_file.touch()  # the others end after their epoch
                    continue
                resubmits += 1
                spec = dataclasses.replace(template, index=next_index)
                next_index += 1
                print(f"{worker.label} {cause}: its trials are queued to resume from their "
                      "checkpoints; submitting a new worker", flush=True)
                again = submit_workers(backend, [spec])
                if again is None:
                    reasons.append("worker_error")
                    continue
                running += again
                print(f"submitted {again[0].label}", flush=True)
            if running:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        interrupted = signal.SIGINT if interrupted is None else interrupted
        backend.cancel(running)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        progress.close()
    return reasons, interrupted
