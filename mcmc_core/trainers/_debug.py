"""``train(debug=...)``: the run's DEBUG log records shown for the duration of one run."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

__all__ = ["LOGGER", "debug_logging"]

#: The logger of every trainer's debug records (a child of ``mcmc_core``).
LOGGER = "mcmc_core.trainers"


@contextlib.contextmanager
def debug_logging(debug: int) -> Iterator[None]:
    """With ``debug`` > 0, show the ``mcmc_core.trainers`` logger's DEBUG records while inside.

    The logger's level is set to DEBUG and, when logging is not configured (no handler on the
    logger or its ancestors), a stderr handler printing ``debug: <message>`` is added; both are
    undone on exit. With ``debug`` == 0 nothing changes.

    Args:
        debug: 0 (off) or more.
    """
    if not debug:
        yield
        return
    logger = logging.getLogger(LOGGER)
    level, handler = logger.level, None
    logger.setLevel(logging.DEBUG)
    if not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)
