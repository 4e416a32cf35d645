"""The search space: Optuna distributions from config entries, and applying sampled values.

An entry sets either a dotted config key (``sampler.temperature``) or a whole config group
(``model`` with ``choices: [mlp, cnn]``). Group options are composed once by the parent (with the
user's command-line overrides) and swapped in whole, so a trial gets exactly what
``mcmc-train model=cnn ...`` would get.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from mcmc_core._validation import violation
from sweeps.sweeper.config import ParamSpec
from sweeps.sweeper.settings import PARAMS

__all__ = ["GROUPS", "SearchSpace", "format_value"]

#: Config groups a categorical entry may choose between (``key: model``).
GROUPS = ("model", "dataset", "sampler", "schedule", "flip_schedule", "trainer")

_PRIMITIVE = (type(None), bool, int, float, str)


def format_value(value: Any) -> str:
    """A trial's value as the console and the report show it: 4 significant digits, more
    where 4 would show a float as a whole number it is not (a cooling rate of 0.999996 is not
    ``1``)."""
    if not isinstance(value, float):
        return str(value)
    for digits in range(4, 18):
        shown = f"{value:.{digits}g}"
        if value.is_integer() or not float(shown).is_integer():
            return shown
    return repr(value)


def _encode(choice: Any) -> Any:
    """Optuna stores None/bool/int/float/str choices; others (e.g. ``[128, 64]``) go as JSON."""
    return choice if isinstance(choice, _PRIMITIVE) else json.dumps(choice)


def _has_key(tree: Any, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def _dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of a nested dict, dotted (``sampler``, ``sampler.temperature``, ...)."""
    keys = []
    for key, value in tree.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, dict):
            keys += _dotted_keys(value, f"{prefix}{key}.")
    return keys


class SearchSpace:
    """Named entries of a sweep's search space (``hydra.sweeper.params``).

    Args:
        specs: entries by parameter name (the name Optuna and MLflow show).
        group_options: for entries whose key is a config group, the composed group node of each
            choice (see :meth:`group_keys`).
        labels: by entry name, the key error lines name it by (default:
            ``hydra.sweeper.params.<its config key>``).
    """

    def __init__(self, specs: dict[str, ParamSpec],
                 group_options: dict[str, dict[Any, Any]] | None = None,
                 labels: dict[str, str] | None = None) -> None:
        self.specs = dict(specs)
        self.group_options = group_options or {}
        self.labels = {name: f"{PARAMS}.{spec.key}" for name, spec in self.specs.items()}
        self.labels.update(labels or {})

    def group_keys(self) -> dict[str, list[Any]]:
        """Entries that choose a config group: ``{name: choices}``."""
        return {name: list(spec.choices or []) for name, spec in self.specs.items()
                if spec.key in GROUPS}

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The Optuna distribution of every entry."""
        dists: dict[str, optuna.distributions.BaseDistribution] = {}
        for name, s in self.specs.items():
            if s.type == "float":
                dists[name] = optuna.distributions.FloatDistribution(
                    float(s.low), float(s.high), log=s.log, step=s.step)
            elif s.type == "int":
                dists[name] = optuna.distributions.IntDistribution(
                    int(s.low), int(s.high), log=s.log, step=int(s.step or 1))
            else:
                dists[name] = optuna.distributions.CategoricalDistribution(
                    [_encode(c) for c in s.choices or []])
        return dists

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample (or, for a retried trial, read back) every entry's value."""
        values = {}
        for name, d in self.distributions().items():
            if isinstance(d, optuna.distributions.FloatDistribution):
                values[name] = trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)
            elif isinstance(d, optuna.distributions.IntDistribution):
                values[name] = trial.suggest_int(name, d.low, d.high, log=d.log, step=d.step)
            else:
                values[name] = trial.suggest_categorical(name, d.choices)
        return self.decode(values)

    def decode(self, values: dict[str, Any]) -> dict[str, Any]:
        """Optuna's stored values -> config values (JSON-encoded choices decoded)."""
        out = {}
        for name, value in values.items():
            spec = self.specs[name]
            if spec.type == "categorical" and not any(c == value for c in spec.choices or []):
                value = json.loads(value)
            out[name] = value
        return out

    def by_key(self, values: dict[str, Any]) -> dict[str, Any]:
        """Sampled ``values`` (by entry name) by the config key each sets (``temperature`` ->
        ``sampler.temperature``; a group entry by its group, ``model``): a trial's MLflow
        params."""
        return {self.specs[name].key: value for name, value in values.items()}

    def bounds(self) -> list[tuple[str, dict[str, Any]]]:
        """For validation before any work: ``(label, values)`` with every numeric entry at its
        low, then at its high bound, and every categorical choice."""
        cases = []
        for name, s in self.specs.items():
            options = ([int(s.low), int(s.high)] if s.type == "int"  # type: ignore[arg-type]
                       else [s.low, s.high] if s.type == "float" else list(s.choices or []))
            labels = ["low", "high"] if s.type != "categorical" else ["choices"] * len(options)
            for label, value in zip(labels, options):
                cases.append((f"{self.labels[name]}.{label}", {name: value}))
        return cases

    def key_errors(self, base: dict[str, Any]) -> list[str]:
        """One line per entry whose ``key`` is in neither ``base`` (the resolved training config)
        nor a searched option of its group, naming the valid keys and the closest matches."""
        errors = []
        for name, spec in self.specs.items():
            if spec.key in GROUPS:
                continue
            trees = [base] + [{**base, self.specs[n].key: option}
                              for n, options in self.group_options.items()
                              for option in options.values()]
            if any(_has_key(tree, spec.key) for tree in trees):
                continue
            node, path = base, []
            for part in spec.key.split("."):  # the deepest existing parent of the key
                if not isinstance(node, dict) or part not in node:
                    break
                node, path = node[part], [*path, part]
            parent = ".".join(path)
            keys = list(node) if isinstance(node, dict) else []
            where = f"a key of {parent}" if parent else "a top-level key"
            close = difflib.get_close_matches(spec.key, _dotted_keys(base), n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            errors.append(violation(f"{self.labels[name]}.key", spec.key,
                                    f"{where}: {', '.join(keys)}{hint}"))
        return errors

    def apply(self, cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
        """A copy of ``cfg`` with ``values`` set: group entries swap in the composed option first,
        so dotted keys inside a group (``model.hidden``) apply on the chosen option."""
        cfg = OmegaConf.create(OmegaConf.to_container(cfg))  # plain copy, no struct flag
        in_group = [name for name in values if self.specs[name].key in GROUPS]
        for name in [*in_group, *(n for n in values if n not in in_group)]:
            value = values[name]
            key = self.specs[name].key
            if key in GROUPS:
                options = self.group_options.get(name, {})
                if _encode(value) not in options:
                    raise KeyError(f"{self.labels[name]}: no composed option {value!r} for "
                                   f"group {key}")
                cfg[key] = OmegaConf.create(options[_encode(value)])
            else:
                OmegaConf.update(cfg, key, value, merge=False)
        return cfg

    @staticmethod
    def compose_group_options(specs: dict[str, ParamSpec],
                              compose: Callable[[list[str]], DictConfig]) -> dict[str, dict]:
        """Compose every group choice once: ``compose(["model=cnn"])`` -> its ``model`` node."""
        options: dict[str, dict] = {}
        for name, spec in specs.items():
            if spec.key in GROUPS:
                options[name] = {
                    _encode(c): OmegaConf.to_container(compose([f"{spec.key}={c}"])[spec.key])
                    for c in spec.choices or []}
        return options
