"""The settings of our Hydra sweeper, ``hydra/sweeper=mcmc_optuna`` (``hydra.sweeper.*``).

Light to import (no torch, no Optuna): Hydra imports it, through ``hydra_plugins``, at the start
of every Hydra app. The names are hydra-optuna-sweeper's where they mean the same (``n_trials``,
``direction``, ``study_name``, ``storage``, ``n_jobs``, ``sampler``, ``params``); the others are
ours. The launcher, the workers and the start-up checks read these same settings
(:meth:`McmcOptunaSweeperConf.checked`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BACKENDS", "DIRECTIONS", "METRICS", "PARAMS", "PRUNERS", "SAMPLERS",
           "SAMPLER_CLASSES", "SWEEPER", "DaskSettings", "McmcOptunaSweeperConf", "SlurmSettings",
           "register_sweeper_config"]

#: The sweeper class Hydra instantiates (Hydra only loads plugins under ``hydra_plugins``).
SWEEPER_TARGET = "hydra_plugins.mcmc_optuna_sweeper.sweeper.McmcOptunaSweeper"
#: The prefix of every setting's key, as error lines name it.
SWEEPER = "hydra.sweeper"
#: Where the search space lives in the config.
PARAMS = f"{SWEEPER}.params"
#: Our sampler names and the Optuna classes they build (``optuna.samplers.<class>``).
SAMPLER_CLASSES = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
                   "gp": "GPSampler", "qmc": "QMCSampler"}
SAMPLERS = tuple(SAMPLER_CLASSES)
PRUNERS = ("median", "hyperband", "successive_halving", "wilcoxon", "none")
DIRECTIONS = ("maximize", "minimize")
#: Per-epoch metrics a study may optimise (test metrics are recorded, never optimised).
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
#: Where the workers run: processes on this machine, SLURM jobs, or tasks on a Dask cluster.
BACKENDS = ("local", "slurm", "dask")


@dataclass
class SlurmSettings:
    """``hydra.sweeper.slurm``: each worker is a SLURM job submitted with submitit (one job
    array of ``n_jobs`` workers).

    Args:
        partition: the partition (null: the cluster's default).
        time_minutes: each worker job's time limit; a worker stopped by it (or preempted)
            ends its trials after their epoch, queued to resume, and is submitted again.
        gpus_per_worker: GPUs of each worker job (``--gres=gpu:N``); its trials run on the
            first one SLURM gives it.
        cpus_per_worker: CPUs of each worker job (its torch threads).
        mem_gb: memory of each worker job in GB (null: the partition's default).
        additional_parameters: more sbatch options, ``{option: value}`` without the dashes
            (``{qos: high, account: lab}``).
        setup: shell lines run before each worker (``module load cuda``).
        max_resubmits: worker jobs submitted again in one launch after their job ended while
            the study is not done (cancelled, preempted, timed out, killed, node failure).
        detach: return once the workers are submitted; the same command run later follows
            their progress (attaching to the jobs still running) and writes the report.
    """

    partition: str | None = None
    time_minutes: int = 60
    gpus_per_worker: int = 0
    cpus_per_worker: int = 1
    mem_gb: float | None = None
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    max_resubmits: int = 3
    detach: bool = False


@dataclass
class DaskSettings:
    """``hydra.sweeper.dask``: each worker is a long-lived task on an existing Dask cluster.

    Args:
        address: the scheduler's address (``tcp://host:8786``).
        scheduler_file: the scheduler's file (``dask scheduler --scheduler-file F``), instead
            of ``address``.
        gpus_per_worker: the Dask resource ``GPU`` each worker task holds (start Dask workers
            with ``--resources GPU=1`` and their own ``CUDA_VISIBLE_DEVICES``); its trials run
            on the first GPU its Dask worker sees.
        threads: torch threads of each worker task.
        max_resubmits: worker tasks submitted again in one launch after theirs was lost
            (Dask itself re-runs a task whose Dask worker died, up to its ``allowed-failures``).
    """

    address: str | None = None
    scheduler_file: str | None = None
    gpus_per_worker: int = 0
    threads: int = 1
    max_resubmits: int = 3


@dataclass
class McmcOptunaSweeperConf:
    """``hydra.sweeper``: an Optuna study over the composed training config, run by parallel
    workers with pruning per epoch (resumes when run again).

    Args:
        n_trials: finished (complete or pruned) trials the study holds when the sweep ends.
        direction: ``maximize`` or ``minimize``.
        study_name: Optuna study and MLflow experiment name; null derives one from the config
            (``<model>-<dataset>-<hash of the training config and search space>``), so the same
            command resumes the same study.
        storage: Optuna storage URL; null = ``sqlite:///<output_dir>/optuna.db``.
        n_jobs: workers (processes on this machine, SLURM jobs or Dask tasks: ``backend``).
        backend: where the workers run: ``local`` (processes on this machine), ``slurm``
            (jobs submitted with submitit, set under ``slurm``) or ``dask`` (tasks on a running
            Dask cluster, set under ``dask``). Workers on other machines need a storage they all reach
            (PostgreSQL) and an ``output_dir`` on a shared filesystem, where checkpoints let a
            trial continue on another node.
        slurm: :class:`SlurmSettings`.
        dask: :class:`DaskSettings`.
        sampler: ``tpe``, ``random``, ``cmaes``, ``gp`` or ``qmc``, seeded by ``seed``; or
            hydra-optuna-sweeper's ``{_target_: optuna.samplers.TPESampler, seed: N}`` (its
            ``seed`` sets ``seed``).
        params: the search space by config key: ``interval(a, b)``, ``tag(log, interval(a,
            b))``, ``int(interval(a, b))``, ``choice(a, b)``, ``range(start, stop[, step])``,
            ``a,b,c``, a plain value (fixed for every trial), or an entry
            ``{type: float, low: 1e-5, high: 1e-2, log: true}``.
        metric: per-epoch metric reported to Optuna and optimised (validation, never test).
        pruner: ``median``, ``hyperband``, ``successive_halving``, ``wilcoxon`` or ``none``.
        timeout: seconds after which no new trial starts (null: no limit).
        status_interval: seconds between status lines (elapsed, counts, best, ETA) when
            stdout is not a terminal (a log file, a pipe, a SLURM job); 0 prints none.
        output_dir: folder of the storage, trial checkpoints and the report; null =
            ``outputs/sweeps/<name>``.
        max_failures: failed trials (in this launch) that end the sweep early.
        max_retries: how often a trial killed with its process is retried from its checkpoint.
        gpus: GPU indices the workers are pinned to, round robin (null: all visible GPUs).
        heartbeat_interval: seconds between a running trial's heartbeats (written to the
            storage).
        grace_period: seconds without a heartbeat (or, for a trial that never had one, since
            it started) after which a RUNNING trial counts as stale: its process died, and it
            is retried from its checkpoint.
        seed: seed of the Optuna sampler.
        population: trials a worker runs together as one batched population of chains
            (:mod:`sweeps.workers.population_rules`); 1 runs each trial alone. Above 1, trials
            may differ only in a chain's own values: ``sampler.temperature``,
            ``sampler.flip_ratio``, ``seed``, ``schedule.*`` and ``flip_schedule.*`` (any
            schedule; a binary MLP on the full energy).
        dry_run: print the plan and check the dataset loads, without running a trial.
        report: write the report of the existing study, without running a trial.
        max_failure_rate / custom_search_space: hydra-optuna-sweeper's; accepted at their
            defaults only (use ``max_failures``; a search written in ``params``).
    """

    _target_: str = SWEEPER_TARGET
    _recursive_: bool = False  # a ``sampler: {_target_: ...}`` stays a config, not an object
    n_trials: int = 24
    direction: Any = "maximize"  # Any: a list of directions reaches the one-line check
    study_name: str | None = None
    storage: str | None = None
    n_jobs: int = 2
    backend: str = "local"
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    dask: DaskSettings = field(default_factory=DaskSettings)
    sampler: Any = "tpe"  # Any: hydra-optuna-sweeper's ``{_target_: ...}`` form too
    params: dict[str, Any] | None = None
    metric: str = "val_accuracy"
    pruner: str = "median"
    timeout: float | None = None
    status_interval: float = 30.0
    output_dir: str | None = None
    max_failures: int = 5
    max_retries: int = 3
    gpus: list[int] | None = None
    heartbeat_interval: int = 10
    grace_period: int = 30
    seed: int = 0
    population: int = 1
    dry_run: bool = False
    report: bool = False
    max_failure_rate: float = 0.0
    custom_search_space: str | None = None

    def __post_init__(self) -> None:
        # Hydra passes the nested settings as mappings (the sweeper is instantiated
        # non-recursively).
        if isinstance(self.slurm, Mapping):
            self.slurm = SlurmSettings(**_plain(self.slurm))
        if isinstance(self.dask, Mapping):
            self.dask = DaskSettings(**_plain(self.dask))

    def checked(self) -> McmcOptunaSweeperConf:
        """These settings with ``sampler`` as our name (a ``{_target_, seed}`` sampler's seed
        in ``seed``).

        Raises:
            ConfigError: one line per bad setting (:meth:`errors`).
        """
        from mcmc_core._validation import ConfigError

        if errors := self.errors():
            raise ConfigError(errors)
        sampler, seed = self._sampler()
        return dataclasses.replace(self, sampler=sampler, seed=seed)

    def _sampler(self) -> tuple[Any, int]:
        """``(our sampler name, seed)`` of ``sampler`` (a name, or hydra-optuna-sweeper's
        ``{_target_: optuna.samplers.TPESampler, seed: N}``); the value as it is when it is
        neither."""
        if isinstance(self.sampler, Mapping) and set(self.sampler) <= {"_target_", "seed"}:
            targets = {f"optuna.samplers.{c}": n for n, c in SAMPLER_CLASSES.items()}
            if (name := targets.get(self.sampler.get("_target_"))) is not None:
                return name, self.sampler.get("seed", self.seed)
        return self.sampler, self.seed

    def errors(self) -> list[str]:
        """One line per bad setting, named ``hydra.sweeper.<setting>``."""
        # Imported here: importing mcmc_core loads torch (see the module docstring).
        from mcmc_core._validation import check, check_choice, violation

        errors: list[str] = []
        sampler, _ = self._sampler()
        if isinstance(sampler, str):
            check_choice(errors, f"{SWEEPER}.sampler", sampler, SAMPLERS)
        else:
            classes = "|".join(SAMPLER_CLASSES.values())
            errors.append(violation(f"{SWEEPER}.sampler", sampler,
                                    f"one of {', '.join(SAMPLERS)}, or {{_target_: "
                                    f"optuna.samplers.<{classes}>, seed: N}} (no other "
                                    "arguments)"))
        if isinstance(self.direction, str):
            check_choice(errors, f"{SWEEPER}.direction", self.direction, DIRECTIONS)
        else:
            errors.append(violation(f"{SWEEPER}.direction", self.direction,
                                    f"maximize or minimize (one objective: {SWEEPER}.metric)"))
        check_choice(errors, f"{SWEEPER}.metric", self.metric, METRICS)
        check_choice(errors, f"{SWEEPER}.pruner", self.pruner, PRUNERS)
        check(errors, self.n_trials >= 1, f"{SWEEPER}.n_trials", self.n_trials,
              "an integer >= 1")
        check(errors, self.timeout is None or self.timeout > 0, f"{SWEEPER}.timeout",
              self.timeout, "null or > 0 seconds")
        check(errors, self.status_interval >= 0, f"{SWEEPER}.status_interval",
              self.status_interval, ">= 0 seconds (0: no status lines)")
        check(errors, self.n_jobs >= 1, f"{SWEEPER}.n_jobs", self.n_jobs, "an integer >= 1")
        check_choice(errors, f"{SWEEPER}.backend", self.backend, BACKENDS)
        errors += self._backend_errors()
        check(errors, self.population >= 1, f"{SWEEPER}.population", self.population,
              "an integer >= 1 (trials run together by one worker)")
        check(errors, self.max_failures >= 1, f"{SWEEPER}.max_failures", self.max_failures,
              "an integer >= 1")
        check(errors, self.max_retries >= 0, f"{SWEEPER}.max_retries", self.max_retries,
              "an integer >= 0")
        check(errors, self.heartbeat_interval >= 1, f"{SWEEPER}.heartbeat_interval",
              self.heartbeat_interval, "an integer >= 1")
        check(errors, self.grace_period > self.heartbeat_interval, f"{SWEEPER}.grace_period",
              self.grace_period, f"> heartbeat_interval ({self.heartbeat_interval})")
        check(errors, self.gpus is None or all(g >= 0 for g in self.gpus), f"{SWEEPER}.gpus",
              self.gpus, "null or a list of GPU indices >= 0")
        if self.storage is not None:
            check(errors, "://" in self.storage, f"{SWEEPER}.storage", self.storage,
                  "null or an SQLAlchemy URL such as sqlite:///optuna.db or "
                  "postgresql://user@host/db")
        check(errors, self.max_failure_rate in (None, 0, 0.0), f"{SWEEPER}.max_failure_rate",
              self.max_failure_rate, f"0.0 (failed trials are counted by {SWEEPER}.max_failures)")
        check(errors, not self.custom_search_space, f"{SWEEPER}.custom_search_space",
              self.custom_search_space, f"null (write the search space in {PARAMS})")
        return errors

    def _backend_errors(self) -> list[str]:
        """One line per bad setting of the chosen cluster backend."""
        from mcmc_core._validation import check

        errors: list[str] = []
        if self.backend in ("slurm", "dask"):
            check(errors, self.gpus is None, f"{SWEEPER}.gpus", self.gpus,
                  f"null with {SWEEPER}.backend={self.backend} (its engine places the GPUs: "
                  f"{SWEEPER}.{self.backend}.gpus_per_worker)")
        if self.backend == "slurm":
            key, s = f"{SWEEPER}.slurm", self.slurm
            check(errors, s.time_minutes >= 1, f"{key}.time_minutes", s.time_minutes,
                  "an integer >= 1")
            check(errors, s.gpus_per_worker >= 0, f"{key}.gpus_per_worker", s.gpus_per_worker,
                  "an integer >= 0")
            check(errors, s.cpus_per_worker >= 1, f"{key}.cpus_per_worker", s.cpus_per_worker,
                  "an integer >= 1")
            check(errors, s.mem_gb is None or s.mem_gb > 0, f"{key}.mem_gb", s.mem_gb,
                  "null or > 0")
            check(errors, s.max_resubmits >= 0, f"{key}.max_resubmits", s.max_resubmits,
                  "an integer >= 0")
        elif self.backend == "dask":
            key, d = f"{SWEEPER}.dask", self.dask
            check(errors, (d.address is None) != (d.scheduler_file is None), f"{key}.address",
                  d.address, f"the scheduler's address, or null with {key}.scheduler_file set "
                  "(one of the two)")
            check(errors, d.gpus_per_worker >= 0, f"{key}.gpus_per_worker", d.gpus_per_worker,
                  "an integer >= 0")
            check(errors, d.threads >= 1, f"{key}.threads", d.threads, "an integer >= 1")
            check(errors, d.max_resubmits >= 0, f"{key}.max_resubmits", d.max_resubmits,
                  "an integer >= 0")
        return errors


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as plain Python values (an OmegaConf node's containers too)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(settings, DictConfig):
        return OmegaConf.to_container(settings, resolve=True)  # type: ignore[return-value]
    return dict(settings)


def register_sweeper_config() -> None:
    """Register :class:`McmcOptunaSweeperConf` as ``hydra/sweeper=mcmc_optuna``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="hydra/sweeper", name="mcmc_optuna",
                                 node=McmcOptunaSweeperConf, provider="mcmc_sweeps")
