"""The typed configuration of a sweep: a training config plus a search space and study settings.

:class:`SweepConfig` is the Hydra schema of ``conf/sweep.yaml``. It extends
:class:`~mcmc_core.config.TrainConfig`, so every ``mcmc-train`` key works in a sweep too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcmc_core._validation import ConfigError, check, check_choice
from mcmc_core.config import TrainConfig

__all__ = [
    "DIRECTIONS",
    "PARAM_TYPES",
    "PRUNERS",
    "SAMPLERS",
    "ComposedSweepConfig",
    "ParamSpec",
    "StudyConfig",
    "SweepConfig",
    "register_sweep_configs",
    "typed_config",
]

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("median", "hyperband", "successive_halving", "wilcoxon", "none")
DIRECTIONS = ("maximize", "minimize")
PARAM_TYPES = ("float", "int", "categorical")
#: Per-epoch metrics a study may optimise (test metrics are recorded, never optimised).
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")


@dataclass
class ParamSpec:
    """One search-space entry: which config key it sets and its distribution.

    Args:
        key: dotted config key (``sampler.temperature``), or a config group name (``model``)
            whose ``choices`` are that group's options.
        type: ``float``, ``int`` or ``categorical``.
        low / high: bounds of ``float`` and ``int`` (inclusive).
        log: sample on a log scale.
        step: discretisation step (``float`` and ``int``).
        choices: the options of ``categorical``.
    """

    key: str = "???"
    type: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    def errors(self, prefix: str) -> list[str]:
        errors: list[str] = []
        check_choice(errors, f"{prefix}.type", self.type, PARAM_TYPES)
        if self.type in ("float", "int"):
            bounded = self.low is not None and self.high is not None
            check(errors, bounded and self.low <= self.high, f"{prefix}.low/high",
                  [self.low, self.high], "numbers with low <= high")
            if bounded and self.log:
                check(errors, self.low > 0, f"{prefix}.low", self.low, "> 0 on a log scale")
                check(errors, self.step is None, f"{prefix}.step", self.step,
                      "null when log is true")
            check(errors, self.step is None or self.step > 0, f"{prefix}.step", self.step,
                  "null or > 0")
        if self.type == "categorical":
            check(errors, bool(self.choices), f"{prefix}.choices", self.choices,
                  "a non-empty list")
        return errors


@dataclass
class StudyConfig:
    """How the study runs.

    Args:
        name: Optuna study and MLflow experiment name; null derives one from the config
            (``<model>-<dataset>-<hash of the training config and search space>``), so the same
            command resumes the same study.
        metric: per-epoch metric reported to Optuna and optimised (validation, never test).
        direction: ``maximize`` or ``minimize``.
        sampler: ``tpe``, ``random``, ``cmaes``, ``gp`` or ``qmc``; seeded by ``seed``.
        pruner: ``median``, ``hyperband``, ``successive_halving``, ``wilcoxon`` or ``none``.
        n_trials: finished (complete or pruned) trials the study holds when the sweep ends.
        timeout: seconds after which no new trial starts (null: no limit).
        workers: worker processes on this machine.
        storage: Optuna storage URL; null = ``sqlite:///<output_dir>/optuna.db``.
        output_dir: folder for the storage, trial checkpoints and the report;
            null = ``outputs/sweeps/<name>``.
        max_failures: failed trials (in this launch) that end the sweep early.
        max_retries: how often a trial killed with its process is retried from its checkpoint.
        gpus: GPU indices the workers are pinned to, round robin (null: all visible GPUs).
        heartbeat_interval / grace_period: seconds between trial heartbeats, and without one
            before a RUNNING trial of a dead process counts as stale and is retried.
        seed: seed of the Optuna sampler.
        population: trials a worker runs together as one batched population of chains
            (:mod:`sweeps.population`); 1 runs each trial alone. Above 1, trials may differ
            only in ``sampler.temperature``, ``schedule.cooling_rate``, ``sampler.flip_ratio``
            and ``seed`` (a binary MLP on the full energy, exponential cooling per step).
    """

    name: str | None = None
    metric: str = "val_accuracy"
    direction: str = "maximize"
    sampler: str = "tpe"
    pruner: str = "median"
    n_trials: int = 24
    timeout: float | None = None
    workers: int = 2
    storage: str | None = None
    output_dir: str | None = None
    max_failures: int = 5
    max_retries: int = 3
    gpus: list[int] | None = None
    heartbeat_interval: int = 10
    grace_period: int = 30
    seed: int = 0
    population: int = 1

    def errors(self, prefix: str = "study") -> list[str]:
        errors: list[str] = []
        check_choice(errors, f"{prefix}.metric", self.metric, METRICS)
        check_choice(errors, f"{prefix}.direction", self.direction, DIRECTIONS)
        check_choice(errors, f"{prefix}.sampler", self.sampler, SAMPLERS)
        check_choice(errors, f"{prefix}.pruner", self.pruner, PRUNERS)
        check(errors, self.n_trials >= 1, f"{prefix}.n_trials", self.n_trials, "an integer >= 1")
        check(errors, self.timeout is None or self.timeout > 0, f"{prefix}.timeout",
              self.timeout, "null or > 0 seconds")
        check(errors, self.workers >= 1, f"{prefix}.workers", self.workers, "an integer >= 1")
        check(errors, self.population >= 1, f"{prefix}.population", self.population,
              "an integer >= 1 (trials run together by one worker)")
        check(errors, self.max_failures >= 1, f"{prefix}.max_failures", self.max_failures,
              "an integer >= 1")
        check(errors, self.max_retries >= 0, f"{prefix}.max_retries", self.max_retries,
              "an integer >= 0")
        check(errors, self.heartbeat_interval >= 1, f"{prefix}.heartbeat_interval",
              self.heartbeat_interval, "an integer >= 1")
        check(errors, self.grace_period > self.heartbeat_interval, f"{prefix}.grace_period",
              self.grace_period, f"> heartbeat_interval ({self.heartbeat_interval})")
        check(errors, self.gpus is None or all(g >= 0 for g in self.gpus), f"{prefix}.gpus",
              self.gpus, "null or a list of GPU indices >= 0")
        if self.storage is not None:
            check(errors, "://" in self.storage, f"{prefix}.storage", self.storage,
                  "null or an SQLAlchemy URL such as sqlite:///optuna.db or "
                  "postgresql://user@host/db")
        return errors


@dataclass
class SweepConfig(TrainConfig):
    """A training configuration, the search space over it, and the study settings.

    Args:
        search: search-space entries by parameter name (see :class:`ParamSpec`).
        study: see :class:`StudyConfig`.
        dry_run: print the plan and check the dataset loads, without running a trial.
        report: write the report of the existing study, without running a trial.
    """

    search: dict[str, ParamSpec] = field(default_factory=dict)
    study: StudyConfig = field(default_factory=StudyConfig)
    dry_run: bool = False
    report: bool = False

    def errors(self) -> list[str]:
        errors = super().errors() + self.study.errors()
        check(errors, bool(self.search), "search", dict(self.search),
              "at least one entry, e.g. +search.temperature={key:sampler.temperature,"
              "type:float,low:1e-5,high:1e-1,log:true}")
        for name, spec in self.search.items():
            errors += spec.errors(f"search.{name}")
        return errors

    def train_config(self) -> TrainConfig:
        """The training part of this config (what one trial runs, before its sampled values)."""
        names = TrainConfig.__dataclass_fields__
        return TrainConfig(**{k: getattr(self, k) for k in names})

    def study_name(self, resolved: dict[str, Any]) -> str:
        """``study.name``, or ``<model>-<dataset>-<8 hex digits>`` derived from ``resolved``.

        The hash covers what defines the experiment (the training config and the search space),
        not how it is run (study settings, tracking, device, verbosity).
        """
        if self.study.name:
            return self.study.name
        ignored = {"study", "tracking", "device", "dry_run", "report"}
        identity = {k: v for k, v in resolved.items() if k not in ignored}
        identity.get("trainer", {}).pop("verbose", None)
        digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode())
        return f"{self.model.name}-{self.dataset.name}-{digest.hexdigest()[:8]}"

    def output_dir(self, name: str) -> Path:
        """``study.output_dir``, or ``outputs/sweeps/<name>``."""
        return Path(self.study.output_dir or Path("outputs") / "sweeps" / name)

    def storage_url(self, name: str) -> str:
        """``study.storage``, or an SQLite file in the output folder."""
        return self.study.storage or f"sqlite:///{self.output_dir(name) / 'optuna.db'}"


@dataclass
class ComposedSweepConfig(SweepConfig):
    """The schema Hydra composes ``conf/sweep.yaml`` with: :class:`SweepConfig` with untyped
    search entries, so that ``+search.<name>={key:...,type:...}`` can add an entry (OmegaConf
    refuses a plain dict as a new value of a ``dict[str, ParamSpec]``). :func:`typed_config`
    turns the composed config into a :class:`SweepConfig` one."""

    search: dict[str, Any] = field(default_factory=dict)


def typed_config(cfg: Any) -> Any:
    """The composed ``cfg`` merged into the :class:`SweepConfig` schema (every search entry a
    :class:`ParamSpec`).

    Raises:
        ConfigError: one line for a search entry with an unknown key or a wrong type.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.merge(OmegaConf.structured(SweepConfig), cfg)
    except OmegaConfBaseException as err:
        raise ConfigError([f"{err.full_key}: {str(err).splitlines()[0]}"]) from None


def register_sweep_configs() -> None:
    """Register ``sweep_schema`` (and the train schemas) in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    from mcmc_core.config import register_configs

    register_configs()
    ConfigStore.instance().store(name="sweep_schema", node=ComposedSweepConfig)
