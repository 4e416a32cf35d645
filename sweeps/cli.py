"""The console entry points ``mcmc-sweep`` and ``mcmc-train``, light to import: Ctrl-C at any
moment -- even while the libraries load -- ends with one line and exit status 130, never a
traceback.

A sweep (``mcmc-train -m hparams_search=default``, or its shorthand ``mcmc-sweep``) exits at
once on a Ctrl-C outside the phase where its workers run (every store is written atomically or
in transactions, so nothing is left half-made; the next launch ends what this one left open);
while they run, :func:`sweeps.supervisor.run_workers` stops them after their current epoch
instead. A training run turns Ctrl-C into a ``KeyboardInterrupt`` once loaded, so its MLflow
run is closed; its last epoch checkpoint stays.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any

__all__ = ["exit_at_once_on_sigint", "sweep", "train"]

_MESSAGE = b"\ninterrupted: run the same command to continue\n"


def _exit_at_once(signum: int, frame: Any) -> None:
    os.write(2, _MESSAGE)
    os._exit(130)


def exit_at_once_on_sigint() -> None:
    """From now on Ctrl-C ends the process at once, status 130: the sweeper's way outside its
    workers' phase."""
    signal.signal(signal.SIGINT, _exit_at_once)


def _run(module: str, *, exit_at_once: bool) -> Any:
    signal.signal(signal.SIGINT, _exit_at_once)
    try:
        entry = importlib.import_module(module).main
        if not exit_at_once:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return entry()
    except KeyboardInterrupt:
        sys.stderr.write(_MESSAGE.decode())
        raise SystemExit(130) from None


def sweep() -> Any:
    """``mcmc-sweep``, the shorthand of ``mcmc-train -m hparams_search=default``: see
    :mod:`sweeps.sweep`."""
    return _run("sweeps.sweep", exit_at_once=True)


def train() -> Any:
    """``mcmc-train``: see :mod:`sweeps.train`."""
    return _run("sweeps.train", exit_at_once=False)
