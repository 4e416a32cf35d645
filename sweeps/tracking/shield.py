"""Store writes that a stop signal does not cut in half.

``mcmc-train`` turns a stop signal into a ``KeyboardInterrupt`` wherever Python happens to be. Raised
inside a SQLite statement of MLflow's store, it leaves that statement open, holding the file's lock,
for as long as its traceback lives; the run's closing write then waits on it and fails with
"database is locked". Inside :func:`shielded` the signal is held until the write ends and is raised
then; a second signal meanwhile ends the process at once (a write that hangs). Only the main
thread's writes are shielded: Python runs signal handlers there.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["hold_stop", "shielded", "stop_held"]

_F = TypeVar("_F", bound=Callable[..., Any])
_depth = 0
_held: Callable[[], None] | None = None


def hold_stop(stop: Callable[[], None]) -> bool:
    """From a signal handler: keep ``stop`` (what the signal does) for the end of the running
    shielded write and return True; return False (do it now) outside one."""
    global _held
    if _depth == 0:
        return False
    _held = stop
    return True


def stop_held() -> bool:
    """Whether a stop signal waits for the running shielded write."""
    return _held is not None


@contextlib.contextmanager
def _shield() -> Iterator[None]:
    global _depth, _held
    if threading.current_thread() is not threading.main_thread():  # signals stop the main one
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _held is not None:
            stop, _held = _held, None
            stop()


def shielded(fn: _F) -> _F:
    """Decorate a store write: a stop signal during it takes effect when it returns."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _shield():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
