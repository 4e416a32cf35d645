"""An MLflow tracking server that goes away for a while (a restart, a deploy, a network blip)
is waited out, not turned into failed trials.

:class:`OutageTolerantClient` wraps an ``MlflowClient`` of a server (``http(s)://``). Its writes
that return nothing (metrics, params, tags, artifacts, a run's end) go through one queue per
process, sent in order; while the server is unreachable they stay queued and the call returns at
once, so training goes on, and the next calls retry the queue with backoff. Other calls (create
a run, read one, upload files) first send the queue, then wait for the server, retrying with
backoff. One line says when an outage starts and when it ends. Only past ``retry_seconds`` of
outage does a call raise :class:`TrackingOutage`.

A write resent after an outage is sent whole and unchanged (same timestamps), and MLflow's
store drops a metric row it already holds, so a write that reached the server just before the
connection broke is not logged twice.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

__all__ = ["OutageTolerantClient", "TrackingOutage", "flush_all", "is_outage", "retry_seconds",
           "set_retry_seconds", "tolerant"]

#: Writes that return nothing and carry their data: queued, sent in order. (Artifact uploads
#: read files that may be gone later: they wait for the server instead.)
QUEUED = frozenset({"log_batch", "log_metric", "log_param", "set_tag", "set_terminated",
                    "update_run", "log_dict", "log_text", "delete_tag"})
#: Longest wait between two tries while the server is down.
MAX_BACKOFF = 10.0
_retry_seconds = 300.0


class TrackingOutage(Exception):
    """The tracking server stayed unreachable longer than ``tracking.retry_seconds``."""


def retry_seconds() -> float:
    """How long this process waits out an outage of a service (MLflow, the storage)."""
    return _retry_seconds


def set_retry_seconds(seconds: float) -> None:
    """How long this process waits out an outage before a tracking call fails."""
    global _retry_seconds
    _retry_seconds = float(seconds)


def is_outage(err: BaseException) -> bool:
    """Whether ``err`` means the server could not be reached or is restarting (connection
    refused or reset, a timeout, HTTP 502/503/504), not that the request was wrong."""
    import requests

    if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        ConnectionError, TimeoutError)):
        return True
    text = str(err)
    return any(s in text for s in ("Max retries exceeded", "Connection refused",
                                   "Connection aborted", "Connection reset", "Read timed out",
                                   "RemoteDisconnected", "502 Server Error", "503 Server Error",
                                   "504 Server Error", "too many 502", "too many 503",
                                   "too many 504"))


class OutageTolerantClient:
    """An ``MlflowClient`` (``client``) of the server ``label`` that waits out outages."""

    def __init__(self, client: Any, uri: str, label: str) -> None:
        self._client, self._label = client, label
        self._health = uri.rstrip("/") + "/health"
        self._queue: deque[tuple[str, tuple, dict]] = deque()
        self._lock = threading.RLock()
        self._down_since: float | None = None
        self._next_try = 0.0
        self._backoff = 1.0
        self._sent_late = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        if name in QUEUED:
            def queued(*args: Any, **kwargs: Any) -> None:
                with self._lock:
                    self._queue.append((name, args, kwargs))
                    self.flush(wait=False)
            return queued

        def answered(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.flush(wait=True)
                return self._call(lambda: attr(*args, **kwargs), wait=True)
        return answered

    @property
    def pending(self) -> int:
        """Writes queued, not yet sent."""
        return len(self._queue)

    def flush(self, wait: bool = True) -> None:
        """Send the queued writes in order. With ``wait``, wait for the server (up to the retry
        window); without, stop at the first that fails and leave the rest queued."""
        with self._lock:
            while self._queue:
                name, args, kwargs = self._queue[0]
                method = getattr(self._client, name)
                try:
                    if not self._call(lambda: method(*args, **kwargs), wait=wait, queued=True):
                        return
                except TrackingOutage:
                    raise  # still queued: sent by a later flush
                except Exception:
                    self._queue.popleft()  # a rejected write (not an outage) is not retried
                    raise
                self._queue.popleft()

    def _call(self, call: Any, *, wait: bool, queued: bool = False) -> Any:
        """``call()``, retried while the server is down (``wait``) or tried once if its turn
        has come (not ``wait``: returns False when it could not be sent)."""
        while True:
            if not wait and time.monotonic() < self._next_try:
                return False
            try:
                if self._down_since is not None and not self._healthy():
                    raise ConnectionError(f"{self._health} does not answer")
                result = call()
            except Exception as err:
                if not is_outage(err):
                    raise
                self._down(err)
                if not wait:
                    return False
                if time.monotonic() - self._down_since > _retry_seconds:
                    raise TrackingOutage(
                        f"tracking: MLflow at {self._label} unreachable for more than "
                        f"{_retry_seconds:.0f} s (tracking.retry_seconds)") from err
                time.sleep(max(0.0, self._next_try - time.monotonic()))
                continue
            self._up(queued)
            return True if queued else result

    def _healthy(self) -> bool:
        """Whether the server answers its health check: a cheap probe while it is down, where
        a real request would spend MLflow's own retries (seconds) on each try."""
        import requests

        try:
            return requests.get(self._health, timeout=2).status_code == 200
        except Exception:  # noqa: BLE001 -- any failure means: not yet
            return False

    def _down(self, err: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since, self._backoff = now, 1.0
            print(f"tracking: MLflow at {self._label} unreachable ({type(err).__name__}); "
                  f"waiting up to {_retry_seconds:.0f} s for it, training goes on", flush=True)
        self._next_try = now + self._backoff
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)

    def _up(self, queued: bool) -> None:
        if self._down_since is None:
            return
        self._sent_late += queued
        if queued and len(self._queue) > 1:
            return  # the outage ends when the queue is sent
        print(f"tracking: MLflow at {self._label} back after "
              f"{time.monotonic() - self._down_since:.0f} s; {self._sent_late} queued writes "
              "sent", flush=True)
        self._down_since, self._sent_late, self._next_try = None, 0, 0.0


_clients: dict[str, OutageTolerantClient] = {}


def tolerant(client: Any, uri: str, label: str) -> OutageTolerantClient:
    """This process's one :class:`OutageTolerantClient` of the server at ``uri`` (one queue:
    the writes of every run sent in the order they were made), around ``client`` the first
    time; ``label`` names the server in its lines (no password)."""
    if uri not in _clients:
        _clients[uri] = OutageTolerantClient(client, uri, label)
    return _clients[uri]


def flush_all() -> None:
    """Send every queued write of this process (before it exits), waiting out an outage up to
    the retry window."""
    for client in list(_clients.values()):
        client.flush(wait=True)

