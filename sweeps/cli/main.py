"""The console entry points ``mcmc-sweep`` and ``mcmc-train``, light to import: Ctrl-C at any
moment -- even while the libraries load -- ends with one line and exit status 130, never a
traceback. SIGTERM and SIGHUP (what ``timeout``, SLURM's ``scancel`` and preemption, Kubernetes
and systemd send, or a closed terminal) stop a run the same way, with exit status 143 and 129.

A sweep (``mcmc-train -m hparams_search=default``, or its shorthand ``mcmc-sweep``) exits at
once on a stop signal outside the phase where its workers run (every store is written atomically
or in transactions, so nothing is left half-made; the next launch ends what this one left open);
while they run, :func:`sweeps.workers.supervisor.run_workers` stops them after their current epoch
instead. A training run turns the signal into a ``KeyboardInterrupt`` once loaded, so its MLflow
run is closed; its last epoch checkpoint stays. A store write under way ends first
(:mod:`sweeps.tracking.shield`).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any

from sweeps.tracking.shield import hold_stop, stop_held

__all__ = ["STOP_SIGNALS", "exit_at_once_on_signals", "exit_status", "sweep", "train"]

#: The signals that stop a run as Ctrl-C does.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The last stop signal received (its exit status is 128 + its number, as a shell reports).
_received = signal.SIGINT


def exit_status(signum: int) -> int:
    """The exit status of a run stopped by ``signum``: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP)."""
    return 128 + int(signum)


def _message(signum: int) -> str:
    name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    return f"\ninterrupted{name}: run the same command to continue\n"


def _exit_at_once(signum: int, frame: Any) -> None:
    os.write(2, _message(signum).encode())
    os._exit(exit_status(signum))


def _interrupt() -> None:
    raise KeyboardInterrupt


def _raise_interrupt(signum: int, frame: Any) -> None:
    global _received
    if stop_held():  # a second signal while a store write runs (it may hang): leave now
        _exit_at_once(signum, frame)
    _received = signum
    if not hold_stop(_interrupt):  # else raised once the write ends
        _interrupt()


def exit_at_once_on_signals() -> None:
    """From now on a stop signal ends the process at once (status 128 + its number):
    ``mcmc-sweep``'s way outside its workers' phase, which ``mcmc-train -m``'s sweeper takes on."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_at_once)


def _run(module: str, *, exit_at_once: bool) -> Any:
    exit_at_once_on_signals()
    try:
        entry = importlib.import_module(module).main
        if not exit_at_once:
            for signum in STOP_SIGNALS:
                signal.signal(signum, _raise_interrupt)
        return entry()
    except KeyboardInterrupt:
        sys.stderr.write(_message(_received))
        raise SystemExit(exit_status(_received)) from None


def sweep() -> Any:
    """``mcmc-sweep``, the shorthand of ``mcmc-train -m hparams_search=default``: see
    :mod:`sweeps.cli.sweep_app`."""
    return _run("sweeps.cli.sweep_app", exit_at_once=True)


def train() -> Any:
    """``mcmc-train``: see :mod:`sweeps.cli.train_app`."""
    return _run("sweeps.cli.train_app", exit_at_once=False)
