"""Two machines on one study: launchers in their own UTS namespaces (``unshare --uts``: each has
its own hostname, so the same-host dead-process shortcut cannot hide the heartbeat path), a
fresh PostgreSQL database as the shared Optuna storage and a real ``mlflow server``.

Needs root (for ``unshare``) and ``MCMC_TEST_POSTGRES_URL`` (``.ci/run`` sets both up)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweeptools import TINY, command, env, finished, states, wait_for

URL = os.environ.get("MCMC_TEST_POSTGRES_URL")


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname probe-host && hostname"],
                           capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == "probe-host"


@pytest.fixture(scope="module")
def fresh_database():
    """A new, empty PostgreSQL database (dropped afterwards): its schema is created by the
    launchers themselves, at the same moment."""
    if not URL:
        pytest.skip("MCMC_TEST_POSTGRES_URL is not set: no PostgreSQL server for the "
                    "multi-machine test")
    if not _unshare_works():
        pytest.skip("unshare --uts is not available (needs root): cannot give launchers their "
                    "own hostnames")
    import sqlalchemy

    admin = sqlalchemy.create_engine(URL, isolation_level="AUTOCOMMIT",
                                     connect_args={"connect_timeout": 5})
    name = f"pytest_hosts_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except Exception as err:
        pytest.skip(f"cannot create a database at MCMC_TEST_POSTGRES_URL: {err}")
    url = sqlalchemy.engine.make_url(URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


class Host:
    """A launcher on "machine" ``name``: its own hostname and its own folders."""

    def __init__(self, name: str, root: Path, args: list[str]) -> None:
        self.name, self.root = name, root
        root.mkdir(parents=True, exist_ok=True)
        self.out, self.err = root / "stdout", root / "stderr"
        script = f'hostname {name} && exec "$@"'
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                ["unshare", "--uts", "sh", "-c", script, "sh", *command(), *args,
                 f"hydra.sweeper.output_dir={root / 'out'}"],
                cwd=root, env={**env(), "NO_PROXY": "127.0.0.1,localhost"}, stdout=out,
                stderr=err, start_new_session=True)

    def wait(self, timeout: float = 900) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """The whole machine goes: every process of the launcher, at once."""
        os.killpg(self.proc.pid, 9)
        self.proc.wait()

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()


def _args(storage: str, tracking: str, name: str, n_trials: int, *extra: str) -> list[str]:
    return [*TINY, f"hydra.sweeper.storage={storage}", f"tracking.uri={tracking}",
            f"hydra.sweeper.study_name={name}", f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=1", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=4", "hydra.sweeper.pruner=none", *extra]


def _runs(tracking: str, name: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name(name)
    assert exp is not None, f"no experiment {name}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_two_hosts_start_one_study_together(fresh_database, mlflow_server, tmp_path,
                                            monkeypatch) -> None:
    import optuna

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    name, n_trials = f"hosts-{uuid.uuid4().hex[:8]}", 6
    args = _args(fresh_database, mlflow_server.url, name, n_trials)
    hosts = [Host(h, tmp_path / h, args) for h in ("host-a", "host-b")]  # the same moment
    codes = [h.wait() for h in hosts]
    assert codes == [0, 0], "\n".join(h.output()[-3000:] for h in hosts)

    trials = optuna.load_study(study_name=name, storage=fresh_database).get_trials()
    done = finished(trials)
    assert len(done) == n_trials, states(trials)
    assert {t.user_attrs["host"] for t in done} == {"host-a", "host-b"}
    params = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(params)) == len(params), params

    runs = _runs(mlflow_server.url, name)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, [r.data.tags for r in parents]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert len([r for r in children if r.info.status == "FINISHED"]) == n_trials
    for h in hosts:
        assert "Traceback" not in h.output(), h.output()[-3000:]


def test_the_other_host_finishes_a_dead_hosts_trials(fresh_database, mlflow_server,
                                                    tmp_path, monkeypatch) -> None:
    import optuna

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    name, n_trials = f"dead-host-{uuid.uuid4().hex[:8]}", 4
    args = _args(fresh_database, mlflow_server.url, name, n_trials,
                 "trainer.steps_per_epoch=600", "trainer.epochs=4")
    doomed, survivor = Host("host-doomed", tmp_path / "d", args), Host(
        "host-survivor", tmp_path / "s", args)

    def doomed_is_running() -> bool:
        try:
            study = optuna.load_study(study_name=name, storage=fresh_database)
        except KeyError:
            return False
        # Its values drawn: a trial killed before that has none to repeat.
        return any(t.user_attrs.get("host") == "host-doomed" and t.params
                   for t in study.get_trials(states=(TrialState.RUNNING,)))

    wait_for(doomed_is_running, 600, "a RUNNING trial on host-doomed with its values")
    killed_at = time.monotonic()
    doomed.kill()
    assert survivor.wait() == 0, survivor.output()[-4000:]
    assert time.monotonic() - killed_at >= 4  # the grace period passed before the retry

    trials = optuna.load_study(study_name=name, storage=fresh_database).get_trials()
    assert len(finished(trials)) == n_trials, states(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dead = [t for t in trials if t.state == TrialState.FAIL
            and t.user_attrs.get("host") == "host-doomed"]
    assert dead, states(trials)
    for t in dead:  # retried on the survivor with the same parameters
        retries = [r for r in finished(trials) if r.system_attrs.get("failed_trial") == t.number]
        assert [r.user_attrs["host"] for r in retries] == ["host-survivor"]
        assert retries[0].params == t.params
    runs = _runs(mlflow_server.url, name)
    assert not [r for r in runs if r.info.status == "RUNNING"]
