"""No password is printed or written: a sweep and a training run that log to a real
``mlflow server`` with ``user:password@`` in ``tracking.uri`` (and, where
``MCMC_TEST_POSTGRES_URL`` is set, on a PostgreSQL storage whose URL holds a password) work,
and the password is in none of their output, files, MLflow store, artifacts or checkpoints; a
config error shows it as ``***``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from mcmc_core.config import TrainConfig
from mcmc_core.secrets import mask_url
from mcmc_core.trainers import load_checkpoint
from sweeps.sweeper.config import Sweep
from sweeps.sweeper.settings import McmcOptunaSweeperConf
from sweeptools import TINY, Result, env

PASSWORD = f"pw-{uuid.uuid4().hex}"
POSTGRES = os.environ.get("MCMC_TEST_POSTGRES_URL")


def needles() -> list[bytes]:
    """What must appear nowhere: the tracking password, and the storage's as a URL's userinfo
    (a CI password such as ``postgres`` is also the user's and the database's name)."""
    found = [PASSWORD.encode()]
    if POSTGRES:
        from sqlalchemy.engine import make_url

        password = make_url(POSTGRES).password
        if password:
            found.append(f":{password}@".encode())
            if len(password) >= 8 and password not in mask_url(POSTGRES):
                found.append(password.encode())
    return found


def leaks(*roots: Path) -> list[str]:
    """The files under ``roots`` whose bytes hold a password."""
    return [str(path) for root in roots for path in sorted(root.rglob("*"))
            if path.is_file() and not path.is_symlink()
            and any(n in path.read_bytes() for n in needles())]


def in_text(text: str) -> bool:
    return any(n in text.encode() for n in needles())


def run(script: str, args: list[str], cwd: Path, timeout: float = 900) -> Result:
    """``<script> *args`` (the console script next to this interpreter) to its end."""
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(Path(sys.executable).parent / script), *args], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=timeout)
    return Result(args, proc.returncode, proc.stdout, proc.stderr, 0.0)


def config_of(client, run) -> dict:
    """A run's ``config.yaml`` artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        return yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml",
                                                             tmp)).read_text())


def hydra_files(cwd: Path) -> list[Path]:
    return sorted(cwd.rglob(".hydra/*.yaml"))


@pytest.fixture(scope="module")
def swept(mlflow_server, tmp_path_factory):
    """A 2-trial sweep logging to the server with a password in ``tracking.uri``."""
    root = tmp_path_factory.mktemp("secret-sweep")
    name = f"secrets-{uuid.uuid4().hex[:10]}"
    uri = mlflow_server.uri("sweeper", PASSWORD)
    args = [*TINY, "trainer.epochs=2", f"hydra.sweeper.output_dir={root / 'out'}",
            f"tracking.uri={uri}", f"hydra.sweeper.study_name={name}", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=1", "hydra.sweeper.pruner=none"]
    if POSTGRES:
        args.append(f"hydra.sweeper.storage={POSTGRES}")
    result = run("mcmc-sweep", args, root / "work")
    return root, name, uri, result


def test_sweep_logs_to_the_server_with_the_real_password(swept, mlflow_server) -> None:
    root, name, uri, result = swept
    assert result.returncode == 0, result.describe()
    client = mlflow_server.client()
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    masked = mask_url(uri)
    # Not a param (a few filter keys are): the run's config.yaml holds it, masked.
    assert "***" in masked and {config_of(client, r)["tracking"]["uri"] for r in children} == {
        masked}
    assert all("tracking.uri" not in r.data.params for r in children)
    storage = POSTGRES or f"sqlite:///{root / 'out' / 'optuna.db'}"
    assert parent.data.tags["optuna.storage"] == mask_url(storage)
    assert config_of(client, parent)["tracking"]["uri"] == masked
    # Each trial links its run's page on the server, without the password.
    scheme, rest = uri.split("://", 1)
    server = f"{scheme}://{rest.rsplit('@', 1)[-1]}".rstrip("/")
    for t in optuna.load_study(study_name=name, storage=storage).trials:
        assert t.user_attrs["mlflow_run_url"] == (
            f"{server}/#/experiments/{experiment.experiment_id}/runs/"
            f"{t.user_attrs['mlflow_run_id']}?workflowType=machine_learning")
    assert f"storage {mask_url(storage)}," in result.stdout


def test_sweep_writes_and_prints_no_password(swept, mlflow_server) -> None:
    root, name, uri, result = swept
    assert not in_text(result.stdout + result.stderr), result.describe()
    overrides = [p for p in hydra_files(root / "work") if p.name == "overrides.yaml"]
    assert len(overrides) == 2 and all("multirun" in str(p) for p in overrides)  # a job per trial
    for path in overrides:
        assert f"tracking.uri={mask_url(uri)}" in yaml.safe_load(path.read_text())
    (multirun,) = (root / "work").rglob("multirun.yaml")  # Hydra's multirun config, masked
    assert mask_url(uri) in multirun.read_text()
    checkpoints = sorted((root / "out" / "checkpoints").glob("trial-*/last.pt"))
    assert len(checkpoints) == 2
    assert load_checkpoint(checkpoints[0])["config"]["tracking"]["uri"] == mask_url(uri)
    assert (root / "out" / "report" / "trials.csv").exists()
    assert leaks(root, mlflow_server.root) == []
    storage = POSTGRES or f"sqlite:///{root / 'out' / 'optuna.db'}"
    study = optuna.load_study(study_name=name, storage=storage)
    attrs = [study.user_attrs, study._storage.get_study_system_attrs(study._study_id),
             *[(t.user_attrs, t.system_attrs, t.params) for t in study.trials]]
    assert not in_text(repr(attrs))


def test_training_run_writes_and_prints_no_password(mlflow_server, tmp_path) -> None:
    experiment = f"secrets-train-{uuid.uuid4().hex[:10]}"
    uri = mlflow_server.uri("trainer", PASSWORD)
    result = run("mcmc-train", ["device=cpu", "dataset=synthetic", "trainer.epochs=1",
                                "trainer.steps_per_epoch=20", "trainer.checkpoint_dir=ckpt",
                                f"tracking.uri={uri}", f"tracking.experiment={experiment}"],
                 tmp_path)
    assert result.returncode == 0, result.describe()
    client = mlflow_server.client()
    (found,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert found.info.status == "FINISHED"
    assert config_of(client, found)["tracking"]["uri"] == mask_url(uri)
    assert len(hydra_files(tmp_path)) == 3
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["config"]["tracking"]["uri"] == (
        mask_url(uri))
    assert not in_text(result.stdout + result.stderr), result.describe()
    assert leaks(tmp_path, mlflow_server.root) == []


def test_config_errors_show_passwords_as_stars(tmp_path) -> None:
    bad = run("mcmc-sweep", [*TINY,
                             f"hydra.sweeper.storage=postgresql:sweeper:{PASSWORD}@127.0.0.1/db",
                             f"hydra.sweeper.output_dir={tmp_path / 'out'}"], tmp_path / "sweep")
    assert bad.returncode == 2, bad.describe()
    assert bad.error_lines == ["error: hydra.sweeper.storage='postgresql:***@127.0.0.1/db' is not "
                               "allowed: expected null or an SQLAlchemy URL such as "
                               "sqlite:///optuna.db or postgresql://user@host/db"]
    unknown = run("mcmc-train", ["device=cpu", f"+tracking.api_token={PASSWORD}",
                                 f"tracking.nope=http://u:{PASSWORD}@127.0.0.1:1"],
                  tmp_path / "train")
    assert unknown.returncode == 2, unknown.describe()
    assert len(unknown.error_lines) == 1 and unknown.error_lines[0].startswith(
        "error: tracking.nope='http://u:***@127.0.0.1:1' is not allowed: expected a key of "
        "tracking: ")
    assert not in_text(bad.stderr + bad.stdout + unknown.stderr + unknown.stdout)
    assert leaks(tmp_path) == []


def test_a_sweep_that_cannot_reach_its_services_prints_no_password(tmp_path) -> None:
    """Nothing listens on port 1: the start fails (Hydra prints a failed job's overrides)."""
    storage = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/db"
    result = run("mcmc-sweep", [*TINY, f"hydra.sweeper.output_dir={tmp_path / 'out'}",
                                f"hydra.sweeper.storage={storage}",
                                f"tracking.uri=http://u:{PASSWORD}@127.0.0.1:1"], tmp_path)
    assert result.returncode != 0, result.describe()
    assert not in_text(result.stdout + result.stderr), result.describe()
    assert leaks(tmp_path) == []


def test_study_name_does_not_depend_on_passwords() -> None:
    def name(password: str) -> str:
        base = {"model": {"name": "mlp"}, "dataset": {"name": "digits"},
                "tracking": {"uri": f"http://u:{password}@h:5000"}}
        settings = McmcOptunaSweeperConf(storage=f"postgresql://u:{password}@h/db")
        return Sweep(TrainConfig(), base, {}, settings).study_name()

    assert name("one") == name("two")
