"""Many trials' writes to an Optuna RDB storage in one transaction.

Optuna writes one trial's heartbeat, intermediate value or user attribute per transaction. A
worker running hundreds of trials as one population would make hundreds of transactions per
epoch (and per heartbeat interval), each taking the SQLite write lock in turn. These helpers do
the same writes, with Optuna's own models and checks, in one transaction; on a storage that
is not an RDB storage they fall back to Optuna's one-by-one calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage

from sweeps.study.outage import waits_out_outages

__all__ = ["claim_trials", "heartbeat_ids", "record_heartbeats", "report_values", "set_user_attrs"]


def _rdb(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage behind ``storage`` (a study's storage is a cache around it), or None."""
    storage = getattr(storage, "_storage", storage)  # a sweeps.study.snapshot.SnapshotStorage
    storage = getattr(storage, "_backend", storage)  # optuna's _CachedStorage
    return storage if isinstance(storage, RDBStorage) else None


@contextmanager
def _transaction(rdb: RDBStorage, trial_ids: Sequence[int] = ()) -> Iterator[Any]:
    """An Optuna session whose writes commit together; with ``trial_ids``, it first checks
    that none of those trials has finished, raising before anything is written. (Optuna's
    check, when it fails, reads the trial in a nested session of the same thread, which
    commits the writes made before it: after some writes it would not undo them.)"""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session, True) as session:
        if trial_ids:
            model = models.TrialModel
            for trial_id, state in session.query(model.trial_id, model.state).filter(
                    model.trial_id.in_(list(trial_ids))):
                rdb.check_trial_is_updatable(trial_id, state)
        yield session


def record_heartbeats(storage: BaseStorage, trial_ids: Sequence[int]) -> None:
    """Record the heartbeat of every trial in ``trial_ids`` (as
    :meth:`~optuna.storages.RDBStorage.record_heartbeat` does for one). Not retried through an
    outage: the worker's heartbeat thread beats again at its next interval."""
    rdb = _rdb(storage)
    if rdb is None:
        for trial_id in trial_ids:
            storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        return
    with _transaction(rdb) as session:
        _beat(session, trial_ids)


def _beat(session: Any, trial_ids: Sequence[int]) -> None:
    """Set the heartbeat rows of ``trial_ids`` to the database's time, in ``session``."""
    import sqlalchemy
    from optuna.storages._rdb import models

    model = models.TrialHeartbeatModel
    now = session.execute(sqlalchemy.func.now()).scalar_one()
    beats = {h.trial_id: h for h in session.query(model).filter(
        model.trial_id.in_(list(trial_ids))).with_for_update()}
    for trial_id in trial_ids:
        if trial_id in beats:
            beats[trial_id].heartbeat = now
        else:
            session.add(model(trial_id=trial_id, heartbeat=now))


@waits_out_outages
def claim_trials(storage: BaseStorage, trial_ids: Sequence[int], owner: dict[str, Any]) -> None:
    """Record the heartbeat of every trial in ``trial_ids`` and ``owner`` (host, process,
    launch) as their user attributes, in one transaction: the write that makes a just-asked
    trial owned. A trial left RUNNING without it is recovered by
    :func:`sweeps.study.trials.fail_unowned_trials`."""
    rdb = _rdb(storage)
    if rdb is None:
        record_heartbeats(storage, trial_ids)
        for trial_id in trial_ids:
            for key, value in owner.items():
                storage.set_trial_user_attr(trial_id, key, value)
        return
    from optuna.storages._rdb import models

    with _transaction(rdb) as session:
        _beat(session, trial_ids)
        for trial_id in trial_ids:
            for key, value in owner.items():
                rdb._set_trial_attr_without_commit(session, models.TrialUserAttributeModel,
                                                   trial_id, key, value)


@waits_out_outages
def heartbeat_ids(storage: BaseStorage, trial_ids: Sequence[int]) -> set[int]:
    """The trials of ``trial_ids`` that have a heartbeat recorded (on a storage without
    heartbeat rows: all of them)."""
    rdb = _rdb(storage)
    if rdb is None or not trial_ids:
        return set(trial_ids)
    from optuna.storages._rdb import models

    model = models.TrialHeartbeatModel
    with _transaction(rdb) as session:
        return {row[0] for row in session.query(model.trial_id).filter(
            model.trial_id.in_(list(trial_ids)))}


@waits_out_outages
def report_values(trials: Sequence[optuna.Trial], values: Sequence[float], step: int) -> None:
    """``trials[i].report(values[i], step)`` for every ``i``, in one transaction (a step
    already reported is left as it is, as ``report`` leaves it).

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: one of the trials has finished (another
            process took it over); nothing is written.
    """
    pairs = [(t, float(v)) for t, v in zip(trials, values)
             if step not in t._cached_frozen_trial.intermediate_values]
    trials, values = [t for t, _ in pairs], [v for _, v in pairs]
    if not trials:
        return
    rdb = _rdb(trials[0].storage)
    if rdb is None:
        for trial, value in zip(trials, values):
            trial.report(value, step)
        return
    with _transaction(rdb, [t._trial_id for t in trials]) as session:
        for trial, value in zip(trials, values):
            rdb._set_trial_intermediate_value_without_commit(session, trial._trial_id, step,
                                                             value)
    for trial, value in zip(trials, values):  # as Trial.report keeps its own copy
        trial._cached_frozen_trial.intermediate_values[step] = value


@waits_out_outages
def set_user_attrs(items: Sequence[tuple[optuna.Trial, dict[str, Any]]]) -> None:
    """``trial.set_user_attr(key, value)`` for every trial and item of its dict, in one
    transaction."""
    items = [(t, attrs) for t, attrs in items if attrs]
    if not items:
        return
    rdb = _rdb(items[0][0].storage)
    if rdb is None:
        for trial, attrs in items:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
        return
    from optuna.storages._rdb import models

    with _transaction(rdb, [t._trial_id for t, _ in items]) as session:
        for trial, attrs in items:
            for key, value in attrs.items():
                rdb._set_trial_attr_without_commit(session, models.TrialUserAttributeModel,
                                                   trial._trial_id, key, value)
    for trial, attrs in items:
        trial._cached_frozen_trial.user_attrs.update(attrs)
