"""``mcmc-train`` logs a whole run to MLflow's default embedded store in the working directory:
params, per-epoch metrics at step=epoch, final metrics, the resolved config and the model."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import yaml

from mcmc_core.trainers import load_checkpoint

ARGS = ["device=cpu", "dataset=synthetic", "trainer.epochs=2", "trainer.steps_per_epoch=20",
        "sampler.temperature=0.002", "trainer.checkpoint_dir=ckpt", "tracking.run_name=cli-e2e"]
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
                 "test_accuracy", "acceptance_rate", "current_temperature", "current_flip_ratio",
                 "steps_per_s",
                 "wall_time")
#: The trainer's names of the metrics logged under other names.
HISTORY_KEYS = {"current_temperature": "temperature", "current_flip_ratio": "flip_ratio"}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, cli):
    """One tracked run with no ``tracking.uri``: the store lands in its working directory."""
    return cli(ARGS, tmp_path_factory.mktemp("tracked")).ok()


@pytest.fixture(scope="module")
def checkpoint(tracked):
    return load_checkpoint(tracked.cwd / "ckpt" / "last.pt")


@pytest.fixture(scope="module")
def client(tracked):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tracked.cwd / 'mlflow.db'}")


@pytest.fixture(scope="module")
def run(client):
    experiment = client.get_experiment_by_name("mcmc-train")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_default_store_is_mlflow_db_in_working_directory(tracked, run) -> None:
    assert (tracked.cwd / "mlflow.db").is_file()
    artifacts = Path(urlparse(run.info.artifact_uri).path)
    assert artifacts.is_relative_to(tracked.cwd), artifacts


def test_run_finished_with_params(run) -> None:
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "cli-e2e"
    params = run.data.params
    assert params["sampler.temperature"] == "0.002"
    assert params["dataset.name"] == "synthetic"
    assert params["model.name"] == "mlp"
    assert params["schedule.name"] == "exponential"
    assert params["trainer.epochs"] == "2"
    assert params["trainer.steps_per_epoch"] == "20"
    # A few keys a user filters by; the rest of the config is in config.yaml.
    assert len(params) <= 15 and "tracking.uri" not in params


def test_run_id_is_recorded_next_to_the_checkpoint(tracked, run) -> None:
    assert (tracked.cwd / "ckpt" / "mlflow_run_id").read_text().strip() == run.info.run_id


def test_per_epoch_metrics_are_logged_at_step_epoch(client, run, checkpoint) -> None:
    history = checkpoint["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for key in EPOCH_METRICS:
        logged = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in logged] == [1, 2], key
        assert [m.value for m in logged] == pytest.approx([h[HISTORY_KEYS.get(key, key)]
                                                           for h in history]), key
    # No metric shares a name with a param or with MLflow's step.
    assert not {"temperature", "flip_ratio", "step", "epoch"} & set(run.data.metrics)
    steps = [m.value for m in client.get_metric_history(run.info.run_id, "n_steps")]
    assert steps == [20, 40]
    temperatures = [m.value for m in client.get_metric_history(run.info.run_id,
                                                                "current_temperature")]
    assert temperatures[1] < temperatures[0] <= 0.002


def test_final_test_accuracy_is_logged_and_printed_last(tracked, run, checkpoint) -> None:
    metrics = run.data.metrics
    last = checkpoint["history"][-1]
    assert metrics["final_epoch"] == 2
    # The latest value of each epoch metric is the last epoch's: no final_* copy of it.
    assert metrics["test_accuracy"] == pytest.approx(last["test_accuracy"])
    assert metrics["val_accuracy"] == pytest.approx(last["val_accuracy"])
    assert not {k for k in metrics if k.startswith("final_")} - {"final_epoch"}
    assert "best_test_accuracy" in metrics and "best_epoch" in metrics
    assert tracked.final_test_accuracy() == pytest.approx(last["test_accuracy"], abs=5e-5)
    assert len(tracked.epoch_lines()) == 2


def test_resolved_config_is_an_artifact(client, run, checkpoint, tmp_path) -> None:
    path = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    config = yaml.safe_load(Path(path).read_text())
    assert config["sampler"]["temperature"] == 0.002
    assert config["dataset"]["name"] == "synthetic"
    assert config["trainer"]["epochs"] == 2
    assert config["tracking"]["run_name"] == "cli-e2e"
    assert config["tracking"]["uri"] is None  # not a param: read here
    assert config == checkpoint["config"]


def test_final_model_is_an_artifact(client, run, checkpoint, tmp_path) -> None:
    names = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert names == {"model/state_dict.pt", "model/model.txt"}
    folder = Path(client.download_artifacts(run.info.run_id, "model", str(tmp_path)))
    state = torch.load(folder / "state_dict.pt", map_location="cpu")
    assert state.keys() == checkpoint["model"].keys()
    for key, tensor in checkpoint["model"].items():
        assert torch.equal(state[key], tensor), key
    assert "[Binary]Linear" in (folder / "model.txt").read_text()
