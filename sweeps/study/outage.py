"""A storage database that goes away for a while (a PostgreSQL restart or failover, a network
blip) is waited out, not turned into a crashed launcher or failed trials.

:class:`OutageTolerantStorage` is Optuna's ``RDBStorage`` whose every call, when the database
cannot be reached, is retried with backoff for up to ``retry_seconds``
(:func:`sweeps.tracking.outage.set_retry_seconds`, ``tracking.retry_seconds``), printing one line
when the outage starts and one when it ends; :func:`waits_out_outages` does the same for our own
transactions (:mod:`sweeps.study.batch_writes`). Only connection errors are retried: a wrong
schema or a full disk fails as before. SQLAlchemy's ``pool_pre_ping`` replaces the pool's
connections that a restart broke.

A write whose commit reached the database just before the connection broke is sent again: a
second ask creates a trial that no process claims, which
:func:`sweeps.study.trials.fail_unowned_trials` recovers; other writes set the same values
again.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import RDBStorage

from sweeps.tracking import outage as tracking_outage

__all__ = ["OutageTolerantStorage", "is_connection_error", "waits_out_outages"]

T = TypeVar("T")
#: Phrases of the drivers' errors that mean the server cannot be reached or is restarting.
_CONNECTION_ERRORS = ("connection refused", "could not connect", "server closed the connection",
                      "terminating connection", "connection is closed", "connection reset",
                      "connection timed out", "the database system is starting up",
                      "the database system is shutting down", "ssl syscall", "broken pipe",
                      "no connection to the server", "connection to server", "admin shutdown",
                      "consuming input failed", "lost connection")
_state = threading.local()
_outage: dict[str, Any] = {"since": None, "label": "the storage database"}
_lock = threading.Lock()


def is_connection_error(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it) says the database could not be reached."""
    import sqlalchemy.exc

    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
            return True
        if isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                            sqlalchemy.exc.DisconnectionError, ConnectionError)) or \
                type(err).__name__ in ("OperationalError", "InterfaceError"):
            if any(p in str(err).lower() for p in _CONNECTION_ERRORS):
                return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _retry(call: Callable[[], T], label: str) -> T:
    """``call()``, retried with backoff while the database cannot be reached (only the
    outermost of nested calls retries)."""
    if getattr(_state, "depth", 0):
        return call()
    _state.depth = 1
    try:
        backoff = 0.5
        while True:
            try:
                result = call()
            except Exception as err:
                if not is_connection_error(err):
                    raise
                since = _started(label, err)
                if time.monotonic() - since > tracking_outage.retry_seconds():
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, tracking_outage.MAX_BACKOFF)
                continue
            _ended()
            return result
    finally:
        _state.depth = 0


def _started(label: str, err: BaseException) -> float:
    with _lock:
        if _outage["since"] is None:
            _outage["since"] = time.monotonic()
            print(f"storage: database at {label} unreachable ({type(err).__name__}); waiting "
                  f"up to {tracking_outage.retry_seconds():.0f} s for it", flush=True)
        return _outage["since"]


def _ended() -> None:
    if _outage["since"] is None:
        return
    with _lock:
        if _outage["since"] is not None:
            print(f"storage: database at {_outage['label']} back after "
                  f"{time.monotonic() - _outage['since']:.0f} s", flush=True)
            _outage["since"] = None


def _label(url: str) -> str:
    from mcmc_core.secrets import mask_url

    return mask_url(url)


def waits_out_outages(function: Callable[..., T]) -> Callable[..., T]:
    """Decorate a function of a storage's transactions (its first argument a storage, a trial,
    or a list of them) to wait out an outage of the database as the storage's calls do."""
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> T:
        return _retry(lambda: function(*args, **kwargs), _outage["label"])
    return call


class OutageTolerantStorage(RDBStorage):
    """Optuna's ``RDBStorage`` whose calls wait out an unreachable database (see the module's
    docstring). Created as ``RDBStorage`` is; ``pool_pre_ping`` on by default."""

    def __init__(self, url: str, engine_kwargs: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        engine_kwargs = dict(engine_kwargs or {})
        if not url.startswith("sqlite"):
            engine_kwargs.setdefault("pool_pre_ping", True)
        _outage["label"] = _label(url)  # this process's storage
        _retry(lambda: RDBStorage.__init__(self, url, engine_kwargs=engine_kwargs, **kwargs),
               _outage["label"])


def _tolerant(name: str) -> None:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def call(self: OutageTolerantStorage, *args: Any, **kwargs: Any) -> Any:
        return _retry(lambda: method(self, *args, **kwargs), _outage["label"])

    setattr(OutageTolerantStorage, name, call)


#: The storage's calls that touch the database: each waits out an outage.
_CALLS = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
          "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
          "get_study_user_attrs", "get_study_system_attrs", "get_all_studies",
          "create_new_trial", "set_trial_param", "get_trial_id_from_study_id_trial_number",
          "get_trial_number_from_id", "get_trial_param", "set_trial_state_values",
          "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
          "get_trial", "get_all_trials", "get_n_trials", "get_best_trial", "get_trial_params",
          "get_trial_user_attrs", "get_trial_system_attrs", "record_heartbeat",
          "check_trial_is_updatable",
          # what Optuna's cache in front of the storage calls directly
          "_get_stale_trial_ids", "_get_trials", "_create_new_trial", "_get_best_trial_id",
          "_set_trial_param")
for _name in _CALLS:
    _tolerant(_name)
