"""The console entry points ``mcmc-sweep`` and ``mcmc-train``, light to import: Ctrl-C at any
moment -- even while the libraries load -- ends with one line and exit status 130, never a
traceback (every store is written atomically, so an interrupted start leaves nothing half-made).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["sweep", "train"]


def _run(module: str) -> Any:
    try:
        return importlib.import_module(module).main()
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command to continue", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


def sweep() -> Any:
    """``mcmc-sweep``: see :mod:`sweeps.sweep`."""
    return _run("sweeps.sweep")


def train() -> Any:
    """``mcmc-train``: see :mod:`sweeps.train`."""
    return _run("sweeps.train")
