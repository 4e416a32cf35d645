"""Checks of the services and places a run needs, each within seconds, creating nothing: the
device, folders, an Optuna storage (a database URL), an MLflow tracking store or server. A
problem is :class:`Problem`, one line::

    <key>=<value, password masked>: <what is wrong>; <what to do>

with exit status 1 for a service (unreachable, corrupt) and 2 for a config value (a bad path, a
missing database driver, no GPU for ``device=cuda``). Each ``check_*`` function checks one
service; :func:`sweeps.checks.preflight.check_services` runs a run's checks.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mcmc_core.secrets import mask_text, mask_url

__all__ = [
    "CONFIG",
    "SERVICE",
    "TIMEOUT",
    "Problem",
    "check_database",
    "check_device",
    "check_folder",
    "check_tracking",
]

#: Exit statuses: a service is unreachable or corrupt / a config value cannot work.
SERVICE, CONFIG = 1, 2
#: Seconds each network check waits for an answer.
TIMEOUT = 3.0
#: pip packages of the DB-API modules SQLAlchemy dialects import.
_DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary",
                    "MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "pg8000": "pg8000",
                    "mysql": "mysql-connector-python", "pyodbc": "pyodbc",
                    "pymssql": "pymssql", "oracledb": "oracledb"}
#: Drivers whose connect() takes ``connect_timeout`` (seconds) / ``timeout``.
_CONNECT_TIMEOUT = ("psycopg", "psycopg2", "pymysql", "mysqldb", "mysqlconnector")
_TIMEOUT = ("pg8000", "pymssql")
#: URI schemes MLflow treats as an SQLAlchemy database store.
_MLFLOW_DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


class Problem(Exception):
    """A service or a place a run needs does not work.

    Args:
        key: the config key whose value is at fault (``hydra.sweeper.storage``).
        value: its value (printed with passwords masked).
        what: what is wrong.
        todo: what to do about it.
        status: :data:`SERVICE` or :data:`CONFIG`, the exit status.
    """

    def __init__(self, key: str, value: Any, what: str, todo: str, status: int) -> None:
        self.key, self.value, self.what, self.todo, self.status = key, value, what, todo, status
        super().__init__(self.line)

    @property
    def line(self) -> str:
        """``<key>=<masked value>: <what is wrong>; <what to do>`` (one line)."""
        what = " ".join(mask_text(str(self.what)).split())
        return f"{self.key}={mask_url(str(self.value))}: {what}; {self.todo}"


def _within(seconds: float, fn: Callable[[], Any], on_timeout: Callable[[], Problem]) -> Any:
    """``fn()`` in a daemon thread, given up after ``seconds`` (a DNS lookup has no timeout)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as err:  # re-raised below, in the caller's thread
            error.append(err)

    thread = threading.Thread(target=target, name="preflight", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise on_timeout()
    if error:
        raise error[0]
    return result[0] if result else None


def check_device(device: str, key: str = "device", gpus: list[int] | None = None,
                 gpus_key: str = "hydra.sweeper.gpus") -> None:
    """A ``cuda`` / ``cuda:N`` device needs that GPU to be visible, and so do the GPU indices
    ``gpus`` (``hydra.sweeper.gpus``, or ``gpus_key``) of a run on CUDA (``device=auto`` with a GPU
    too)."""
    if device == "cpu" or (device == "auto" and gpus is None):
        return
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.startswith("cuda") and not visible:
        raise Problem(key, device, "no CUDA GPU is visible", "use device=cpu or device=auto",
                      CONFIG)
    if not visible:  # auto: runs on the CPU
        return
    index = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    if index >= visible:
        raise Problem(key, device, f"only {visible} CUDA GPU(s) are visible",
                      f"use cuda:0 to cuda:{visible - 1}", CONFIG)
    bad = [g for g in gpus or [] if g >= visible]
    if bad:
        raise Problem(gpus_key, gpus, f"only {visible} CUDA GPU(s) are visible",
                      f"use indices below {visible}, or null for all", CONFIG)


def check_folder(path: str | Path, key: str, value: Any = None, todo: str | None = None) -> None:
    """``path`` is a folder, or can be made one, and files can be written there. Nothing is
    left behind: the test is a temporary folder in ``path`` or its nearest existing parent.
    ``value`` and ``todo`` replace the path and the advice in the error line."""
    value = path if value is None else value
    todo = todo or f"set {key} to a folder you can write to"
    p = Path(path)
    existing = next((a for a in (p, *p.parents) if a.exists() or a.is_symlink()), Path("."))
    if not existing.is_dir():
        raise Problem(key, value, f"{existing} is a file, not a folder", todo, CONFIG)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".preflight-", dir=existing))
    except OSError as err:
        raise Problem(key, value, f"cannot create files in {existing} ({err.strerror})", todo,
                      CONFIG) from None


def check_database(url: str, key: str) -> None:
    """An SQLAlchemy database URL (Optuna storage, MLflow store) works: its driver is installed
    and the server accepts a connection within :data:`TIMEOUT`; an SQLite file is readable
    and intact (opened read-only), or its folder can be written when it does not exist yet."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise Problem(key, url, "not an SQLAlchemy database URL", "use e.g. sqlite:///optuna.db "
                      "or postgresql+psycopg://user@host/db", CONFIG) from None
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite(parsed.database, key, url)
        return
    driver = parsed.drivername
    try:
        driver = parsed.get_dialect().driver
        args = ({"connect_timeout": int(TIMEOUT)} if driver in _CONNECT_TIMEOUT
                else {"timeout": TIMEOUT} if driver in _TIMEOUT else {})
        engine = create_engine(parsed, poolclass=NullPool, connect_args=args)
    except NoSuchModuleError:
        raise Problem(key, url, f"SQLAlchemy has no database dialect {parsed.drivername!r}",
                      "use a URL such as postgresql+psycopg://user@host/db or "
                      "mysql+pymysql://user@host/db", CONFIG) from None
    except ImportError as err:
        module = (err.name or driver or "?").split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module)
        raise Problem(key, url, f"its database driver ({module}) is not installed",
                      f"pip install {package}, or name an installed driver "
                      f"({parsed.get_backend_name()}+<driver>://...)", CONFIG) from None
    where = f"{parsed.host or 'localhost'}:{parsed.port or 'default port'}"
    todo = "start the database server or fix the URL (host, port, user, password, database)"

    def connect() -> None:
        with engine.connect():
            pass

    try:
        _within(TIMEOUT + 2, connect, lambda: Problem(
            key, url, f"no answer from {where} within {TIMEOUT + 2:.0f} s", todo, SERVICE))
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()
        raise Problem(key, url, f"cannot connect to {where} ({reason[0] if reason else err})",
                      todo, SERVICE) from None
    finally:
        engine.dispose()


def _check_sqlite(database: str | None, key: str, url: str) -> None:
    """An existing SQLite file opens and passes ``PRAGMA quick_check``; a missing one can be
    created later (its folder is writable). A writable file is opened read-write (never
    created): a process killed in a write leaves a hot journal that only a writer can roll
    back, as any later open of the store does anyway; a read-only open would refuse it."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        check_folder(path.parent, key, url, f"point {key} at a file in a folder you can write to")
        return
    todo = f"move {path} away (a new one is created) or point {key} at the right file"
    if path.is_dir():
        raise Problem(key, url, f"{path} is a folder, not an SQLite file", todo, CONFIG)
    try:
        mode = "rw" if os.access(path, os.W_OK) else "ro"
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True,
                              timeout=TIMEOUT)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            row = con.execute("PRAGMA quick_check").fetchone()
        finally:
            con.close()
    except sqlite3.Error as err:
        raise Problem(key, url, f"{path} is not a readable SQLite database ({err})", todo,
                      SERVICE) from None
    if row is None or row[0] != "ok":
        raise Problem(key, url, f"{path} is corrupt (quick_check: {row and row[0]})", todo,
                      SERVICE)
    if not os.access(path, os.R_OK | os.W_OK):
        raise Problem(key, url, f"{path} is not writable", f"make it writable or set {key} to "
                      "another file", CONFIG)


def check_tracking(uri: str, key: str = "tracking.uri") -> None:
    """An MLflow tracking URI works: an ``http(s)`` server answers ``GET <uri>/health`` within
    :data:`TIMEOUT` (no retries), a database store passes :func:`check_database`, a file store's
    folder is writable. Other schemes (``databricks``, ...) are left to MLflow."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        _check_http(uri, key)
    elif scheme.split("+")[0] in _MLFLOW_DB_SCHEMES:
        check_database(uri, key)
    elif scheme in ("", "file"):
        check_folder(parts.path if scheme else uri, key, uri,
                     f"point {key} at a folder you can write to")


def _check_http(uri: str, key: str) -> None:
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]  # credentials are not needed for /health
    health = urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/health", "", ""))
    todo = "start it (mlflow server) or fix the URI, or use tracking=none"

    def get() -> int:
        try:
            with urllib.request.urlopen(health, timeout=TIMEOUT) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:  # it answers: reachable
            return int(err.code)

    try:
        status = _within(TIMEOUT + 1, get, lambda: Problem(
            key, uri, f"no answer from {host} within {TIMEOUT + 1:.0f} s", todo, SERVICE))
    except Problem:
        raise
    except urllib.error.URLError as err:
        raise Problem(key, uri, f"no MLflow server answers at {host} ({err.reason})", todo,
                      SERVICE) from None
    except Exception as err:  # http.client and socket errors: no usable answer
        raise Problem(key, uri, f"no MLflow server answers at {host} "
                      f"({type(err).__name__}: {err})", todo, SERVICE) from None
    if status >= 500:
        raise Problem(key, uri, f"the server answers HTTP {status} at {health}", todo, SERVICE)
