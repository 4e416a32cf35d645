"""A trial's MLflow run through the client, by its id (:class:`ClientRun`): several open in
one process (a population's trials), re-opened when a trial resumes. Secrets are masked as in
:mod:`sweeps.tracking.mlflow_run`."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcmc_core.secrets import mask_config
from mcmc_core.trainers import Callback
from sweeps.tracking.mlflow_run import (
    FIRST_METRICS,
    RUN_ID_FILE,
    closing_metrics,
    epoch_metrics,
    masked_tags,
    mlflow_client,
    name_pruned,
    save_model_files,
    tracking_uri,
    write_run_id,
)
from sweeps.tracking.run_params import run_params, searched_metrics
from sweeps.tracking.shield import shielded
from sweeps.tracking.ui_links import run_link

if TYPE_CHECKING:
    from torch import nn

    from mcmc_core.config import TrackingConfig
    from mcmc_core.trainers import BaseTrainer

__all__ = ["ClientRun", "MLflowCallback", "context_tags"]


class ClientRun:
    """A run logged through :class:`mlflow.MlflowClient` by its id, never the fluent active run:
    one process may keep several open at once (a population's trials). :class:`MLflowCallback`
    logs a trainer's run through one.

    Args:
        tracking: the run's tracking settings (URI, experiment, run name, ``log_model``).
        config: the resolved run configuration (``config.yaml`` of a new run, and its
            :data:`~sweeps.tracking.run_params.KEY_PARAMS` params).
        parent_run_id: open a new run as a child of this run.
        tags: tags set on the run, also when it is re-opened.
        params: a trial's sampled values by config key: params (short numbers) of a new run,
            and metrics of the same names logged with its first epoch.
        widths: the linear float search ranges' widths by key (the params' precision).
        logs: the keys searched on a log scale (also logged as ``log10 <key>`` metrics).
        objective: the epoch metric logged first as ``objective`` (``hydra.sweeper.metric``).
    """

    def __init__(self, tracking: TrackingConfig, config: dict[str, Any], *,
                 parent_run_id: str | None = None, tags: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None, widths: dict[str, float] | None = None,
                 logs: frozenset[str] = frozenset(), objective: str | None = None) -> None:
        self.tracking, self.config, self.parent_run_id = tracking, config, parent_run_id
        self.tags, self.params = dict(tags or {}), dict(params or {})
        self.widths, self.logs, self.objective = dict(widths or {}), logs, objective
        self._client: Any = None
        self._last_ms = 0  # each batch's timestamp is later than the previous one's
        self._searched_due = False  # a new run: its searched values go with its first epoch
        self.run_id: str | None = None
        self.run_name: str | None = None  #: known once this process created the run
        self.experiment_id: str | None = None

    @property
    def client(self) -> Any:
        """The ``MlflowClient``, made on first use (it creates the store: not before work)."""
        if self._client is None:
            self._client = mlflow_client(tracking_uri(self.tracking))
        return self._client

    @shielded
    def open(self, id_file: Path | None, resume: bool,
             history: list[dict[str, float]] | None = None) -> str:
        """Re-open the run recorded in ``id_file`` when ``resume`` (the trial continues from a
        checkpoint), else create one; record its id in ``id_file``. A re-opened run gets the
        epochs of the checkpoint's ``history`` it lacks (a process killed between writing an
        epoch's checkpoint and logging it). Returns the run id."""
        from mlflow.entities import Param
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        previous = id_file.read_text().strip() if id_file and id_file.exists() else None
        if previous and resume:
            self.client.update_run(previous, status="RUNNING")
            self.run_id = previous
            self.experiment_id = self.client.get_run(previous).info.experiment_id
            self._log_missing_epochs(history or [])
            self.set_tags(self.tags)
        else:
            name = self.tracking.experiment
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
            system = {MLFLOW_PARENT_RUN_ID: self.parent_run_id} if self.parent_run_id else {}
            # The run's tags with its creation, its params in one batch: three requests.
            run = self.client.create_run(exp_id, run_name=self.tracking.run_name, tags={
                **context_tags(), **system, **masked_tags(self.tags)})
            self.run_id, self.run_name = run.info.run_id, run.info.run_name
            self.experiment_id, self._searched_due = exp_id, True
            params = run_params(self.config, self.params, self.widths)
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])
            self.client.log_dict(self.run_id, mask_config(self.config), "config.yaml")
        if id_file is not None:
            write_run_id(id_file, self.run_id)
        return self.run_id

    @property
    def link(self) -> str | None:
        """The open run's page in the UI (:func:`run_link`), else its id."""
        if self.run_id is None or self.experiment_id is None:
            return self.run_id
        return run_link(tracking_uri(self.tracking), self.experiment_id, self.run_id)

    def _log_missing_epochs(self, history: list[dict[str, float]]) -> None:
        if not history:
            return
        first = next(k for k in FIRST_METRICS if k in history[0])
        logged = {m.step for m in self.client.get_metric_history(self.run_id, first)}
        for metrics in history:
            if int(metrics["epoch"]) not in logged:
                self.log_epoch(metrics)

    def log_epoch(self, metrics: dict[str, float], epoch: int | None = None) -> None:
        """Log an epoch's metrics at ``step=epoch`` (default: ``metrics["epoch"]``;
        :func:`epoch_metrics`, ``objective`` first); with the run's first epoch, the searched
        values as metrics (step 0)."""
        epoch = int(metrics["epoch"]) if epoch is None else epoch
        logged = epoch_metrics(metrics, self.objective)
        steps = dict.fromkeys(logged, epoch)
        if self.params and (epoch == 1 or self._searched_due):
            self._searched_due = False
            first = dict(list(logged.items())[:1])  # what MLflow's compare view colours by
            searched = searched_metrics(self.params, self.logs)
            logged = {**first, **searched, **logged}
            steps.update(dict.fromkeys(searched, 0))
        self._log(logged, steps)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Log ``metrics`` at ``step`` (one request)."""
        self._log(metrics, dict.fromkeys(metrics, step))

    @shielded
    def _log(self, metrics: dict[str, float], steps: dict[str, int]) -> None:
        import time

        from mlflow.entities import Metric

        if self.run_id is None or not metrics:
            return
        # Later than the last batch: a value logged at a step already logged supersedes it.
        now = self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, steps[k])
                                                    for k, v in metrics.items()])

    @shielded
    def log_model(self, model: nn.Module) -> None:
        """Log ``model`` as ``model/state_dict.pt`` and ``model/model.txt``."""
        if not self.tracking.log_model or self.run_id is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_model_files(model, Path(tmp))
            self.client.log_artifacts(self.run_id, tmp, artifact_path="model")

    @shielded
    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the open run (no-op when none is open); ``optuna.state=PRUNED`` also
        renames it (:func:`name_pruned`)."""
        from mlflow.entities import RunTag

        if self.run_id is not None and tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, v)
                                                     for k, v in masked_tags(tags).items()])
            self.run_name = name_pruned(self.client, self.run_id, tags, self.run_name)

    @shielded
    def close(self, status: str) -> None:
        """End the run with ``status`` (FINISHED, FAILED, KILLED). Safe to call twice."""
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)
        self.run_id = None


@functools.lru_cache(maxsize=1)
def context_tags() -> dict[str, str]:
    """MLflow's tags of this process's context (source, user, git commit...): the same for
    every run it creates, so resolved once (a few ms each time)."""
    from mlflow.tracking.context.registry import resolve_tags

    return resolve_tags({})


class MLflowCallback(Callback):
    """Logs a trainer's run to MLflow, through a :class:`~sweeps.tracking.client_run.ClientRun`.

    On start it opens a run (re-opening the same run when the trainer resumes from a checkpoint
    folder that recorded one), logs a few config keys as params
    (:data:`~sweeps.tracking.run_params.KEY_PARAMS`) and the resolved config as ``config.yaml``;
    each epoch it logs the metrics at ``step=epoch``; at the end it logs the ``best_*`` and
    ``final_epoch`` metrics and the model (``model/state_dict.pt`` and ``model/model.txt``).
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
        self.run = ClientRun(tracking, config, parent_run_id=parent_run_id, tags=tags,
                             params=params)

    @property
    def run_id(self) -> str | None:
        """The open run's id (None before the start and after :meth:`close`)."""
        return self.run.run_id

    def on_train_start(self, trainer: BaseTrainer) -> None:
        path = trainer.checkpoint_path
        self.run.open(path.parent / RUN_ID_FILE if path is not None else None,
                      resume=trainer.epoch > 0, history=trainer.history)

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        self.run.log_epoch(metrics, epoch)

    def on_train_end(self, trainer: BaseTrainer, metrics: dict[str, Any]) -> None:
        self.run.log_metrics(closing_metrics(metrics))
        self.log_model(trainer)

    def log_model(self, trainer: BaseTrainer) -> None:
        """Log the trainer's current model (``model/state_dict.pt``, ``model/model.txt``)."""
        self.run.log_model(trainer.model)

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the open run (no-op when none is open)."""
        self.run.set_tags(tags)

    def close(self, failed: bool = False, *, status: str | None = None) -> None:
        """End the MLflow run: ``status`` (FINISHED, FAILED, KILLED), else FAILED when ``failed``,
        else FINISHED. Safe to call twice."""
        self.run.close(status or ("FAILED" if failed else "FINISHED"))
