"""Which trials may share a population (:class:`~mcmc_core.trainers.TrainerPopulation`).

The trials of a population share their training config except a chain's own values
(:data:`CHAIN_KEYS`: its temperature, flip ratio, seed and both schedules, any of the five
schedules each), and that config must be one a population trains (a binary MLP on the full
energy: :func:`mcmc_core.trainers.population_errors`). A lone trial of any other config runs
by its own trainer (:func:`~sweeps.workers.trial_runner.run_trials`).
"""
from __future__ import annotations

import copy
import json
from typing import Any

from mcmc_core._validation import check, violation
from mcmc_core.config import TrainConfig
from mcmc_core.trainers import population_errors as trainer_errors
from sweeps.sweeper.config import ParamSpec
from sweeps.sweeper.settings import PARAMS, SWEEPER

__all__ = ["CHAIN_KEYS", "is_chain_key", "population_errors", "shared_part"]

#: Config keys in which the trials of one population may differ: a chain's own values (a key
#: or every key under it).
CHAIN_KEYS = ("sampler.temperature", "sampler.flip_ratio", "seed", "schedule", "flip_schedule")
#: Keys :func:`~sweeps.workers.trial_context.trial_config` sets per trial (folders, names).
_PER_TRIAL = ("trainer.checkpoint_dir", "tracking.run_name")


def is_chain_key(key: str) -> bool:
    """Whether the trials of a population may differ in config ``key``."""
    return any(key == c or key.startswith(f"{c}.") for c in CHAIN_KEYS)


def population_errors(cfg: TrainConfig, search: dict[str, ParamSpec], size: int) -> list[str]:
    """Why the trials of ``cfg`` and ``search`` cannot run in populations of ``size``: one line
    per violation (empty when they can)."""
    when = f"with {SWEEPER}.population={size}"
    errors = trainer_errors(cfg, when)
    if size == 1:
        return errors
    for name, spec in search.items():
        check(errors, is_chain_key(spec.key), f"{PARAMS}.{spec.key}.key", spec.key,
              f"one of {', '.join(CHAIN_KEYS)} (or a key under one) {when} (the values a "
              "chain has of its own)")
    if cfg.sampler.energy_samples is not None and any(s.key == "seed" for s in search.values()):
        errors.append(violation("sampler.energy_samples", cfg.sampler.energy_samples,
                                f"null when seed is searched {when} (the chains share one "
                                "energy set)"))
    return errors


def shared_part(resolved: dict[str, Any]) -> str:
    """``resolved`` without :data:`CHAIN_KEYS` and per-trial keys: equal for trials that may
    share a population."""
    plain = copy.deepcopy(resolved)
    for dotted in (*CHAIN_KEYS, *_PER_TRIAL):
        *parents, leaf = dotted.split(".")
        node = plain
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return json.dumps(plain, sort_keys=True, default=str)
