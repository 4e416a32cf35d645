"""MLflow tracking of training runs: params, per-epoch metrics, the resolved config, the model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcmc_core.trainers import Callback

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from mcmc_core.config import TrackingConfig
    from mcmc_core.trainers import BaseTrainer

__all__ = [
    "DEFAULT_TRACKING_URI",
    "MLflowCallback",
    "close_killed_run",
    "end_run",
    "flatten",
    "open_parent_run",
    "run_status",
    "tracking_uri",
]

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
        parent_run_id: open the run as a child of this run (a sweep's trial).
        tags: tags set on the run, also when it is re-opened.
        params: extra params logged on a new run (a trial's sampled values).
    """

    def __init__(self, tracking: TrackingConfig, config: dict[str, Any], *,
                 parent_run_id: str | None = None, tags: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None) -> None:
        self.tracking = tracking
        self.config = config
        self.parent_run_id = parent_run_id
        self.tags = dict(tags or {})
        self.params = dict(params or {})
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
            run = mlflow.start_run(run_name=self.tracking.run_name,
                                   parent_run_id=self.parent_run_id)
            flat = {k: str(v) for k, v in flatten(self.config).items()}
            flat.update({k: str(v) for k, v in self.params.items()})
            mlflow.log_params(flat)
            mlflow.log_dict(self.config, "config.yaml")
        if self.tags:
            mlflow.set_tags({k: str(v) for k, v in self.tags.items()})
        self.run_id = run.info.run_id
        if id_file is not None:
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(self.run_id)

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "epoch"}, step=epoch)

    def on_train_end(self, trainer: BaseTrainer, metrics: dict[str, Any]) -> None:
        import mlflow

        mlflow.log_metrics({f"final_{k}" if not k.startswith("best_") else k: float(v)
                            for k, v in metrics.items()})
        self.log_model(trainer)

    def log_model(self, trainer: BaseTrainer) -> None:
        """Log the trainer's current model (``model/state_dict.pt``, ``model/model.txt``)."""
        import mlflow
        import torch

        if not self.tracking.log_model or self.run_id is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(trainer.model.state_dict(), Path(tmp) / "state_dict.pt")
            (Path(tmp) / "model.txt").write_text(repr(trainer.model))
            mlflow.log_artifacts(tmp, artifact_path="model")

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the open run (no-op when none is open)."""
        import mlflow

        if self.run_id is not None and mlflow.active_run() is not None:
            mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def close(self, failed: bool = False, *, status: str | None = None) -> None:
        """End the MLflow run: ``status`` (FINISHED, FAILED, KILLED), else FAILED when ``failed``,
        else FINISHED. Safe to call twice."""
        import mlflow

        if self.run_id is not None and mlflow.active_run() is not None:
            mlflow.end_run(status=status or ("FAILED" if failed else "FINISHED"))
        self.run_id = None


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def open_parent_run(uri: str, experiment: str, run_id: str | None, *,
                    run_name: str, tags: dict[str, Any]) -> str:
    """Re-open the sweep's parent run ``run_id`` (status RUNNING again), or create it (and the
    experiment) when ``run_id`` is None or gone. Returns the run id."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    if run_id is not None:
        try:
            client.update_run(run_id, status="RUNNING")
            return run_id
        except MlflowException:
            pass  # deleted or in another store: make a new one
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    return run.info.run_id


def end_run(uri: str, run_id: str, status: str, tags: dict[str, Any] | None = None) -> None:
    """Set ``tags`` on a run and end it with ``status`` (FINISHED, FAILED or KILLED)."""
    client = _client(uri)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, str(value))
    client.set_terminated(run_id, status=status)


def run_status(uri: str, run_id: str) -> str:
    """The status of a run (RUNNING, FINISHED, FAILED, KILLED)."""
    return _client(uri).get_run(run_id).info.status


def close_killed_run(uri: str | None, trial: FrozenTrial) -> None:
    """A trial's process died: end its MLflow run as KILLED (its retry re-opens it when it
    continues from the checkpoint, or links a new run to it)."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if uri is None or run_id is None:
        return
    try:
        if run_status(uri, run_id) == "RUNNING":
            end_run(uri, run_id, "KILLED", {"optuna.state": "KILLED", "optuna.retried": "true"})
    except Exception:  # the store may be unreachable; the retry will fix the run's status
        pass
