"""This machine and its processes, as trials and store files record them."""

from __future__ import annotations

import os
import socket

__all__ = ["host_name", "pid_alive"]


def host_name() -> str:
    """This machine's name (what trials record as their ``host``)."""
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
