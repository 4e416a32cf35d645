"""``mcmc-train trainer.resume=true`` continues a checkpointed run: same weights as an
uninterrupted run, and the same MLflow run (store given by ``tracking.uri``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mcmc_core.trainers import load_checkpoint

COMMON = ["device=cpu", "dataset=synthetic", "trainer.steps_per_epoch=20"]
COMPARED = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
            "test_accuracy", "acceptance_rate", "temperature", "flip_ratio")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cli, cli_many):
    """2 epochs then a resume to 4, tracked to an explicit store; an uninterrupted 4-epoch run."""
    root = tmp_path_factory.mktemp("resume")
    (root / "store").mkdir()
    uri = f"sqlite:///{root / 'store' / 'runs.db'}"
    chain = [*COMMON, f"trainer.checkpoint_dir={root / 'ckpt'}", f"tracking.uri={uri}"]
    first, full = cli_many([
        ([*chain, "trainer.epochs=2"], root / "work"),
        ([*COMMON, "trainer.epochs=4", f"trainer.checkpoint_dir={root / 'full'}", "tracking=none"],
         root / "other"),
    ])
    first.ok(), full.ok()
    after_first = load_checkpoint(root / "ckpt" / "last.pt")
    resumed = cli([*chain, "trainer.epochs=4", "trainer.resume=true"], root / "work").ok()
    return SimpleNamespace(
        root=root, uri=uri, first=first, full=full, resumed=resumed, after_first=after_first,
        resumed_state=load_checkpoint(root / "ckpt" / "last.pt"),
        full_state=load_checkpoint(root / "full" / "last.pt"),
    )


def test_resume_continues_from_epoch_3(runs) -> None:
    assert runs.after_first["epoch"] == 2
    assert [line.split("|")[0].strip() for line in runs.first.epoch_lines()] == [
        "epoch 1/2", "epoch 2/2"]
    assert f"resumed from {runs.root / 'ckpt' / 'last.pt'} at epoch 2" in runs.resumed.stdout
    assert [line.split("|")[0].strip() for line in runs.resumed.epoch_lines()] == [
        "epoch 3/4", "epoch 4/4"]


def test_resumed_weights_equal_an_uninterrupted_run(runs) -> None:
    resumed, full = runs.resumed_state, runs.full_state
    assert resumed["epoch"] == full["epoch"] == 4
    assert resumed["step"] == full["step"] == 80
    assert resumed["model"].keys() == full["model"].keys()
    for key, tensor in full["model"].items():
        assert torch.equal(resumed["model"][key], tensor), key
    # The weights after 2 epochs differ from the final ones: the comparison above is not vacuous.
    assert any(not torch.equal(runs.after_first["model"][k], t) for k, t in full["model"].items())
    for got, want in zip(resumed["history"], full["history"], strict=True):
        assert {k: got[k] for k in COMPARED} == {k: want[k] for k in COMPARED}
    assert runs.resumed.final_test_accuracy() == runs.full.final_test_accuracy()


def test_resume_reopens_the_same_mlflow_run(runs) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=runs.uri)
    experiment = client.get_experiment_by_name("mcmc-train")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 1
    run = found[0]
    assert run.info.status == "FINISHED"
    assert (runs.root / "ckpt" / "mlflow_run_id").read_text().strip() == run.info.run_id
    for key, metric in (("test_accuracy",) * 2, ("val_loss",) * 2,
                        ("temperature", "current_temperature")):
        logged = sorted(client.get_metric_history(run.info.run_id, metric),
                        key=lambda m: m.step)
        assert [m.step for m in logged] == [1, 2, 3, 4], key
        want = [h[key] for h in runs.full_state["history"]]
        assert [m.value for m in logged] == pytest.approx(want), key
    assert run.data.metrics["final_epoch"] == 4


def test_tracking_uri_overrides_the_default_store(runs) -> None:
    assert (runs.root / "store" / "runs.db").is_file()
    assert not (runs.root / "work" / "mlflow.db").exists()


def test_tracking_none_writes_no_store(runs) -> None:
    assert not (runs.root / "other" / "mlflow.db").exists()
    assert not (runs.root / "other" / "mlruns").exists()
