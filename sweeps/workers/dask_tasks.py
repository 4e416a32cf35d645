"""Workers as tasks on a running Dask cluster (``hydra.sweeper.backend=dask``).

Each worker is one long-lived task (:func:`sweeps.workers.worker.run_worker`) holding the Dask
resource ``GPU`` when asked, so Dask places one worker per GPU-worker and the task runs on the
GPU of its Dask worker's ``CUDA_VISIBLE_DEVICES``. A Dask worker killed under a task is
restarted by its nanny and Dask runs the task again (up to its ``allowed-failures``); the trial
it held is queued to resume from its checkpoint (a dead process's trial, see
:func:`sweeps.study.trials.recover_trials`).
"""

from __future__ import annotations

from typing import Any

from mcmc_core.secrets import mask_text
from sweeps.sweeper.settings import DaskSettings
from sweeps.workers.cluster import Worker, ended_reason
from sweeps.workers.worker import WorkerSpec, run_worker

__all__ = ["DaskBackend", "connect"]


def connect(settings: DaskSettings, timeout: float = 10.0) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` or in ``scheduler_file``."""
    from distributed import Client

    if settings.scheduler_file:
        return Client(scheduler_file=settings.scheduler_file, timeout=timeout)
    return Client(settings.address, timeout=timeout)


class DaskBackend:
    """Submits, watches and cancels worker tasks (:class:`~sweeps.workers.cluster.ClusterBackend`)."""

    name = "Dask"

    def __init__(self, settings: DaskSettings) -> None:
        self.settings, self.client = settings, connect(settings)

    def submit(self, specs: list[WorkerSpec]) -> list[Worker]:
        gpus = self.settings.gpus_per_worker
        futures = [self.client.submit(run_worker, spec, pure=False,
                                      key=f"mcmc-worker-{spec.session}-{spec.index}",
                                      resources={"GPU": gpus} if gpus else None)
                   for spec in specs]
        return [Worker(spec, f, f"Dask task {f.key}") for spec, f in zip(specs, futures)]

    def ended(self, workers: list[Worker]) -> list[Worker]:
        return [w for w in workers if w.handle.done()]

    def outcome(self, worker: Worker) -> str | None:
        future = worker.handle
        if future.status == "finished":
            return future.result()
        if future.status == "error" and type(err := future.exception()).__name__ != "KilledWorker":
            first = str(err).splitlines()[0] if str(err) else ""
            print(mask_text(f"error: {worker.label} stopped: {type(err).__name__}: {first}"),
                  flush=True)
            return "worker_error"
        return ended_reason(worker.spec)  # lost with its Dask workers, or cancelled

    def cancel(self, workers: list[Worker]) -> None:
        """Forget the tasks (a running task's thread ends at its stop file, not at once)."""
        self.client.cancel([w.handle for w in workers], force=True)

    def close(self) -> None:
        self.client.close()
