"""The best trial, reusable: its training config written as an experiment of ``mcmc-train``
(``<report>/best/experiment/best.yaml``) and the command that runs it again, printed by
``mcmc-sweep`` and kept in ``best.json``::

    mcmc-train --config-dir <report>/best experiment=best

The experiment composes with ``conf/train.yaml``'s defaults list like ``experiment=original``:
it chooses the trial's option of each config group (``override /dataset: synthetic``) and sets
the values in which the trial differs from those options (the sampled values, the sweep's
``dataset.binarize=thermometer``, ...). So any override can be added to try a variant:
``tracking=none``, ``schedule=step``, ``sampler.temperature=1e-4``.

Where the trial ran is not part of it: tracking, checkpoint folder, resume and verbosity are
``mcmc-train``'s defaults, and a worker's ``cuda:N`` is ``cuda``.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import OmegaConf

from sweeps.checks.disk import write_atomic
from sweeps.study.space import GROUPS
from sweeps.study.trials import retry_key
from sweeps.workers.trial_context import stored_config

__all__ = ["BEST_FOLDER", "EXPERIMENT", "EXPERIMENT_FILE", "best_command", "best_config",
           "differences", "format_reproduce", "group_choices", "trial_config_of", "write_best"]

#: The folder of the report holding the best trial's config: the ``--config-dir`` of its command.
BEST_FOLDER = "best"
#: The name of the best trial's experiment (``experiment=best``).
EXPERIMENT = "best"
#: Its file, relative to the report folder.
EXPERIMENT_FILE = f"{BEST_FOLDER}/experiment/{EXPERIMENT}.yaml"
#: Keys of where and how a trial ran, set to ``mcmc-train``'s defaults in the written config.
_RUN_KEYS = (("trainer", "checkpoint_dir"), ("trainer", "resume"), ("trainer", "verbose"))

#: ``compose(["dataset=synthetic", ...])``: ``conf/train.yaml`` composed with overrides, resolved.
Compose = Callable[[list[str]], dict[str, Any]]


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


def group_choices(config: dict[str, Any], options: dict[str, list[str]],
                  compose: Compose) -> dict[str, str]:
    """The option of each config group that ``config`` was composed with: the one named by the
    group's ``name`` (``schedule.name: step``), else the one whose composed node differs from
    ``config``'s in the fewest values (``mcmc-train``'s default option on a tie).

    Args:
        config: a resolved training config.
        options: the options of each group (``{"sampler": ["barker", "metropolis", ...]}``).
        compose: composes ``conf/train.yaml`` with overrides.
    """
    default = compose([])
    choices = {}
    for group, names in options.items():
        node = config[group]
        if node.get("name") in names:
            choices[group] = node["name"]
            continue

        def rank(name: str, group: str = group, node: dict = node) -> tuple[int, bool]:
            option = compose([f"{group}={name}"])[group]
            return len(differences(node, option)), option != default[group]

        choices[group] = min(names, key=rank)
    return choices


def differences(config: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The values of ``config`` that ``base`` lacks or has otherwise, nested as in ``config``
    (a list is one value)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            if inner := differences(value, base[key]):
                out[key] = inner
        elif key not in base or base[key] != value or type(base[key]) is not type(value):
            out[key] = value
    return out


def best_command(folder: Path) -> str:
    """The shell command that runs the experiment written in ``folder`` (made absolute)."""
    return shlex.join(["mcmc-train", "--config-dir", str(folder.resolve()),
                       f"experiment={EXPERIMENT}"])


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


def write_best(study: optuna.Study, report: Path, metric: str = "value") -> dict[str, str] | None:
    """Write the best complete trial's config as the experiment ``<report>/best/experiment/
    best.yaml``; returns ``{"config": its path, "command": the command}``, or None (no complete
    trial, or no config recorded for it). ``metric`` names the value in the file's header."""
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        return None
    best = study.best_trial
    config = trial_config_of(best, report.parent)
    if config is None:
        return None
    body = _experiment(config)
    folder = report / BEST_FOLDER
    command = best_command(folder)
    header = (f"# @package _global_\n"
              f"# The best trial of study {study.study_name} (trial {best.number}, {metric} "
              f"{best.value!r}), as an experiment of mcmc-train:\n#   {command}\n"
              "# Its config group options, then the values in which it differs from them. Add "
              "overrides to\n# try a variant: tracking=none, schedule=step, "
              "sampler.temperature=1e-4, ...\n")
    path = report / EXPERIMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: p.write_text(header + yaml.safe_dump(body, sort_keys=False)))
    (folder / "config.yaml").unlink(missing_ok=True)  # an earlier version's primary config
    return {"config": str(path), "command": command}


def format_reproduce(summary: dict[str, Any]) -> str | None:
    """The console line of the report's best command (None without one)."""
    best = summary.get("best") or {}
    if not best.get("command"):
        return None
    return f"reproduce the best trial: {best['command']}"


def _experiment(config: dict[str, Any]) -> dict[str, Any]:
    """The experiment of a trial's resolved ``config``: ``defaults`` overriding each group's
    option, then the values that differ from ``conf/train.yaml`` composed with them."""
    with _composer() as (compose, options):
        choices = group_choices(config, options, compose)
        base = compose([f"{group}={name}" for group, name in choices.items()])
    values = differences(best_config(config, base), base)
    return {"defaults": [{f"override /{group}": name} for group, name in choices.items()],
            **values}


@contextmanager
def _composer() -> Iterator[tuple[Compose, dict[str, list[str]]]]:
    """``conf/train.yaml`` composed with overrides (each composition once) and the options of
    each of :data:`~sweeps.study.space.GROUPS`: in the running Hydra app (the sweep's, with its
    config search path), else in one of its own."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from mcmc_core.config import register_configs

    cache: dict[tuple[str, ...], dict[str, Any]] = {}

    def composed(overrides: list[str]) -> dict[str, Any]:
        if tuple(overrides) not in cache:
            cfg = compose(config_name="train", overrides=list(overrides))
            cache[tuple(overrides)] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore
        return cache[tuple(overrides)]

    def options() -> dict[str, list[str]]:
        loader = GlobalHydra.instance().config_loader()
        return {group: loader.get_group_options(group) for group in GROUPS}

    register_configs()
    if GlobalHydra.instance().is_initialized():
        yield composed, options()
    else:
        with initialize_config_module("conf", version_base="1.3"):
            yield composed, options()
