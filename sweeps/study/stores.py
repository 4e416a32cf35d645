"""Crash-safe, race-free creation of the Optuna storage and the MLflow store.

Both libraries create their schema on first use, in many statements: a process killed in the
middle leaves a half-made store that every later run trips over (``table ... already exists``),
and two processes creating one store at once collide (``duplicate column``, PostgreSQL's
``pg_type_typname_nsp_index``). Here:

- an SQLite store that does not exist yet is created whole in a private file beside it and then
  linked into place atomically: the store's path holds a complete store or nothing;
- creation runs under :func:`store_lock` -- a lock on the SQLite file's folder, or a PostgreSQL
  advisory lock -- so that launchers starting together, on one machine or several, take turns;
- an MLflow SQLite store left half-made by an older version (no runs in it) is moved aside and
  made again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sweeps.study.hosts import host_name, pid_alive

__all__ = ["absolute_url", "ensure_mlflow_store", "open_under_lock", "sqlite_path", "store_lock", "with_new_sqlite"]

T = TypeVar("T")
_ENSURED: set[str] = set()
_HELD = threading.local()  # .folders: the folders whose lock this thread holds


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (``sqlite:///a/b.db`` -> ``a/b.db``); None for other URLs and
    in-memory databases."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not an SQLAlchemy URL (an http tracking server, a typo)
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or (
            parsed.database == ":memory:"):
        return None
    return Path(parsed.database)


def absolute_url(url: str) -> str:
    """``url`` with a relative SQLite file made absolute (``sqlite:///mlflow.db`` ->
    ``sqlite:////cwd/mlflow.db``): for workers whose working directory is not the launcher's."""
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    return f"sqlite:///{path.resolve()}"


@contextmanager
def store_lock(url: str, purpose: str = "create") -> Iterator[None]:
    """Hold a lock on the store at ``url`` for ``purpose`` while the block runs: an exclusive
    ``flock`` of an SQLite file's folder (every process on a machine, and on a shared folder
    where its file system supports it), a PostgreSQL session advisory lock (every machine), and
    nothing for other databases or an MLflow server (which creates its own schema)."""
    path = sqlite_path(url)
    if path is not None:
        folder = path.resolve().parent
        held = _HELD.__dict__.setdefault("folders", set())
        if folder in held:  # this thread holds it already (a lock inside a lock)
            yield
            return
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # threads too: each has its own open file
            held.add(folder)
            yield
        finally:
            held.discard(folder)
            os.close(fd)  # releases the lock
        return
    if url.startswith(("postgresql", "postgres://")):
        with _advisory_lock(url, purpose):
            yield
        return
    yield


@contextmanager
def _advisory_lock(url: str, purpose: str) -> Iterator[None]:
    import sqlalchemy

    key = int.from_bytes(hashlib.sha1(f"mcmc-sweeps:{purpose}".encode()).digest()[:8], "big",
                         signed=True)
    engine = sqlalchemy.create_engine(url.replace("postgres://", "postgresql://", 1),
                                      poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()


def with_new_sqlite(url: str, create: Callable[[str], T]) -> T | None:
    """If ``url`` names an SQLite file that does not exist, make it whole: ``create(tmp_url)``
    builds the store in a private file beside it, which is then hard-linked to the path (atomic;
    a kill leaves no file, or a complete one). Call under :func:`store_lock`. Returns what
    ``create`` returned, or None when nothing was made (the file exists, or not SQLite)."""
    from sqlalchemy.engine import make_url

    path = sqlite_path(url)
    if path is None or path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    tmp = path.with_name(f".{path.name}.creating-{host_name()}-{os.getpid()}")
    tmp_url = make_url(url).set(database=str(tmp)).render_as_string(hide_password=False)
    try:
        made = create(tmp_url)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another machine on a shared folder was first: use its store
            pass
        return made
    finally:
        for leftover in (tmp, Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)


def _remove_leftovers(path: Path) -> None:
    """Remove the private files of creators of ``path`` on this host that were killed."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.creating-(.+)-(\d+)(-journal)?")
    for leftover in path.parent.iterdir():
        found = pattern.fullmatch(leftover.name)
        if found and found[1] == host_name() and not pid_alive(int(found[2])):
            leftover.unlink(missing_ok=True)


def _touch_mlflow(uri: str) -> None:
    """Create (or check) the MLflow store at ``uri``: MLflow makes its schema on first use."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def _has_runs(path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return bool(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.Error:  # no runs table: nothing was ever logged
        return False


def _half_made(path: Path) -> bool:
    """Whether the MLflow SQLite store at ``path`` is one whose creation was cut short: no
    schema revision recorded, or not the latest one, and no run logged in it."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:  # no revision table (or not a database at all)
        rows = []
    return rows != [(_get_latest_schema_revision(),)] and not _has_runs(path)


def ensure_mlflow_store(uri: str) -> None:
    """Make sure the MLflow store at ``uri`` exists, whole, before anything logs to it (once per
    process and URI). An SQLite store is created atomically (see the module), and one left
    half-made without runs is moved aside and made again; a database store is created under
    :func:`store_lock`; an MLflow server's store is the server's business."""
    if uri in _ENSURED or uri.startswith(("http://", "https://", "databricks")):
        return
    with store_lock(uri, "mlflow-store"):
        path = sqlite_path(uri)
        if path is None:
            _touch_mlflow(uri)
        else:
            if path.exists() and path.stat().st_size and _half_made(path):
                aside = path.with_name(f"{path.name}.half-made-{int(time.time())}")
                os.replace(path, aside)
                print(f"note: the MLflow store {path} was left half-made (by a process killed "
                      f"while creating it) and held no runs: moved it to {aside} and made it "
                      "again", flush=True)
            if with_new_sqlite(uri, _touch_mlflow) is None:
                _touch_mlflow(uri)
    _ENSURED.add(uri)


def open_under_lock(url: str, open_store: Callable[[str], Any]) -> Any:
    """``open_store(url)`` (e.g. an Optuna ``RDBStorage``), its schema made whole first: under
    :func:`store_lock`, an SQLite file that does not exist is created atomically."""
    with store_lock(url, "optuna-storage"):
        made = with_new_sqlite(url, open_store)
        if made is not None and hasattr(made, "engine"):
            made.engine.dispose()
        return open_store(url)
