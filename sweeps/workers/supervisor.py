"""The parent's watch over a sweep's worker processes: start them, replace one that dies, stop
them on Ctrl-C, SIGTERM or SIGHUP.

Each worker runs in its own single-process loky executor (joblib's process backend), so a worker
killed by the system (out of memory, ``kill -9``) breaks only its own executor: its trial is
failed and queued to resume from its checkpoint (:func:`sweeps.study.trials.fail_dead_trials`, run by
every worker's loop), a new worker takes its place, and the other workers never notice. Up to
``max_deaths`` deaths per launch are replaced; after that the sweep stops.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import optuna
# Imported here, once: two supervisor threads importing joblib at once break its import.
from joblib.externals.loky import ProcessPoolExecutor
from joblib.externals.loky.process_executor import BrokenProcessPool

from mcmc_core.secrets import mask_text
from sweeps.cli.main import STOP_SIGNALS
from sweeps.checks.disk import is_disk_full
from sweeps.workers.progress import SweepProgress
from sweeps.workers.worker import WorkerSpec, run_worker

__all__ = ["run_workers"]


class _Pool:
    """The workers' executors, one per slot, and how their runs ended."""

    def __init__(self, specs: list[WorkerSpec], stop: Path, max_deaths: int) -> None:
        self.specs, self.stop, self.max_deaths = specs, stop, max_deaths
        self.results: list[str] = []
        self.errors: list[BaseException] = []
        self.deaths = 0
        self.stopping = False
        self._executors: dict[int, Any] = {}
        self._lock = threading.Lock()

    def supervise(self, spec: WorkerSpec) -> None:
        """Run the worker of ``spec``'s slot to its end, replacing it each time it dies."""
        slot = spec.index
        while True:
            executor = ProcessPoolExecutor(max_workers=1)
            with self._lock:
                self._executors[slot] = executor
            try:
                self.results.append(executor.submit(run_worker, spec).result())
                return
            except BrokenProcessPool as err:
                if self.stopping or self.stop.exists():
                    return
                with self._lock:
                    self.deaths += 1
                    deaths = self.deaths
                cause = str(err).splitlines()[0] if str(err) else type(err).__name__
                if deaths > self.max_deaths:
                    print(f"error: worker {slot} died ({cause}); {deaths} deaths in this launch "
                          f"(hydra.sweeper.max_failures={self.max_deaths}): stopping", flush=True)
                    self.results.append("worker_error")
                    self.stop.touch()
                    return
                print(f"worker {slot} died ({cause}): its trial is queued to resume from its "
                      "checkpoint; starting a new worker", flush=True)
                spec = dataclasses.replace(spec, index=spec.index + len(self.specs))
            except BaseException as err:  # reported by the main thread
                self.errors.append(err)
                return
            finally:
                executor.shutdown(wait=False)

    def kill(self) -> None:
        """Terminate every worker process (after a second stop signal)."""
        self.stopping = True
        with self._lock:
            executors = list(self._executors.values())
        for executor in executors:
            try:
                executor.shutdown(wait=False, kill_workers=True)
            except Exception:
                pass


def run_workers(specs: list[WorkerSpec], study: optuna.Study, n_trials: int, metric: str,
                stop: Path, max_deaths: int) -> tuple[list[str], int | None]:
    """Run the workers (one inline; several as supervised processes) while the main thread
    shows progress. The first stop signal (SIGINT, SIGTERM, SIGHUP) asks the workers to stop
    after their current epoch, re-queueing their trials; a second one kills them. Returns why
    the workers stopped (see :func:`sweeps.workers.worker.run_worker`, plus ``worker_error``) and the
    signal that interrupted them (None if none did)."""
    pool = _Pool(specs, stop, max_deaths)

    def run_inline() -> None:
        try:
            pool.results.append(run_worker(specs[0]))
        except BaseException as err:
            pool.errors.append(err)

    threads = ([threading.Thread(target=run_inline, name="sweep-worker", daemon=True)]
               if len(specs) == 1 else
               [threading.Thread(target=pool.supervise, args=(s,), name=f"sweep-worker-{s.index}",
                                 daemon=True) for s in specs])
    interrupted: int | None = None

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal interrupted
        if interrupted is not None:  # a second signal: stop waiting
            raise KeyboardInterrupt
        interrupted, pool.stopping = signum, True
        stop.touch()
        name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
        print(f"\nstopping{name}: trials end after their current epoch and are queued to "
              "resume (Ctrl-C again to kill them)", flush=True)

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    progress = SweepProgress(study, n_trials, metric, enabled=sys.stdout.isatty(),
                             status_every=specs[0].settings.status_interval)
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=1.0 / len(threads))
            progress.update()
    except KeyboardInterrupt:
        interrupted = signal.SIGINT if interrupted is None else interrupted
        pool.kill()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        progress.close()
    reasons = list(pool.results)
    if any(is_disk_full(err) for err in pool.errors):  # the launcher says so, once
        reasons.append("disk_full")
    elif pool.errors and interrupted is None:
        err = pool.errors[0]
        print(mask_text(f"error: a worker stopped: {type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}"), flush=True)
        reasons.append("worker_error")
    return reasons, interrupted
