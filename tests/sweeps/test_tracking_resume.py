"""A run re-opened for a resumed trial gets the epochs its checkpoint holds but MLflow lacks
(a kill between writing an epoch's checkpoint and logging it), each once; real SQLite store."""

from __future__ import annotations

from pathlib import Path

from mcmc_core.config import TrackingConfig
from sweeps.tracking.client_run import ClientRun


def _epoch(n: int) -> dict[str, float]:
    return {"epoch": n, "val_accuracy": 0.5 + n / 100, "val_loss": 1.0 / n, "energy": 2.0 / n}


def test_a_reopened_run_gets_the_checkpoints_epochs_it_lacks_once(tmp_path: Path) -> None:
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="e")
    id_file = tmp_path / "run_id"
    run = ClientRun(tracking, {"seed": 0})
    run_id = run.open(id_file, resume=False)
    for n in (1, 3):  # epoch 2 was checkpointed, then the process died before logging it
        run.log_metrics({k: v for k, v in _epoch(n).items() if k != "epoch"}, step=n)
    run.close("KILLED")

    again = ClientRun(tracking, {"seed": 0})
    assert again.open(id_file, resume=True, history=[_epoch(n) for n in (1, 2, 3)]) == run_id
    client = again.client
    # Every metric has each epoch exactly once, epoch 2 with the checkpoint's values.
    for name in ("val_accuracy", "val_loss", "energy"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, name))
        assert steps == [1, 2, 3], (name, steps)
    by_step = {m.step: m.value for m in client.get_metric_history(run_id, "val_loss")}
    assert by_step[2] == 0.5
    # A new run (no resume) logs no history.
    fresh = ClientRun(tracking, {"seed": 0})
    new_id = fresh.open(tmp_path / "other_id", resume=False, history=[_epoch(1)])
    assert client.get_metric_history(new_id, "val_loss") == []
