"""The Optuna study of a sweep: storage with heartbeats, sampler, pruner, and trial accounting.

A sweep's target is ``n_trials`` *finished* trials (COMPLETE or PRUNED). Failed trials do not
count; a trial whose process died (stale heartbeat, or a dead worker on this host) is failed and
re-queued with the same parameters, to continue from its checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from sweeps.study.batch_writes import heartbeat_ids
from sweeps.study.hosts import host_name, pid_alive
from sweeps.study.outage import OutageTolerantStorage
from sweeps.study.stores import open_under_lock
from sweeps.sweeper.settings import SAMPLER_CLASSES, McmcOptunaSweeperConf

__all__ = [
    "Counts",
    "count_trials",
    "duplicate_of",
    "fail_dead_trials",
    "fail_unowned_trials",
    "is_surplus",
    "make_pruner",
    "make_sampler",
    "new_attempt",
    "open_storage",
    "open_study",
    "pruning_note",
    "recover_trials",
    "requeue",
    "retry_key",
    "worker_seed",
]

# Heartbeats, stale-trial retries and ask/tell are used deliberately together: not noise to show.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

#: Trial user attributes written by the workers.
ATTR_HOST, ATTR_PID, ATTR_SESSION, ATTR_ERROR = "host", "pid", "session", "error"
#: User attributes of one attempt (its process and how it ended): a retry starts without them.
ATTEMPT_ATTRS = (ATTR_HOST, ATTR_PID, ATTR_SESSION, ATTR_ERROR, "traceback", "interrupted")
#: A trial given up before it ran: its sampled parameters repeat this live trial's.
ATTR_DUPLICATE = "duplicate_of"


def make_sampler(cfg: McmcOptunaSweeperConf,
                 seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The configured Optuna sampler, seeded with ``seed`` (default: ``cfg.seed``; a worker
    passes its :func:`worker_seed`)."""
    if cfg.sampler not in SAMPLER_CLASSES:
        raise ValueError(f"hydra.sweeper.sampler={cfg.sampler!r} is not allowed")
    sampler_class = getattr(optuna.samplers, SAMPLER_CLASSES[cfg.sampler])
    options = {"constant_liar": True} if cfg.sampler == "tpe" else {}  # parallel workers
    sampler: optuna.samplers.BaseSampler = sampler_class(
        seed=cfg.seed if seed is None else seed, **options)
    return sampler


def worker_seed(cfg: McmcOptunaSweeperConf, launch: int, worker: int) -> int:
    """The sampler seed of worker ``worker`` (counting replaced workers on) of the study's
    launch number ``launch`` (:func:`sweeps.workers.launcher.next_launch`): ``cfg.seed`` hashed with
    both. Launches and workers never share a sampler sequence -- a relaunch, or a second
    launcher on the same host, does not propose another's points -- yet a launch is
    reproducible, on any machine."""
    text = f"{cfg.seed}:{launch}:{worker}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def duplicate_of(trials: list[FrozenTrial], mine: FrozenTrial) -> int | None:
    """The number of a live trial (complete, pruned, running or queued) of another retry chain
    with exactly ``mine``'s parameters, or None."""
    key = retry_key(mine)
    for t in trials:
        if t.number == mine.number or t.state == TrialState.FAIL or retry_key(t) == key:
            continue
        params = t.params if t.state != TrialState.WAITING else t.system_attrs.get(
            "fixed_params", {})
        if params and params == mine.params:
            return t.number
    return None


#: Complete trials the median pruner waits for before it prunes.
MEDIAN_STARTUP_TRIALS = 4


def make_pruner(cfg: McmcOptunaSweeperConf) -> optuna.pruners.BasePruner:
    """The configured Optuna pruner (``none`` never prunes)."""
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                           n_warmup_steps=5)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=3)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=3)
    if cfg.pruner == "wilcoxon":
        return optuna.pruners.WilcoxonPruner()
    if cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"hydra.sweeper.pruner={cfg.pruner!r} is not allowed")


def pruning_note(cfg: McmcOptunaSweeperConf, complete: int) -> str | None:
    """A one-line note when populations start before the median pruner can prune: it compares
    a trial with complete trials only, so the first populations, run side by side, all end
    unpruned (None otherwise)."""
    if cfg.population < 2 or cfg.pruner != "median" or complete >= MEDIAN_STARTUP_TRIALS:
        return None
    return (f"note: hydra.sweeper.pruner=median compares a trial with complete trials only "
            f"({MEDIAN_STARTUP_TRIALS} needed, {complete} so far), so the first populations of "
            f"{cfg.population} run to their end unpruned; hydra.sweeper.pruner=successive_halving "
            "compares the trials that reached the same epoch")


def open_storage(url: str, cfg: McmcOptunaSweeperConf,
                 on_retry: Callable[[FrozenTrial], None] | None = None) -> RDBStorage:
    """An RDB storage with heartbeats; a stale trial is failed and re-queued (same parameters)
    up to ``cfg.max_retries`` times, and ``on_retry`` is told about it. Its schema is created
    whole or not at all, one process at a time (:func:`sweeps.study.stores.open_under_lock`)."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=cfg.max_retries)

    def stale(study: optuna.Study, trial: FrozenTrial) -> None:
        retry(study, new_attempt(trial))
        if on_retry is not None:
            on_retry(trial)

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    storage = open_under_lock(url, lambda u: OutageTolerantStorage(
        u, engine_kwargs=engine, heartbeat_interval=cfg.heartbeat_interval,
        grace_period=cfg.grace_period, heartbeat_stale_trial_callback=stale))
    if url.startswith("sqlite"):
        lock_sqlite_transactions(storage.engine)
    return storage


def lock_sqlite_transactions(engine: Any) -> None:
    """Start every transaction on an SQLite ``engine`` with ``BEGIN IMMEDIATE`` (its write lock).

    Optuna pops a queued (WAITING) trial -- a retry -- with ``SELECT ... FOR UPDATE`` then an
    update; SQLite ignores ``FOR UPDATE`` and pysqlite only begins a transaction at the update,
    so two workers could both pop the same trial and run it twice. Under the write lock the read
    and the update are atomic: the second worker sees the trial RUNNING and pops the next one.
    """
    from sqlalchemy import event

    def no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite: let the "begin" hook emit BEGIN

    def begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", no_implicit_begin)
    event.listen(engine, "begin", begin_immediate)
    engine.dispose()  # pooled connections were opened before the hooks


def new_attempt(trial: FrozenTrial) -> FrozenTrial:
    """A copy of ``trial`` without the user attributes of its attempt (:data:`ATTEMPT_ATTRS`),
    to queue as its retry. A retry a worker has just popped must not look like its dead
    predecessor (same host and pid) to :func:`fail_dead_trials` before it records its own."""
    retry = copy.deepcopy(trial)
    retry.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ATTEMPT_ATTRS}
    return retry


def open_study(storage: RDBStorage, name: str, cfg: McmcOptunaSweeperConf, *, create: bool = False,
               seed: int | None = None) -> optuna.Study:
    """Create (``create=True``, the parent: it names the study's value ``cfg.metric``) or load
    (a worker) the study; its sampler is seeded with ``seed`` (default: ``cfg.seed``)."""
    sampler, pruner = make_sampler(cfg, seed), make_pruner(cfg)
    if create:
        study = optuna.create_study(storage=storage, study_name=name, direction=cfg.direction,
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
        if study.metric_names != [cfg.metric]:  # optuna-dashboard's name of the value
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([cfg.metric])
        return study
    return optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)


@dataclass
class Counts:
    """Trials of a study by state."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        """What counts towards ``n_trials``: complete and pruned trials."""
        return self.complete + self.pruned


def count_trials(trials: list[FrozenTrial]) -> Counts:
    """Count ``trials`` by state."""
    by_state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
                TrialState.FAIL: "failed", TrialState.RUNNING: "running",
                TrialState.WAITING: "waiting"}
    counts = Counts()
    for t in trials:
        name = by_state[t.state]
        setattr(counts, name, getattr(counts, name) + 1)
    return counts


def is_surplus(trials: list[FrozenTrial], mine: FrozenTrial, n_trials: int) -> bool:
    """Whether ``mine`` (just asked) would take the study past ``n_trials`` finished trials.

    Running trials are ranked by (start time, number); every worker ranks the same stored
    values the same way, so when two workers ask at once exactly the later one gives way.
    """
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    rank = (mine.datetime_start, mine.number)
    ahead = sum(t.state == TrialState.RUNNING and t.number != mine.number
                and (t.datetime_start, t.number) < rank for t in trials)
    return finished + ahead >= n_trials


def retry_key(trial: FrozenTrial) -> int:
    """The number of the first trial of a retry chain (its checkpoint folder is keyed by it)."""
    original = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if original is None else original


def recover_trials(study: optuna.Study, grace_period: float) -> list[int]:
    """Fail and re-queue every RUNNING trial that no live process runs: a stale heartbeat
    (Optuna's check), a dead worker on this host (:func:`fail_dead_trials`), or no owner at all
    (:func:`fail_unowned_trials`). A relaunch never waits on a trial nothing runs. Returns the
    numbers of the trials failed here (Optuna's check does not say which it failed)."""
    optuna.storages.fail_stale_trials(study)
    return fail_dead_trials(study) + fail_unowned_trials(study, grace_period)


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker process on this host is gone.

    Faster than waiting for the heartbeat grace period after a crash of this machine's sweep;
    trials of other hosts are left to the heartbeat check (:func:`optuna.storages.fail_stale_trials`).
    Returns the failed trial numbers.
    """
    host = host_name()
    dead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get(ATTR_HOST) == host and ATTR_PID in t.user_attrs
            and not pid_alive(int(t.user_attrs[ATTR_PID]))]
    return _fail_and_requeue(study, dead)


def fail_unowned_trials(study: optuna.Study, grace_period: float) -> list[int]:
    """Fail and re-queue RUNNING trials that never got a heartbeat and started more than
    ``grace_period`` seconds ago: their process died between Optuna's ask and the worker's claim
    (:func:`sweeps.study.batch_writes.claim_trials`, which records the first heartbeat and the owner
    at once). Optuna's stale check passes over a trial without a heartbeat, and no host or
    process was recorded to check. Returns the failed trial numbers."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    beating = heartbeat_ids(study._storage, [t._trial_id for t in running])
    now = datetime.now()  # Optuna writes datetime_start from this clock
    unowned = [t for t in running if t._trial_id not in beating and t.datetime_start is not None
               and (now - t.datetime_start).total_seconds() > grace_period]
    return _fail_and_requeue(study, unowned)


def _fail_and_requeue(study: optuna.Study, trials: list[FrozenTrial]) -> list[int]:
    """Fail each of ``trials`` still RUNNING and queue its retry; the numbers it failed."""
    failed = []
    for t in trials:
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        failed.append(t.number)
        requeue(study, t)
    return failed


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a retry of the failed ``trial`` with the same parameters, through the storage's
    stale-trial callback (see :func:`open_storage`)."""
    storage = study._storage
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is not None:
        callback(study, storage.get_trial(trial._trial_id))

