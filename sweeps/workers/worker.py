"""A sweep worker: pulls trials from the shared study until it holds ``n_trials`` finished ones.

Workers never wait for each other: each asks for its next trial as soon as its last one ends
(with ``hydra.sweeper.population`` > 1, for its next trials, up to that many, run as one
population). A worker stops when the study is done, when the sweep's stop file appears (a stop
signal in the parent, or ``max_failures`` reached), after ``timeout``, or -- a worker process --
on its own SIGTERM or SIGHUP (a scheduler signals every process of the job) or when its parent
is gone (the launcher was killed): it ends its trials after their current epoch, queued to
resume, and exits.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeps.sweeper.config import ParamSpec
from sweeps.workers import timing as phases
from sweeps.study.batch_writes import claim_trials, record_heartbeats
from sweeps.workers.job_folders import JobFolders
from sweeps.workers.timing import phase
from sweeps.study.snapshot import count_live, snapshot_study
from sweeps.study.space import SearchSpace
from sweeps.study.trials import (
    ATTR_DUPLICATE,
    ATTR_ERROR,
    ATTR_SESSION,
    count_trials,
    duplicate_of,
    is_surplus,
    open_storage,
    open_study,
    recover_trials,
    worker_seed,
)
from sweeps.tracking.parent_run import close_killed_run
from sweeps.sweeper.settings import McmcOptunaSweeperConf
from sweeps.tracking.mlflow_run import client_uri
from sweeps.checks.disk import is_disk_full
from sweeps.tracking.outage import TrackingOutage, flush_all, set_retry_seconds
from sweeps.workers.trial_context import TrialContext, attempt_attrs, scheduler_placement
from sweeps.workers.trial_runner import run_trials

__all__ = ["SpaceExhausted", "WorkerSpec", "ask_trials", "device_memory", "place_device",
           "run_worker", "session_failures"]

POLL_SECONDS = 1.0


@dataclass
class WorkerSpec:
    """Everything a worker process needs (picklable: it crosses the process boundary)."""

    index: int  #: counts on past this launch's workers for a replaced one
    study_name: str
    storage_url: str
    settings: McmcOptunaSweeperConf
    base_config: dict[str, Any]
    search: dict[str, ParamSpec]
    group_options: dict[str, dict]
    output_dir: str
    session: str
    parent_run_id: str | None
    tracking_uri: str | None
    device: str
    threads: int
    deadline: float | None
    launch: int = 0  #: this launch's number in the study (seeds the sampler)
    jobs: JobFolders | None = None  #: ``mcmc-train -m``: Hydra's job folder of each trial

    @property
    def stop_file(self) -> Path:
        return stop_file(Path(self.output_dir), self.session)


def stop_file(output_dir: Path, session: str) -> Path:
    """The file whose existence asks this launch's workers to stop after their current epoch."""
    return output_dir / f".stop-{session}"


def session_failures(trials: list[optuna.trial.FrozenTrial], session: str) -> int:
    """Trials of launch ``session`` that failed by raising (not interrupted, not killed)."""
    return sum(t.state == TrialState.FAIL and ATTR_ERROR in t.user_attrs
               and t.user_attrs.get(ATTR_SESSION) == session for t in trials)


@contextmanager
def heartbeat(storage: optuna.storages.RDBStorage, trials: Sequence[optuna.Trial],
              interval: float) -> Iterator[None]:
    """Record the heartbeat of every trial in ``trials`` every ``interval`` seconds while the
    block runs (all of them in one transaction)."""
    done = threading.Event()

    def beat() -> None:
        while not done.is_set():
            try:
                with phase("heartbeat"):
                    record_heartbeats(storage, [t._trial_id for t in trials])
            except Exception:  # a transient storage error must not kill the trial
                pass
            done.wait(interval)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trials[0].number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


#: Asks in a row that may repeat live trials' parameters before a worker gives up.
MAX_DUPLICATES = 20


class SpaceExhausted(Exception):
    """The sampler keeps proposing parameter sets the study has already run or is running."""


def ask_trials(study: optuna.Study, n_trials: int, k: int, space: SearchSpace | None = None,
               owner: dict[str, Any] | None = None) -> list[optuna.Trial]:
    """Ask for up to ``k`` trials (queued retries first), stopping at the first that would take
    the study past ``n_trials`` finished trials: that one is given back (WAITING), and so are
    those that another worker's asks at the same moment make surplus.

    With ``space``, each trial's values are sampled at once, and a trial whose values repeat a
    live trial's is failed unrun (user attribute ``duplicate_of``) and asked again. The ``k``
    asks read the study's trials once (:func:`~sweeps.study.snapshot.snapshot_study`); before each
    ask the database counts the live trials, to stop when other workers' asks filled the
    study meanwhile, and at the end one more read gives back the surplus exactly.

    With ``owner`` (the attempt's host, process and launch), each trial is claimed at once, in
    the transaction that records its first heartbeat
    (:func:`~sweeps.study.batch_writes.claim_trials`; the trials asked before it beat again
    there, so a long ask cannot make them stale). A
    process killed between Optuna's ask and the claim leaves a trial that
    :func:`~sweeps.study.trials.fail_unowned_trials` recovers.

    Raises:
        SpaceExhausted: after :data:`MAX_DUPLICATES` duplicates in a row.
    """
    trials: list[optuna.Trial] = []
    duplicates = 0
    with snapshot_study(study) as snap:
        while len(trials) < k:
            if trials and count_live(study) >= n_trials:
                break  # other workers' asks at the same moment filled the study
            trial = snap.study.ask()
            if owner is not None:
                claim_trials(study._storage, [t._trial_id for t in (*trials, trial)], owner)
            if space is not None:
                space.suggest(trial)
            frozen = snap.storage.get_trial(trial._trial_id)
            others = snap.trials()
            if is_surplus(others, frozen, n_trials):
                _give_back(study, trial)
                break
            same = duplicate_of(others, frozen) if space is not None else None
            if same is not None:
                trial.set_user_attr(ATTR_DUPLICATE, same)
                snap.study.tell(trial, state=TrialState.FAIL)  # the snapshot sees it failed
                duplicates += 1
                if duplicates >= MAX_DUPLICATES:
                    raise SpaceExhausted(
                        f"{duplicates} proposals in a row repeated earlier trials")
                continue
            duplicates = 0
            trials.append(trial)
    # Another worker may have asked at the same moment: every worker ranks the stored trials
    # the same way (is_surplus), so exactly the later ones give way.
    stored = study.get_trials(deepcopy=False)
    by_id = {t._trial_id: t for t in stored}
    for i, trial in enumerate(trials):
        if is_surplus(stored, by_id[trial._trial_id], n_trials):
            for surplus in trials[i:]:
                _give_back(study, surplus)
            return trials[:i]
    return trials


def _give_back(study: optuna.Study, trial: optuna.Trial) -> None:
    """Another worker took the last slot at the same moment: queue ``trial`` back (WAITING)."""
    study._storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING)


#: Set in a worker process by SIGTERM/SIGHUP or its parent's death: stop after this epoch.
_stopping = threading.Event()


#: Signals that stop a worker process after its epoch: a scheduler's stop (SIGTERM, SIGHUP) and
#: submitit's warning before a SLURM job's time limit or preemption (SIGUSR2).
WORKER_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)


def _on_stop_signal(signum: int, frame: Any) -> None:
    _stopping.set()
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once


#: Set in a worker process whose parent (the launcher) is gone: exit after stopping.
_orphaned = threading.Event()


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    """Set :data:`_stopping` once this process's parent is gone (it was re-parented)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        _orphaned.set()
        _stopping.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_worker(spec: WorkerSpec) -> str:
    """The worker loop; returns why it stopped (``done``, ``stopped``, ``timeout``,
    ``max_failures``, ``exhausted``: the sampler only repeats earlier trials). At its end it
    writes where its time went (:mod:`sweeps.workers.timing`) and its device's peak memory."""
    import torch

    if threading.current_thread() is threading.main_thread():  # a worker process
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
        for signum in WORKER_STOP_SIGNALS:
            signal.signal(signum, _on_stop_signal)
        _watch_parent(os.getppid())
    spec = dataclasses.replace(spec, device=place_device(spec.device))
    torch.set_num_threads(spec.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(client_uri(spec.tracking_uri))
    set_retry_seconds(spec.base_config.get("tracking", {}).get("retry_seconds", 300.0))
    phases.reset()
    started, populations, reason = time.time(), [], "error"
    try:
        reason = _loop(spec, populations)
        flush_all()  # writes queued during an MLflow outage
        return reason
    except TrackingOutage as err:
        print(f"worker {spec.index}: {err}; its trials are queued to resume", flush=True)
        reason = "tracking_outage"
        return reason
    except Exception as err:
        if not is_disk_full(err):
            raise
        reason = "disk_full"  # the launcher says so, once
        return reason
    finally:
        phases.write_worker_file(
            phases.worker_file(spec.output_dir, spec.session, spec.index),
            {"worker": spec.index, "pid": os.getpid(), "device": spec.device,
             "threads": spec.threads, "population": spec.settings.population, "stopped": reason,
             "seconds": time.time() - started, "populations": populations,
             "trials": sum(populations), "host": socket.gethostname(),
             **scheduler_placement(), **device_memory(spec.device)})
        if _orphaned.is_set():  # no one reads the result: leave instead of waiting for a task
            os._exit(0)


def place_device(device: str) -> str:
    """The device a worker runs on: ``auto`` (a cluster worker) is the first GPU its scheduler
    gave it (``CUDA_VISIBLE_DEVICES``) or the CPU when it has none; ``cuda`` is that GPU."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return "cuda:0" if device == "cuda" else device


def device_memory(device: str) -> dict[str, float | None]:
    """The peak memory this process allocated and reserved on a CUDA ``device``, in bytes
    (None on the CPU)."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return {"max_memory_allocated": None, "max_memory_reserved": None}
    return {"max_memory_allocated": torch.cuda.max_memory_allocated(device),
            "max_memory_reserved": torch.cuda.max_memory_reserved(device)}


def _stop_requested(spec: WorkerSpec) -> bool:
    return _stopping.is_set() or spec.stop_file.exists()


def _loop(spec: WorkerSpec, populations: list[int]) -> str:
    """:func:`run_worker`'s loop; appends the size of each population it runs."""
    storage = open_storage(spec.storage_url, spec.settings,
                           on_retry=lambda t: close_killed_run(spec.tracking_uri, t))
    study = open_study(storage, spec.study_name, spec.settings,
                       seed=worker_seed(spec.settings, spec.launch, spec.index))
    space = SearchSpace(spec.search, spec.group_options)
    ctx = TrialContext(study_name=spec.study_name, base_config=spec.base_config, space=space,
                       metric=spec.settings.metric, output_dir=Path(spec.output_dir),
                       session=spec.session, parent_run_id=spec.parent_run_id,
                       device=spec.device, stop=lambda: _stop_requested(spec), jobs=spec.jobs)
    n_trials = spec.settings.n_trials
    while True:
        if _stop_requested(spec):
            return "stopped"
        if spec.deadline is not None and time.time() >= spec.deadline:
            return "timeout"
        recover_trials(study, spec.settings.grace_period)
        trials = study.get_trials(deepcopy=False)
        counts = count_trials(trials)
        if counts.finished >= n_trials:
            return "done"
        if session_failures(trials, spec.session) >= spec.settings.max_failures:
            spec.stop_file.touch()
            return "max_failures"
        if counts.finished + counts.running >= n_trials:
            time.sleep(POLL_SECONDS)  # the last trials are running: wait in case one fails
            continue
        room = n_trials - counts.finished - counts.running
        try:
            with phase("ask"):
                asked = ask_trials(study, n_trials, min(spec.settings.population, room), space,
                                   owner=attempt_attrs(ctx))
        except SpaceExhausted:
            spec.stop_file.touch()
            return "exhausted"
        if not asked:
            time.sleep(POLL_SECONDS)
            continue
        populations.append(len(asked))
        with heartbeat(storage, asked, spec.settings.heartbeat_interval):
            run_trials(study, asked, ctx)
