"""Where a worker's time goes: seconds and calls per phase (Optuna asks, reports, pruning and
tells, MLflow writes, checkpoints, stepping, evaluation), written at the worker's end as
``<output_dir>/workers/<session>-<index>.json`` with the device's peak memory.

``benchmarks/sweep_throughput.py`` adds these files up, so that a sweep's throughput comes
with what limits it. Timing costs two ``perf_counter`` calls per phase entered.

Example:

    >>> with phase("mlflow_log"):                     # doctest: +SKIP
    ...     run.log_metrics(metrics, step=epoch)
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["PHASES", "add", "phase", "reset", "snapshot", "worker_file", "write_worker_file"]

#: The phases timed, in the order shown (a phase with no call is left out of the file).
PHASES = ("ask", "config", "mlflow_open", "step", "evaluate", "checkpoint", "mlflow_log",
          "optuna_report", "optuna_prune", "optuna_tell", "mlflow_close", "heartbeat")

_seconds: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the block's wall time to phase ``name`` of this process."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _seconds[name] += time.perf_counter() - start
        _calls[name] += 1


def add(name: str, seconds: float) -> None:
    """Add ``seconds`` timed elsewhere (a trainer's :attr:`epoch_times`) to phase ``name``."""
    _seconds[name] += seconds
    _calls[name] += 1


def reset() -> None:
    """Forget the times so far (a worker starts from zero)."""
    _seconds.clear()
    _calls.clear()


def snapshot() -> dict[str, dict[str, float]]:
    """``{phase: {"seconds": s, "calls": n}}`` so far, in :data:`PHASES` order."""
    names = [n for n in PHASES if n in _calls] + sorted(set(_calls) - set(PHASES))
    return {n: {"seconds": round(_seconds[n], 6), "calls": _calls[n]} for n in names}


def worker_file(output_dir: str | Path, session: str, index: int) -> Path:
    """Where worker ``index`` of launch ``session`` writes its phases."""
    return Path(output_dir) / "workers" / f"{session}-{index}.json"


def write_worker_file(path: Path, info: dict[str, Any]) -> None:
    """Write ``info`` plus :func:`snapshot`'s phases to ``path`` (whole or not at all: a
    measurement, skipped on a full disk)."""
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**info, "phases": snapshot()}, indent=2))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
