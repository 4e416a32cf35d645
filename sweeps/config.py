"""The typed configuration of a sweep: a training config plus a search space and study settings.

:class:`SweepConfig` is the Hydra schema of ``conf/sweep.yaml``. It extends
:class:`~mcmc_core.config.TrainConfig`, so every ``mcmc-train`` key works in a sweep too; its
``study`` settings are :class:`~sweeps.study_config.StudyConfig` (re-exported here).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcmc_core._validation import ConfigError, check, check_choice
from mcmc_core.config import TrainConfig
from sweeps.study_config import DIRECTIONS, PRUNERS, SAMPLERS, StudyConfig

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

PARAM_TYPES = ("float", "int", "categorical")


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
