"""The settings of our Hydra sweeper, ``hydra/sweeper=mcmc_optuna`` (``hydra.sweeper.*``).

Light to import (no torch, no Optuna): Hydra imports it, through ``hydra_plugins``, at the start
of every Hydra app. The names are hydra-optuna-sweeper's where they mean the same
(``n_trials``, ``direction``, ``study_name``, ``storage``, ``n_jobs``, ``sampler``, ``params``);
the others are ``mcmc-sweep``'s ``study.*`` settings under their own names. The study settings
(names, types, defaults) are read from :class:`sweeps.study_config.StudyConfig`.
"""

from __future__ import annotations

from dataclasses import field, fields, make_dataclass
from typing import Any

from sweeps.study_config import StudyConfig

__all__ = ["RENAMED", "SWEEPER_TARGET", "McmcOptunaSweeperConf", "register_sweeper_config"]

#: The sweeper class Hydra instantiates (Hydra only loads plugins under ``hydra_plugins``).
SWEEPER_TARGET = "hydra_plugins.mcmc_optuna_sweeper.sweeper.McmcOptunaSweeper"
#: ``hydra.sweeper`` names -> the :class:`~sweeps.study_config.StudyConfig` fields they set; the
#: other study fields keep their names.
RENAMED = {"study_name": "name", "n_jobs": "workers"}
#: hydra-optuna-sweeper's settings, in its order: the first of ours.
_HYDRA_OPTUNA_FIRST = ("n_trials", "direction", "study_name", "storage", "n_jobs", "sampler",
                         "params")
#: Study settings typed ``Any``, so that hydra-optuna-sweeper's other forms (a list of
#: directions, a ``sampler: {_target_: ...}``) reach our one-line checks.
_UNTYPED = ("direction", "sampler")
#: The settings that are not the study's: name, type, default.
_OWN = [("params", "dict[str, Any] | None", None), ("dry_run", bool, False),
        ("report", bool, False), ("max_failure_rate", float, 0.0),
        ("custom_search_space", "str | None", None)]

_DOC = """``hydra.sweeper``: an Optuna study over the composed training config, run by the same
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
    timeout: seconds after which no new trial starts (null: no limit).
    output_dir: folder of the storage, trial checkpoints and the report; null =
        ``outputs/sweeps/<name>``.
    max_failures: failed trials (in this launch) that end the sweep early.
    max_retries: how often a trial killed with its process is retried from its checkpoint.
    gpus: GPU indices the workers are pinned to, round robin (null: all visible GPUs).
    heartbeat_interval / grace_period: seconds between trial heartbeats, and without one
        before a RUNNING trial of a dead process is retried.
    seed: seed of the Optuna sampler.
    population: trials a worker runs together as one batched population of chains.
    dry_run: print the plan and check the dataset loads, without running a trial.
    report: write the report of the existing study, without running a trial.
    max_failure_rate / custom_search_space: hydra-optuna-sweeper's; accepted at their
        defaults only (use ``max_failures``; a search written in ``params``).
"""


def _settings() -> list[tuple[str, Any, Any]]:
    """``(name, type, field)`` of every setting: Hydra's ``_target_``, then the study's (under
    their ``hydra.sweeper`` names, with :class:`StudyConfig`'s defaults) and ours, with
    hydra-optuna-sweeper's first."""
    names = {study: ours for ours, study in RENAMED.items()}
    study = [(names.get(f.name, f.name), Any if f.name in _UNTYPED else f.type,
              field(default=f.default, default_factory=f.default_factory))
             for f in fields(StudyConfig)]
    first = _HYDRA_OPTUNA_FIRST
    settings = sorted(study + [(n, tp, field(default=v)) for n, tp, v in _OWN],
                      key=lambda s: first.index(s[0]) if s[0] in first else len(first))
    # ``_recursive_``: keep a ``sampler: {_target_: ...}`` a config, not an object.
    return [("_target_", str, field(default=SWEEPER_TARGET)),
            ("_recursive_", bool, field(default=False)), *settings]


McmcOptunaSweeperConf = make_dataclass("McmcOptunaSweeperConf", _settings(),
                                       namespace={"__module__": __name__, "__doc__": _DOC})


def register_sweeper_config() -> None:
    """Register :class:`McmcOptunaSweeperConf` as ``hydra/sweeper=mcmc_optuna``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="hydra/sweeper", name="mcmc_optuna",
                                 node=McmcOptunaSweeperConf, provider="mcmc_sweeps")
