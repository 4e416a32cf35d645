"""A sweep once checked (:class:`Sweep`): the training config, the search space
(:class:`ParamSpec` entries) and the sweeper's settings
(:class:`~sweeps.sweeper.settings.McmcOptunaSweeperConf`)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcmc_core._validation import check, check_choice
from mcmc_core.config import TrainConfig
from sweeps.sweeper.settings import McmcOptunaSweeperConf

__all__ = ["PARAM_TYPES", "ParamSpec", "Sweep"]

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
class Sweep:
    """A checked sweep: the training config its trials start from, its search space and the
    sweeper's settings.

    Args:
        train: the training config of a trial before its sampled values.
        base: ``train`` resolved, as a plain dict (what a trial's config is built from).
        search: search-space entries by parameter name (see :class:`ParamSpec`).
        settings: the checked ``hydra.sweeper`` settings.
        group_options: for entries that choose a config group, each option's composed node.
        labels: by entry name, the key error lines name it by (what the user wrote).
    """

    train: TrainConfig
    base: dict[str, Any]
    search: dict[str, ParamSpec]
    settings: McmcOptunaSweeperConf
    group_options: dict[str, dict] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def study_name(self) -> str:
        """``hydra.sweeper.study_name``, or ``<model>-<dataset>-<8 hex digits>``.

        The hash covers what defines the experiment (the training config and the search space),
        not how it is run (the sweeper's other settings, tracking, device, verbosity).
        """
        if self.settings.study_name:
            return self.settings.study_name
        identity = {k: v for k, v in copy.deepcopy(self.base).items()
                    if k not in ("tracking", "device")}
        identity.get("trainer", {}).pop("verbose", None)
        identity["search"] = {name: dataclasses.asdict(spec) for name, spec in self.search.items()}
        digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode())
        return f"{self.train.model.name}-{self.train.dataset.name}-{digest.hexdigest()[:8]}"

    def output_dir(self, name: str) -> Path:
        """``hydra.sweeper.output_dir``, or ``outputs/sweeps/<name>``."""
        return Path(self.settings.output_dir or Path("outputs") / "sweeps" / name)

    def storage_url(self, name: str) -> str:
        """``hydra.sweeper.storage``, or an SQLite file in the output folder."""
        return self.settings.storage or f"sqlite:///{self.output_dir(name) / 'optuna.db'}"
