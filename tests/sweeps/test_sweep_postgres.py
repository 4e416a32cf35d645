"""A 2-worker sweep on a PostgreSQL storage (what several machines share) reaches exactly
``n_trials`` finished trials. Runs only where ``MCMC_TEST_POSTGRES_URL`` names a reachable server,
e.g. ``postgresql://postgres:postgres@127.0.0.1:5432/postgres``."""

from __future__ import annotations

import os
import uuid

import pytest
from optuna.trial import TrialState

from sweeptools import finished, states

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
