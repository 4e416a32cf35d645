"""One trial's parts: its sampled values applied onto the composed config, its attempt's
records, and how it ends (failed, interrupted, complete). :mod:`sweeps.workers.trial_runner` runs
trials with them.

A trial continues from its checkpoint folder (keyed by the first trial of its retry chain), so a
trial killed with its process and retried picks up at its last finished epoch.
"""

from __future__ import annotations

import functools
import math
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from mcmc_core.config import TrainConfig
from mcmc_core.data import DataSplits, load_dataset
from mcmc_core.secrets import mask_config, mask_text
from sweeps.study.batch_writes import set_user_attrs
from sweeps.study.hosts import host_name
from sweeps.workers.job_folders import JobFolders
from sweeps.study.space import SearchSpace
from sweeps.study.trials import ATTR_ERROR, ATTR_HOST, ATTR_PID, ATTR_SESSION, requeue, retry_key

__all__ = [
    "ATTR_CONFIG",
    "ATTR_RUN_URL",
    "SYSTEM_CONFIG",
    "Interrupted",
    "TrialContext",
    "attempt_attrs",
    "scheduler_placement",
    "best_value",
    "check_finite",
    "fail",
    "interrupt",
    "link_tags",
    "record_final",
    "record_job",
    "run_tags",
    "start_attempts",
    "stored_config",
    "trial_config",
]


class Interrupted(Exception):
    """The sweep was asked to stop (SIGINT): the trial is re-queued, not failed."""


def check_finite(metrics: dict[str, float], metric: str, epoch: int) -> None:
    """Raise :class:`FloatingPointError` if the epoch's energy, training loss or ``metric`` is not
    finite: the chain diverged."""
    for key in ("energy", "train_loss", metric):
        if key in metrics and not math.isfinite(metrics[key]):
            raise FloatingPointError(f"{key}={metrics[key]} at epoch {epoch}: the chain diverged")


def link_tags(run_id: str | None, previous_run: str | None) -> dict[str, Any]:
    """The tags that link a retry's new run to the run of the attempt it replaces (none for the
    same run, continued)."""
    if previous_run and previous_run != run_id:
        return {"optuna.retry_of_run_id": previous_run}
    return {}


@dataclass
class TrialContext:
    """What a worker needs to run trials of one study."""

    study_name: str
    base_config: dict[str, Any]
    space: SearchSpace
    metric: str
    output_dir: Path
    session: str
    parent_run_id: str | None
    device: str
    stop: Callable[[], bool]
    jobs: JobFolders | None = None  #: ``mcmc-train -m``: Hydra's job folder of each trial
    _data: dict[str, DataSplits] = field(default_factory=dict)

    def data(self, cfg: TrainConfig) -> DataSplits:
        """The trial's dataset, loaded once per worker for each distinct dataset config."""
        key = repr(cfg.dataset)
        if key not in self._data:
            self._data[key] = load_dataset(cfg.dataset)
        return self._data[key]


@functools.lru_cache(maxsize=1)
def train_schema() -> DictConfig:
    """``TrainConfig``'s structured schema, made once per process (about 20 ms each time: a
    population of hundreds of trials merges every trial's config onto it; merging copies it)."""
    return OmegaConf.structured(TrainConfig)


def trial_config(ctx: TrialContext, values: dict[str, Any], key: int,
                 number: int) -> tuple[TrainConfig, dict[str, Any]]:
    """The validated training config of a trial and its resolved plain-dict form."""
    cfg: DictConfig = ctx.space.apply(OmegaConf.create(ctx.base_config), values)
    cfg.trainer.checkpoint_dir = str(ctx.output_dir / "checkpoints" / f"trial-{key:04d}")
    cfg.trainer.resume = True
    cfg.trainer.verbose = False
    cfg.device = ctx.device
    cfg.tracking.experiment = ctx.study_name
    cfg.tracking.run_name = f"trial-{number:04d}"
    merged = OmegaConf.merge(train_schema(), cfg)
    train_cfg: TrainConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    resolved: dict[str, Any] = OmegaConf.to_container(merged, resolve=True)  # type: ignore
    return train_cfg.validate(), resolved


def record_job(ctx: TrialContext, trial: optuna.Trial, values: dict[str, Any],
               resolved: dict[str, Any]) -> None:
    """Write the trial's Hydra job folder (:mod:`sweeps.workers.job_folders`), when it has one."""
    if ctx.jobs is not None:
        ctx.jobs.write(trial.number, ctx.space.by_key(values), resolved)


def best_value(history: list[dict[str, float]], metric: str,
               direction: optuna.study.StudyDirection) -> float:
    """The trial's value: its best epoch by ``metric`` (the trainer keeps that epoch's weights)."""
    values = [float(m[metric]) for m in history]
    return max(values) if direction == optuna.study.StudyDirection.MAXIMIZE else min(values)


def attempt_attrs(ctx: TrialContext) -> dict[str, Any]:
    """The user attributes that record an attempt's host, process and launch (and, on a
    cluster, its SLURM job and the GPUs its scheduler gave it)."""
    placed = {k: v for k, v in scheduler_placement().items() if v is not None}
    return {ATTR_HOST: host_name(), ATTR_PID: os.getpid(), ATTR_SESSION: ctx.session, **placed}


def scheduler_placement() -> dict[str, str | None]:
    """Where a cluster engine placed this process: its SLURM job (``<job>_<task>`` in an
    array) and the GPUs it was given (``CUDA_VISIBLE_DEVICES``); None where unset."""
    job = os.environ.get("SLURM_JOB_ID")
    if job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return {"slurm_job": job, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def start_attempts(study: optuna.Study, trials: list[optuna.Trial],
                   ctx: TrialContext) -> list[tuple[int, str | None]]:
    """Record this attempt's host, process and launch on every trial (in one transaction);
    returns each one's retry key (its checkpoint folder) and the MLflow run of the attempt it
    retries (None for a first one), from one read of the study."""
    stored = {t._trial_id: t for t in study.get_trials(deepcopy=False)}
    set_user_attrs([(t, attempt_attrs(ctx)) for t in trials])
    return [(retry_key(stored[t._trial_id]), stored[t._trial_id].user_attrs.get("mlflow_run_id"))
            for t in trials]


def run_tags(ctx: TrialContext, trial: optuna.Trial, key: int) -> dict[str, Any]:
    """The tags of a trial's MLflow run while it runs."""
    tags: dict[str, Any] = {"optuna.study": ctx.study_name, "optuna.trial_number": trial.number,
                            "optuna.state": "RUNNING"}
    if key != trial.number:
        tags["optuna.retry_of"] = key
    return tags


#: User attribute of a trial: its MLflow run's page on a tracking server, else the run's id.
ATTR_RUN_URL = "mlflow_run_url"
#: System attribute of a complete trial: its resolved training config, secrets masked (the
#: report writes the best trial's as a config ``mcmc-train`` runs, :mod:`sweeps.report.best`).
#: Not a user attribute: optuna-dashboard shows those on one line each (a config's is thousands
#: of pixels wide); the config is also each run's ``config.yaml`` in MLflow.
SYSTEM_CONFIG = "mcmc_sweeps:config"
#: The user attribute that held the config in studies of earlier versions (read, not written).
ATTR_CONFIG = "config"


def record_final(trial: optuna.Trial, final: dict[str, Any],
                 resolved: dict[str, Any] | None = None) -> None:
    """Keep a complete trial's last and best epoch's metrics as user attributes
    (``test_accuracy`` is the last epoch's, ``best_test_accuracy`` the best epoch's, whose
    ``best_val_accuracy`` the value is for ``hydra.sweeper.metric=val_accuracy``), and its
    ``resolved`` config as :data:`SYSTEM_CONFIG`."""
    for k in ("test_accuracy", "test_loss", "best_epoch", "best_val_accuracy",
              "best_test_accuracy"):
        if k in final:
            trial.set_user_attr(k, float(final[k]))
    if resolved is not None:
        trial.storage.set_trial_system_attr(trial._trial_id, SYSTEM_CONFIG,
                                            mask_config(resolved))


def stored_config(trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
    """A complete trial's resolved config as :func:`record_final` kept it (or, in a study of
    an earlier version, as its ``config`` user attribute); None if neither."""
    config = trial.system_attrs.get(SYSTEM_CONFIG)
    return config if config is not None else trial.user_attrs.get(ATTR_CONFIG)


def interrupt(study: optuna.Study, trial: optuna.Trial) -> tuple[str, dict[str, Any]]:
    """Fail an interrupted trial and queue its retry; returns its MLflow run's status and tags."""
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=TrialState.FAIL)
    requeue(study, study._storage.get_trial(trial._trial_id))
    return "KILLED", {"optuna.state": "INTERRUPTED"}


def fail(study: optuna.Study, trial: optuna.Trial,
         err: BaseException) -> tuple[TrialState, str, dict[str, Any]]:
    """Fail ``trial`` with ``err`` kept as its ``error`` (call in the ``except`` block: the
    traceback is kept too). Returns its state and its MLflow run's status and tags.

    If another process failed the trial meanwhile, taking it for dead (stale heartbeat), and
    queued its retry, this attempt just stops, leaving the stored trial alone."""
    stored = study._storage.get_trial(trial._trial_id).state
    if stored.is_finished():
        return stored, "KILLED", {"optuna.state": "TAKEN_OVER"}
    message = mask_text(f"{type(err).__name__}: {err}".splitlines()[0])[:500]
    trial.set_user_attr(ATTR_ERROR, message)
    trial.set_user_attr("traceback", mask_text(traceback.format_exc()[-4000:]))
    study.tell(trial, state=TrialState.FAIL)
    return TrialState.FAIL, "FAILED", {"optuna.state": "FAIL", "error": message}
