"""A real ``mlflow server`` for tests: on 127.0.0.1 at a free port, its SQLite backend store and
artifact folder under one temporary folder (what a team's tracking server is, on one machine).

Use the ``mlflow_server`` fixture of ``conftest.py``, or :func:`start_server` /
:meth:`MlflowServer.stop` directly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Hosts a test's subprocesses must reach without the dead proxy of ``sweeptools.env()``.
LOCAL_HOSTS = "127.0.0.1,localhost"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_proxy(env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``NO_PROXY``/``no_proxy`` covering 127.0.0.1 and localhost, so that requests
    to a local server skip any ``HTTP(S)_PROXY`` (``sweeptools.env()`` sets a dead one)."""
    out = dict(env)
    for key in ("NO_PROXY", "no_proxy"):
        out[key] = ",".join(filter(None, (out.get(key), LOCAL_HOSTS)))
    return out


@dataclass
class MlflowServer:
    """A running ``mlflow server`` process and where it keeps its data."""

    root: Path
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        """The backend store (SQLite file)."""
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        """The folder the server keeps artifacts in (``--artifacts-destination``)."""
        return self.root / "artifacts"

    @property
    def log(self) -> Path:
        """The server's stdout and stderr."""
        return self.root / "server.log"

    def uri(self, user: str | None = None, password: str | None = None) -> str:
        """The tracking URI, with ``user:password@`` when given."""
        if user is None:
            return self.url
        auth = f"{user}:{password}@" if password is not None else f"{user}@"
        return f"http://{auth}127.0.0.1:{self.port}"

    def client(self) -> Any:
        """An ``MlflowClient`` of this server (without credentials)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url)

    def healthy(self) -> bool:
        """Whether ``/health`` answers 200 (proxies bypassed)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Terminate the server and its workers (its own process group), then reap it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def command() -> list[str]:
    """The ``mlflow`` executable next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "mlflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


def start_server(root: Path, timeout: float = 90, port: int | None = None) -> MlflowServer:
    """Start ``mlflow server`` with its store under ``root`` (on ``port``, default a free one:
    the same root and port restart a stopped server) and wait until ``/health`` answers.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout`` seconds (its log
            is in the message).
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    args = [*command(), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts")]
    env = no_proxy({k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")})
    with open(root / "server.log", "a") as log:
        proc = subprocess.Popen(args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = MlflowServer(root=root, port=port, proc=proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.healthy():
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"mlflow server did not start on port {port}:\n"
                       f"{server.log.read_text()[-4000:]}")
