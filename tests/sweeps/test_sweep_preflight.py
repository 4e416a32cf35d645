"""The start-up checks of :mod:`sweeps.checks.services` (run by
:func:`sweeps.checks.preflight.check_services`), in-process against real services: SQLite
files, a real HTTP server on loopback, a port where nothing listens. A check that passes creates
nothing; one that fails raises a :class:`Problem` with its key, a masked value and an exit
status (1 for a service, 2 for a config value)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.checks.preflight import MLFLOW_HTTP_ENV, check_services, mlflow_http_defaults
from sweeps.checks.services import (
    CONFIG,
    SERVICE,
    TIMEOUT,
    Problem,
    check_database,
    check_device,
    check_folder,
    check_tracking,
)

GARBAGE = b"not an sqlite file " * 100


def _tree(path: Path) -> list[Path]:
    return sorted(path.rglob("*"))


def test_the_happy_path_is_fast_and_creates_nothing(tmp_path: Path) -> None:
    import sqlalchemy  # noqa: F401 (imported by the sweep anyway: not part of the checks' time)

    out = tmp_path / "new" / "out"
    start = time.perf_counter()
    check_services(device="cpu", folders=[("hydra.sweeper.output_dir", out)],
                   storage=f"sqlite:///{out / 'optuna.db'}",
                   tracking=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert time.perf_counter() - start < 1.0
    assert _tree(tmp_path) == []


def test_an_existing_storage_passes_and_is_left_as_it_was(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=url, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1),
                                                              n_trials=2)
    optuna.storages.RDBStorage(url).engine.dispose()
    before = (tmp_path / "optuna.db").read_bytes()
    check_database(url, "hydra.sweeper.storage")
    assert (tmp_path / "optuna.db").read_bytes() == before
    assert [p.name for p in _tree(tmp_path)] == ["optuna.db"]  # no journal left


@pytest.mark.parametrize("check", [check_database, check_tracking])
def test_a_store_whose_writer_was_killed_mid_transaction_passes(tmp_path: Path, check) -> None:
    import signal
    import sqlite3
    import subprocess
    import sys

    db = tmp_path / "store.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (a)")
    con.close()
    writer = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, time
con = sqlite3.connect({str(db)!r}, isolation_level=None)
con.execute("PRAGMA cache_size=1")  # spill to the file: a hot journal holds the old pages
con.execute("BEGIN EXCLUSIVE")
for _ in range(20000):
    con.execute("INSERT INTO t VALUES (randomblob(200))")
print("writing", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert (tmp_path / "store.db-journal").exists()
    # The check rolls the killed transaction back, as the store's next open would ...
    check(f"sqlite:///{db}", "tracking.uri")
    assert not (tmp_path / "store.db-journal").exists()
    # ... and the store is as it was before that transaction.
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    con.close()


@pytest.mark.parametrize("check", [check_database, check_tracking])
def test_a_corrupt_sqlite_file_is_a_service_problem(tmp_path: Path, check) -> None:
    (tmp_path / "store.db").write_bytes(GARBAGE)
    with pytest.raises(Problem) as caught:
        check(f"sqlite:///{tmp_path / 'store.db'}", "tracking.uri")
    assert caught.value.status == SERVICE
    assert caught.value.line.startswith(f"tracking.uri=sqlite:///{tmp_path / 'store.db'}: ")
    assert "is not a readable SQLite database (file is not a database)" in caught.value.line
    assert (tmp_path / "store.db").read_bytes() == GARBAGE


def test_nothing_listening_is_a_service_problem_with_the_password_masked() -> None:
    pytest.importorskip("psycopg")
    start = time.perf_counter()
    with pytest.raises(Problem) as caught:
        check_tracking("postgresql+psycopg://me:s3cret@127.0.0.1:1/db")
    assert time.perf_counter() - start < 8
    problem = caught.value
    assert problem.status == SERVICE
    assert problem.line.startswith("tracking.uri=postgresql+psycopg://me:***@127.0.0.1:1/db: "
                                   "cannot connect to 127.0.0.1:1 ("), problem.line
    assert "s3cret" not in problem.line and "\n" not in problem.line


@pytest.mark.parametrize(("url", "says"), [
    ("postgres://u@h/db", "SQLAlchemy has no database dialect 'postgres'"),
    ("nonsense", "not an SQLAlchemy database URL"),
])
def test_a_url_sqlalchemy_cannot_use_is_a_config_problem(url: str, says: str) -> None:
    with pytest.raises(Problem) as caught:
        check_database(url, "hydra.sweeper.storage")
    assert caught.value.status == CONFIG and says in caught.value.line


def test_a_missing_driver_names_the_package_to_install() -> None:
    import importlib.util

    if importlib.util.find_spec("MySQLdb"):
        pytest.skip("MySQLdb is installed")
    with pytest.raises(Problem) as caught:
        check_database("mysql://me:pw@127.0.0.1/db", "hydra.sweeper.storage")
    assert caught.value.status == CONFIG
    assert caught.value.line == ("hydra.sweeper.storage=mysql://me:***@127.0.0.1/db: its database "
                                 "driver (MySQLdb) is not installed; pip install mysqlclient, or "
                                 "name an installed driver (mysql+<driver>://...)")


def test_folders(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    check_folder(tmp_path / "a" / "b", "hydra.sweeper.output_dir")  # can be made
    check_folder(tmp_path, "hydra.sweeper.output_dir")  # exists
    with pytest.raises(Problem) as caught:
        check_folder(tmp_path / "file" / "b", "hydra.sweeper.output_dir")
    assert caught.value.status == CONFIG
    assert caught.value.line == (f"hydra.sweeper.output_dir={tmp_path / 'file' / 'b'}: "
                                 f"{tmp_path / 'file'} is a file, not a folder; set "
                                 "hydra.sweeper.output_dir to a folder you can write to")
    assert [p.name for p in _tree(tmp_path)] == ["file"]


def test_devices() -> None:
    import torch

    check_device("cpu")
    check_device("auto")
    if torch.cuda.is_available():
        check_device("cuda")
        with pytest.raises(Problem):
            check_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(Problem) as caught:
            check_device("cuda:1")
        assert caught.value.status == CONFIG
        assert caught.value.line == ("device=cuda:1: no CUDA GPU is visible; use device=cpu or "
                                     "device=auto")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = self.status if self.path.endswith("/health") else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(monkeypatch) -> Iterator[tuple[str, type[_Health]]]:
    """A real HTTP server on loopback (reached without a proxy) that answers ``/health``."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    handler = type("Handler", (_Health,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def test_a_tracking_server_that_answers_passes(server) -> None:
    uri, _ = server
    check_tracking(uri)
    check_tracking(uri.replace("http://", "http://me:s3cret@") + "/")


def test_a_tracking_server_that_fails_is_a_service_problem(server) -> None:
    uri, handler = server
    handler.status = 503
    with pytest.raises(Problem) as caught:
        check_tracking(uri.replace("http://", "http://me:s3cret@"))
    assert caught.value.status == SERVICE
    assert "HTTP 503" in caught.value.line and "s3cret" not in caught.value.line


def test_a_tracking_server_that_never_answers_is_given_up_within_seconds(monkeypatch) -> None:
    """A socket that accepts connections and never answers (a hung server)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.perf_counter()
        with pytest.raises(Problem) as caught:
            check_tracking(f"http://127.0.0.1:{silent.getsockname()[1]}")
        assert time.perf_counter() - start < TIMEOUT + 2
    assert caught.value.status == SERVICE
    assert "no MLflow server answers at 127.0.0.1:" in caught.value.line
    assert "timed out" in caught.value.line


def test_mlflow_http_retries_are_bounded_unless_the_user_set_them(monkeypatch) -> None:
    for name in MLFLOW_HTTP_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    mlflow_http_defaults()
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 3
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7


def test_sqlite_is_refused_only_when_cluster_workers_may_run_elsewhere() -> None:
    import socket

    from sweeps.checks.clusters import check_shared_storage, is_this_machine

    here = ["localhost", "127.0.0.1", socket.gethostname(), "::1"]
    assert all(is_this_machine(h) for h in here)
    assert not any(is_this_machine(h) for h in ("gpu-node-7", "192.0.2.1"))
    check_shared_storage("sqlite:////tmp/optuna.db", here)  # one machine: fine
    check_shared_storage("postgresql://u@db/optuna", ["gpu-node-7"])  # a server: fine
    with pytest.raises(Problem) as err:
        check_shared_storage("sqlite:////tmp/optuna.db", ["localhost", "gpu-node-7", "gpu-node-8"])
    assert err.value.status == CONFIG
    assert err.value.line == (
        "hydra.sweeper.storage=sqlite:////tmp/optuna.db: an SQLite file cannot be shared by "
        "workers on other machines (gpu-node-7, gpu-node-8); use a database server they all "
        "reach, e.g. hydra.sweeper.storage=postgresql://user@host/db")
