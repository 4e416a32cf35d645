"""MLflow tracking of training runs: params, per-epoch metrics, the resolved config, the model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcmc_core.trainers import Callback

if TYPE_CHECKING:
    from mcmc_core.config import TrackingConfig
    from mcmc_core.trainers import BaseTrainer

__all__ = ["DEFAULT_TRACKING_URI", "MLflowCallback", "flatten", "tracking_uri"]

#: MLflow 3 refuses the ./mlruns file store; an embedded SQLite store in the working directory.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RUN_ID_FILE = "mlflow_run_id"


def tracking_uri(cfg: TrackingConfig) -> str:
    """The configured tracking URI, or the embedded default."""
    return cfg.uri or DEFAULT_TRACKING_URI


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``, for MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class MLflowCallback(Callback):
    """Logs a trainer's run to MLflow.

    On start it opens a run (re-opening the same run when the trainer resumes from a checkpoint
    folder that recorded one), logs the flattened config as params and the resolved config as
    ``config.yaml``; each epoch it logs the metrics at ``step=epoch``; at the end it logs the
    ``final_*``/``best_*`` metrics and the model (``model/state_dict.pt`` and ``model/model.txt``).
    Call :meth:`close` in a ``finally`` block: a run that raised is marked FAILED.

    Args:
        tracking: where and under which experiment to log.
        config: the resolved run configuration (a plain nested dict).
    """

    def __init__(self, tracking: TrackingConfig, config: dict[str, Any]) -> None:
        self.tracking = tracking
        self.config = config
        self.run_id: str | None = None

    def _run_id_file(self, trainer: BaseTrainer) -> Path | None:
        path = trainer.checkpoint_path
        return path.parent / RUN_ID_FILE if path is not None else None

    def on_train_start(self, trainer: BaseTrainer) -> None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri(self.tracking))
        mlflow.set_experiment(self.tracking.experiment)
        id_file = self._run_id_file(trainer)
        previous = id_file.read_text().strip() if id_file and id_file.exists() else None
        if previous and trainer.epoch > 0:
            run = mlflow.start_run(run_id=previous)
        else:
            run = mlflow.start_run(run_name=self.tracking.run_name)
            mlflow.log_params({k: str(v) for k, v in flatten(self.config).items()})
            mlflow.log_dict(self.config, "config.yaml")
        self.run_id = run.info.run_id
        if id_file is not None:
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(self.run_id)

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "epoch"}, step=epoch)

    def on_train_end(self, trainer: BaseTrainer, metrics: dict[str, Any]) -> None:
        import mlflow
        import torch

        mlflow.log_metrics({f"final_{k}" if not k.startswith("best_") else k: float(v)
                            for k, v in metrics.items()})
        if self.tracking.log_model:
            with tempfile.TemporaryDirectory() as tmp:
                torch.save(trainer.model.state_dict(), Path(tmp) / "state_dict.pt")
                (Path(tmp) / "model.txt").write_text(repr(trainer.model))
                mlflow.log_artifacts(tmp, artifact_path="model")

    def close(self, failed: bool = False) -> None:
        """End the MLflow run (FAILED when ``failed``); safe to call twice."""
        import mlflow

        if self.run_id is not None and mlflow.active_run() is not None:
            mlflow.end_run(status="FAILED" if failed else "FINISHED")
        self.run_id = None
