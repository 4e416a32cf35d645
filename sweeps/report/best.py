"""The best trial, reusable: its training config written as a primary config of ``mcmc-train``
(``<report>/best/config.yaml``) and the command that runs it again, printed by ``mcmc-sweep``
and kept in ``best.json``.

The config is the trial's resolved config (secrets masked) with the settings of where it ran
replaced by ``mcmc-train``'s defaults: tracking, checkpoint folder, resume, verbosity (and a
worker's ``cuda:N`` by ``cuda``). Its ``defaults: [train_schema, _self_]`` give it
``mcmc-train``'s schema, its ``hydra:`` node is ``conf/train.yaml``'s. The command repeats, as
overrides, every value in which the trial differs from ``mcmc-train``'s own defaults (the
sweep's ``dataset.binarize=thermometer``, the sampled values, ...): they are what makes the
trial, and can be edited to try a variant.
"""

from __future__ import annotations

import copy
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import OmegaConf

from sweeps.checks.disk import write_atomic
from sweeps.workers.job_folders import override_value
from sweeps.study.trials import retry_key
from sweeps.tracking.mlflow_run import flatten
from sweeps.workers.trial_context import stored_config

__all__ = ["BEST_FOLDER", "best_command", "best_config", "format_reproduce", "overrides",
           "train_defaults", "trial_config_of", "write_best"]

#: The folder of the report the best trial's config is written to.
BEST_FOLDER = "best"
_CONFIG_NAME = "config"
#: Keys of where and how a trial ran, set to ``mcmc-train``'s defaults in the written config.
_RUN_KEYS = (("trainer", "checkpoint_dir"), ("trainer", "resume"), ("trainer", "verbose"))


def train_defaults() -> dict[str, Any]:
    """``mcmc-train``'s default config (``conf/train.yaml`` composed, no overrides)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from mcmc_core.config import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside the sweep's Hydra app
        cfg = compose(config_name="train")
    else:
        with initialize_config_module("conf", version_base="1.3"):
            cfg = compose(config_name="train")
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def best_config(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A trial's resolved ``config`` as ``mcmc-train`` should run it again: tracking, checkpoint
    folder, resume and verbosity from ``defaults``, a ``cuda:N`` device as ``cuda``."""
    out = copy.deepcopy(config)
    out["tracking"] = copy.deepcopy(defaults["tracking"])
    for group, key in _RUN_KEYS:
        out[group][key] = defaults[group][key]
    if str(out.get("device", "")).startswith("cuda:"):
        out["device"] = "cuda"
    return out


def overrides(config: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """``key=value`` for every value of ``config`` that ``defaults`` lacks or has otherwise."""
    base = flatten(defaults)
    return [f"{k}={override_value(v)}" for k, v in flatten(config).items()
            if k not in base or base[k] != v]


def best_command(folder: Path, config: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The shell command that runs the config written in ``folder`` (made absolute), with
    :func:`overrides` visible."""
    return shlex.join(["mcmc-train", "--config-dir", str(folder.resolve()), "--config-name",
                       _CONFIG_NAME, *overrides(config, defaults)])


def trial_config_of(trial: optuna.trial.FrozenTrial,
                    output_dir: Path) -> dict[str, Any] | None:
    """A complete trial's resolved config: the one its study keeps
    (:func:`~sweeps.workers.trial_context.stored_config`), else (a trial of an older version)
    the config saved in its checkpoint under ``output_dir``, else None."""
    if (config := stored_config(trial)) is not None:
        return config
    from mcmc_core.trainers import CHECKPOINT_NAME, load_checkpoint

    path = output_dir / "checkpoints" / f"trial-{retry_key(trial):04d}" / CHECKPOINT_NAME
    try:
        return load_checkpoint(path).get("config")
    except (FileNotFoundError, OSError, RuntimeError, EOFError, KeyError):
        return None


def write_best(study: optuna.Study, report: Path) -> dict[str, str] | None:
    """Write the best complete trial's config as ``<report>/best/config.yaml``; returns
    ``{"config": its path, "command": the command}``, or None (no complete trial, or no
    config recorded for it)."""
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        return None
    best = study.best_trial
    config = trial_config_of(best, report.parent)
    if config is None:
        return None
    defaults = train_defaults()
    written = best_config(config, defaults)
    folder = report / BEST_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    command = best_command(folder, written, defaults)
    train_yaml = yaml.safe_load(resources.files("conf").joinpath("train.yaml").read_text())
    header = (f"# The best trial of study {study.study_name} (trial {best.number}, value "
              f"{best.value!r}): its training config, as mcmc-train runs it:\n"
              f"#   {command}\n")
    body = {"defaults": ["train_schema", "_self_"], **written, "hydra": train_yaml["hydra"]}
    path = folder / f"{_CONFIG_NAME}.yaml"
    write_atomic(path, lambda p: p.write_text(header + yaml.safe_dump(body, sort_keys=False)))
    return {"config": str(path), "command": command}


def format_reproduce(summary: dict[str, Any]) -> str | None:
    """The console line of the report's best command (None without one)."""
    best = summary.get("best") or {}
    if not best.get("command"):
        return None
    return f"reproduce the best trial: {best['command']}"
