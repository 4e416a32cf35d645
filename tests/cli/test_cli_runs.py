"""``mcmc-train`` runs the gradient baseline and a conv net on the offline ``digits`` data, with
tracking switched off."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mcmc_core.trainers import load_checkpoint

COMMON = ["device=cpu", "dataset=digits", "tracking=none", "trainer.checkpoint_dir=ckpt"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cli_many):
    """Both runs at once; the subprocesses see no network (their proxy is a closed port)."""
    root = tmp_path_factory.mktemp("runs")
    ste, cnn = cli_many([
        ([*COMMON, "trainer=ste", "trainer.epochs=2", "trainer.lr=0.01"], root / "ste"),
        ([*COMMON, "model=cnn", "trainer.epochs=1", "trainer.steps_per_epoch=5"], root / "cnn"),
    ])
    return SimpleNamespace(ste=ste.ok(), cnn=cnn.ok())


def test_ste_baseline_runs_on_digits(runs) -> None:
    state = load_checkpoint(runs.ste.cwd / "ckpt" / "last.pt")
    assert state["trainer"] == "ste"
    assert state["config"]["trainer"]["name"] == "ste"
    assert state["config"]["dataset"]["name"] == "digits"
    lines = runs.ste.epoch_lines()
    assert [line.split("|")[0].strip() for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert not any("| T " in line or "| accept " in line for line in lines)  # no MCMC fields
    # 10 classes: a trained baseline is far above chance after two epochs.
    assert runs.ste.final_test_accuracy() > 0.3


def test_cnn_runs_on_digits(runs) -> None:
    state = load_checkpoint(runs.cnn.cwd / "ckpt" / "last.pt")
    assert state["trainer"] == "mcmc"
    assert state["config"]["model"]["name"] == "cnn"
    assert state["config"]["dataset"]["name"] == "digits"
    assert state["step"] == 5
    assert any(t.dim() == 4 for t in state["model"].values())  # conv kernels
    lines = runs.cnn.epoch_lines()
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1") and "| T " in lines[0]
    assert 0.0 <= runs.cnn.final_test_accuracy() <= 1.0


@pytest.mark.parametrize("name", ["ste", "cnn"])
def test_tracking_none_writes_no_mlflow_store(runs, name: str) -> None:
    cwd = getattr(runs, name).cwd
    assert (cwd / "ckpt" / "last.pt").is_file()
    assert not (cwd / "mlflow.db").exists()
    assert not (cwd / "mlruns").exists()
    assert not (cwd / "ckpt" / "mlflow_run_id").exists()
