"""Files a sweep writes whole or not at all, and a full disk told apart from other errors.

A report file is written to a temporary name beside it and renamed over it
(:func:`write_atomic`): a full disk or a kill leaves the previous file or none, never half of
one (checkpoints are written the same way, :mod:`mcmc_core.trainers`). A full disk
(:func:`is_disk_full`) stops a trial as an interruption -- queued to resume from its last
checkpoint once there is space -- instead of failing it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["DiskFull", "is_disk_full", "write_atomic"]


class DiskFull(Exception):
    """The disk of the sweep's output folder (or its storage) is full."""


def is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it) is a full disk or quota: ``ENOSPC``/``EDQUOT``, or
    SQLite's ``database or disk is full``."""
    for _ in range(8):
        if err is None:
            return False
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(s in str(err) for s in ("database or disk is full", "No space left on device")):
            return True
        err = err.__cause__ or err.__context__
    return False


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then rename it over
    ``path``; on any error the temporary file is removed and ``path`` is left as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
