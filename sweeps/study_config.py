"""How a study runs (``study.*`` of ``mcmc-sweep``; ``hydra.sweeper.*`` of ``mcmc-train -m``).

Light to import (no torch, no Optuna): :mod:`sweeps.sweeper_config` takes its defaults from
:class:`StudyConfig`, and Hydra imports that at the start of every Hydra app.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DIRECTIONS", "METRICS", "PRUNERS", "SAMPLERS", "SAMPLER_CLASSES", "StudyConfig"]

#: Our sampler names and the Optuna classes they build (``optuna.samplers.<class>``).
SAMPLER_CLASSES = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
                   "gp": "GPSampler", "qmc": "QMCSampler"}
SAMPLERS = tuple(SAMPLER_CLASSES)
PRUNERS = ("median", "hyperband", "successive_halving", "wilcoxon", "none")
DIRECTIONS = ("maximize", "minimize")
#: Per-epoch metrics a study may optimise (test metrics are recorded, never optimised).
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")


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
            only in a chain's own values: ``sampler.temperature``, ``sampler.flip_ratio``,
            ``seed``, ``schedule.*`` and ``flip_schedule.*`` (any schedule; a binary MLP on
            the full energy).
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
        """One violation line per bad setting, keys under ``prefix``."""
        # Imported here: importing mcmc_core loads torch (see the module docstring).
        from mcmc_core._validation import check, check_choice

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
