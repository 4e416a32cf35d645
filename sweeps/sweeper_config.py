"""The settings of our Hydra sweeper, ``hydra/sweeper=mcmc_optuna`` (``hydra.sweeper.*``).

Light to import (no torch, no Optuna): Hydra imports it, through ``hydra_plugins``, at the start
of every Hydra app. The names are hydra-optuna-sweeper's where they mean the same
(``n_trials``, ``direction``, ``study_name``, ``storage``, ``n_jobs``, ``sampler``, ``params``);
the others are ``mcmc-sweep``'s ``study.*`` settings under their own names. The defaults are
:class:`sweeps.config.StudyConfig`'s (``tests/sweeps/test_hydra_sweeper_units.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RENAMED", "SWEEPER_TARGET", "McmcOptunaSweeperConf", "register_sweeper_config"]

#: The sweeper class Hydra instantiates (Hydra only loads plugins under ``hydra_plugins``).
SWEEPER_TARGET = "hydra_plugins.mcmc_optuna_sweeper.sweeper.McmcOptunaSweeper"
#: ``hydra.sweeper`` names -> the :class:`~sweeps.config.StudyConfig` fields they set; the
#: other study fields keep their names.
RENAMED = {"study_name": "name", "n_jobs": "workers"}


@dataclass
class McmcOptunaSweeperConf:
    """``hydra.sweeper``: an Optuna study over the composed training config, run by the same
    launcher as ``mcmc-sweep`` (resumes when run again).

    Args:
        n_trials: finished (complete or pruned) trials the study holds when the sweep ends
            (``study.n_trials``).
        direction: ``maximize`` or ``minimize`` (``study.direction``).
        study_name: Optuna study and MLflow experiment name; null derives one from the config
            (``study.name``).
        storage: Optuna storage URL; null = ``sqlite:///<output_dir>/optuna.db``
            (``study.storage``).
        n_jobs: worker processes on this machine (``study.workers``).
        sampler: ``tpe``, ``random``, ``cmaes``, ``gp`` or ``qmc``, or hydra-optuna-sweeper's
            ``{_target_: optuna.samplers.TPESampler, seed: N}`` form (``study.sampler``; its
            ``seed`` sets ``seed``).
        params: the search space by config key: ``interval(a, b)``, ``tag(log, interval(a,
            b))``, ``int(interval(a, b))``, ``choice(a, b)``, ``range(start, stop[, step])``,
            ``a,b,c``, a plain value (fixed for every trial), or a ``search`` entry
            ``{type: float, low: 1e-5, high: 1e-2, log: true}``.
        metric: per-epoch metric reported to Optuna and optimised (``study.metric``).
        pruner: ``median``, ``hyperband``, ``successive_halving``, ``wilcoxon`` or ``none``.
        population: trials a worker runs together as one batched population of chains.
        timeout: seconds after which no new trial starts (null: no limit).
        output_dir: folder of the storage, trial checkpoints and the report; null =
            ``outputs/sweeps/<name>``.
        max_failures: failed trials (in this launch) that end the sweep early.
        max_retries: how often a trial killed with its process is retried from its checkpoint.
        gpus: GPU indices the workers are pinned to, round robin (null: all visible GPUs).
        heartbeat_interval / grace_period: seconds between trial heartbeats, and without one
            before a RUNNING trial of a dead process is retried.
        seed: seed of the Optuna sampler.
        dry_run: print the plan and check the dataset loads, without running a trial.
        report: write the report of the existing study, without running a trial.
        max_failure_rate / custom_search_space: hydra-optuna-sweeper's; accepted at their
            defaults only (use ``max_failures``; a search written in ``params``).
    """

    _target_: str = SWEEPER_TARGET
    _recursive_: bool = False  # keep a ``sampler: {_target_: ...}`` a config, not an object
    n_trials: int = 24
    direction: Any = "maximize"
    study_name: str | None = None
    storage: str | None = None
    n_jobs: int = 2
    sampler: Any = "tpe"
    params: dict[str, Any] | None = None
    metric: str = "val_accuracy"
    pruner: str = "median"
    population: int = 1
    timeout: float | None = None
    output_dir: str | None = None
    max_failures: int = 5
    max_retries: int = 3
    gpus: list[int] | None = None
    heartbeat_interval: int = 10
    grace_period: int = 30
    seed: int = 0
    dry_run: bool = False
    report: bool = False
    max_failure_rate: float = 0.0
    custom_search_space: str | None = None


def register_sweeper_config() -> None:
    """Register :class:`McmcOptunaSweeperConf` as ``hydra/sweeper=mcmc_optuna``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="hydra/sweeper", name="mcmc_optuna",
                                 node=McmcOptunaSweeperConf, provider="mcmc_sweeps")
