"""A 2-worker sweep on a PostgreSQL storage (what several machines share) reaches exactly
``n_trials`` finished trials. Runs only where ``MCMC_TEST_POSTGRES_URL`` names a reachable server,
e.g. ``postgresql://postgres:postgres@127.0.0.1:5432/postgres``."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweeptools import LONG, LONG_EPOCHS, finished, states, wait_for

N_TRIALS = 3
URL = os.environ.get("MCMC_TEST_POSTGRES_URL")


def _reachable(url: str) -> str | None:
    """None when a connection to ``url`` works, else why not."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except Exception as err:  # driver missing, server down, bad credentials
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return None


@pytest.fixture(scope="module")
def postgres() -> str:
    if not URL:
        pytest.skip("MCMC_TEST_POSTGRES_URL is not set (e.g. "
                    "postgresql://postgres:postgres@127.0.0.1:5432/postgres): no PostgreSQL "
                    "server to test the shared storage on")
    why = _reachable(URL)
    if why:
        pytest.skip(f"PostgreSQL at MCMC_TEST_POSTGRES_URL is not reachable: {why}")
    return URL


@pytest.fixture(scope="module")
def swept(postgres, new_sweep):
    import optuna

    s = new_sweep("postgres")
    name = f"pytest-{uuid.uuid4().hex[:12]}"
    result = s.run(s.args(f"hydra.sweeper.storage={postgres}", f"hydra.sweeper.study_name={name}",
                          f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2"))
    try:
        yield result, optuna.load_study(study_name=name, storage=postgres).get_trials(), s, name
    finally:
        try:
            optuna.delete_study(study_name=name, storage=postgres)
        except KeyError:
            pass


def test_two_workers_on_postgres_reach_exactly_n_trials(swept) -> None:
    result, trials, s, name = swept
    result.ok()
    assert result.study_name == name
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    pids = {t.user_attrs["pid"] for t in finished(trials)}
    assert 1 <= len(pids) <= 2 and result.pid not in pids  # in the worker processes
    assert not (s.out / "optuna.db").exists()  # nothing in the embedded default
    runs = s.runs(name)
    assert len(runs.parents) == 1 and len(runs.with_status("FINISHED")) == N_TRIALS


def _restart_command() -> list[str] | None:
    """``pg_ctlcluster <version> main`` of this machine's cluster, when this process may run
    it (root, the CI's cluster), else None."""
    import shutil

    versions = sorted(Path("/usr/lib/postgresql").glob("*"), key=lambda p: p.name)
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster") or not versions:
        return None
    return ["pg_ctlcluster", versions[-1].name, "main"]


@pytest.fixture(scope="module")
def restarted(postgres, new_sweep):
    """A 2-worker sweep on PostgreSQL whose server is stopped after the first finished trial
    and started again 10 s later."""
    import optuna

    cluster = _restart_command()
    if cluster is None or "127.0.0.1" not in postgres and "localhost" not in postgres:
        pytest.skip("restarting PostgreSQL needs root, pg_ctlcluster and a local server")
    s = new_sweep("postgres-restart")
    name = f"pytest-{uuid.uuid4().hex[:12]}"
    args = s.multirun_args(f"hydra.sweeper.storage={postgres}", f"hydra.sweeper.study_name={name}",
                           "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2",
                           "hydra.sweeper.pruner=none", base=LONG)
    launch = s.start(args, program="mcmc-train")
    try:
        # The test's own reads reconnect after the restart (pool_pre_ping), as the sweep's do.
        storage = optuna.storages.RDBStorage(postgres, engine_kwargs={"pool_pre_ping": True})
        study = optuna.load_study(study_name=wait_for(
            lambda: name in optuna.get_all_study_names(storage) and name, 600, "the study",
            launch), storage=storage)
        wait_for(lambda: finished(study.get_trials()), 600, "a finished trial", launch)
        subprocess.run([*cluster, "stop", "-m", "fast"], check=True, capture_output=True)
        time.sleep(10)
        subprocess.run([*cluster, "start"], check=True, capture_output=True)
        wait_for(lambda: _reachable(postgres) is None, 60, "PostgreSQL to be back")
        result = launch.wait(timeout=600)
        yield result, study.get_trials(), s, name
    finally:
        launch.kill()
        subprocess.run([*cluster, "start"], capture_output=True)  # never leave it down
        try:
            optuna.delete_study(study_name=name, storage=postgres)
        except Exception:  # noqa: BLE001
            pass


def test_a_postgres_restart_mid_sweep_is_waited_out(restarted) -> None:
    result, trials, s, name = restarted
    result.ok()
    output = result.stdout + result.stderr
    assert "unreachable" in output and "back after" in output, result.describe()
    assert "Traceback" not in output
    assert len(finished(trials)) == 6, states(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.FAIL)], states(
        trials)
    runs = s.runs(name)
    assert len(runs.parents) == 1 and runs.parents[0].info.status == "FINISHED"
    for t in finished(trials):
        steps = [step for step, _ in runs.steps(t.user_attrs["mlflow_run_id"], "val_accuracy")]
        assert steps == list(range(1, LONG_EPOCHS + 1)), steps
