"""hydra-optuna-sweeper's search-space syntax (``hydra.sweeper.params``) read into our search
entries (:class:`~sweeps.sweeper.config.ParamSpec`).

Each value is parsed by Hydra's own override parser, as hydra-optuna-sweeper does:

- ``interval(a, b)``: a float in [a, b]; ``int(interval(a, b))`` an integer;
  ``tag(log, interval(a, b))`` on a log scale;
- ``choice(a, b, ...)``, ``a,b,c`` and ``shuffle(...)``: categorical;
- ``range(start, stop[, step])``: the values Hydra's basic sweeper runs (``stop`` excluded), as
  an int (or float) with that step;
- a plain value: fixed, an override of every trial (``trainer.epochs: 5``);
- a dict, an entry of its own: ``{type: float, low: 1e-5, high: 1e-2, log: true}``, its
  ``key`` the params key unless given.

An entry is named (for Optuna and MLflow) by the last part of the key it is written under
(``sampler.temperature`` -> ``temperature``), or by the whole key
where two would share one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mcmc_core._validation import ConfigError, violation
from sweeps.sweeper.config import ParamSpec
from sweeps.workers.job_folders import override_value
from sweeps.sweeper.settings import PARAMS

__all__ = ["FORMS", "SearchSyntax", "parse_space", "rewrite_params_args",
           "selects_sweeper"]

#: The forms an entry may take, for the error lines.
FORMS = ("interval(a, b), tag(log, interval(a, b)), int(interval(a, b)), choice(a, b, ...), "
         "range(start, stop[, step]), a,b,c, a plain value, or {type: float|int|categorical, "
         "low: ..., high: ..., log: ..., step: ..., choices: [...]}")
_SPEC_FIELDS = tuple(f.name for f in fields(ParamSpec))
_SELECTS = re.compile(r"^\+{0,2}(hparams_search=|hydra/sweeper=mcmc_optuna$)")
_PARAM_ARG = re.compile(r"^((?:\+{1,2}|~)?hydra\.sweeper\.params\.[^=]+)(?:=(.*))?$", re.DOTALL)


@dataclass
class SearchSyntax:
    """A search space read from ``hydra.sweeper.params`` and the command line.

    Args:
        specs: search entries by name, as plain dicts of :class:`ParamSpec` fields.
        labels: by entry name, the key the user wrote it under (for error lines).
        fixed: overrides of every trial (the plain values of ``params``).
    """

    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)


def selects_sweeper(args: list[str]) -> bool:
    """Whether the command line ``args`` select this sweeper: an ``hparams_search`` option (all
    of ``conf/hparams_search/`` use it) or ``hydra/sweeper=mcmc_optuna``."""
    return any(_SELECTS.match(arg) for arg in args)


def rewrite_params_args(args: list[str]) -> list[str]:
    """Command-line ``args`` that select this sweeper (:func:`selects_sweeper`) with each
    ``hydra.sweeper.params.<key>=<value>`` passed on as
    ``++hydra.sweeper.params.<key>='<value>'`` and each ``~hydra.sweeper.params.<key>`` as
    ``...=null`` (an entry removed). Quoted, the value reaches this sweeper as written (Hydra
    refuses to sweep over its own config, ``interval(...)`` included) and is parsed here, with
    one-line errors; ``++`` lets ``<key>`` be dotted (``sampler.temperature``): Hydra sets it
    as a nested key, which replaces the flat one of the same name (:func:`_flatten`)."""
    if not selects_sweeper(args):
        return list(args)  # another sweeper's params: left as they are
    out = []
    for arg in args:
        found = _PARAM_ARG.match(arg)
        key, value = found.groups() if found else ("", None)
        if key.startswith("~"):
            arg = f"++{key[1:]}=null"
        elif value is not None:
            quote = next((q for q in "'\"" if q not in value), "")
            arg = f"++{key.lstrip('+')}={quote}{value}{quote}"
        out.append(arg)
    return out


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}``: nested dicts (``hydra.sweeper.params.sampler.temperature=...`` on
    the command line makes one) flattened, a later key replacing an earlier one of the same
    name; a dict with a ``key`` or ``type`` is a search entry; None removes an entry."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and not ({"key", "type"} & set(value)):
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value  # in the place of a flat key of the same name
    return out


def _from_override(override: Override) -> dict[str, Any] | None:
    """The search entry of a sweep override (None: a plain value)."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if isinstance(value, IntervalSweep):
        kind = "int" if isinstance(value.start, int) and isinstance(value.end, int) else "float"
        return {"type": kind, "low": value.start, "high": value.end, "log": "log" in value.tags}
    if not isinstance(value, (ChoiceSweep, RangeSweep)):
        raise ValueError(f"{override.value_type.name.lower()} is not a search form")
    values = list(override.sweep_iterator())
    if isinstance(value, RangeSweep) and not value.shuffle:
        if not values:
            raise ValueError("range gives no value")
        step = abs(value.step or 1)
        if all(isinstance(v, int) for v in values):
            return {"type": "int", "low": min(values), "high": max(values), "step": step}
        low, high = float(values[0]), float(values[0]) + (len(values) - 1) * float(value.step)
        low, high = sorted(float(f"{v:.12g}") for v in (low, high))
        return {"type": "float", "low": low, "high": high, "step": float(step)}
    return {"type": "categorical", "choices": values}


def _entry(label: str, key: str, value: Any) -> dict[str, Any] | str:
    """The search entry of ``value`` written under ``key``, or the override of a plain value.

    Raises:
        ConfigError: ``value`` is in none of the :data:`FORMS`, or out of range.
    """
    try:
        override = value if isinstance(value, (Override, Mapping)) else (
            OverridesParser.create().parse_override(
                f"{key}={value if isinstance(value, str) else override_value(value)}"))
        entry = (dict(value) if isinstance(value, Mapping)
                 else override.value() if isinstance(override.value(), dict)
                 else _from_override(override))
    except (HydraException, ValueError) as err:
        shown = value.input_line if isinstance(value, Override) else value
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError([f"{violation(label, shown, FORMS)} ({reason})"]) from None
    if entry is None:
        return f"{key}={override.get_value_element_as_str()}"
    unknown = sorted(set(entry) - set(_SPEC_FIELDS))
    if unknown:
        raise ConfigError([violation(f"{label}.{unknown[0]}", entry[unknown[0]],
                                     f"a search entry's field: {', '.join(_SPEC_FIELDS)}")])
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ParamSpec), {"key": key, **entry})
    except OmegaConfBaseException as err:
        raise ConfigError([f"{label}.{err.full_key}: {str(err).splitlines()[0]}"]) from None
    spec: ParamSpec = OmegaConf.to_object(merged)  # type: ignore[assignment]
    if spec.errors(label):
        raise ConfigError(spec.errors(label))
    return OmegaConf.to_container(merged)  # type: ignore[return-value]


def _names(paths: list[str]) -> dict[str, str]:
    """``{path: name}``: each path's last part, or the whole path where two share it."""
    last = [k.rsplit(".", 1)[-1] for k in paths]
    return {k: (n if last.count(n) == 1 else k) for k, n in zip(paths, last)}


def parse_space(params: Mapping[str, Any] | None, arguments: list[str]) -> SearchSyntax:
    """Read ``params`` (``hydra.sweeper.params``) and the sweep overrides among the command-line
    ``arguments`` (``sampler.flip_ratio=interval(1e-4, 1e-2)``; they replace a ``params`` entry
    of the same key) into a :class:`SearchSyntax`.

    Raises:
        ConfigError: one line per bad entry (its key, its value and the forms allowed).
    """
    items: list[tuple[str, str, Any]] = [(f"{PARAMS}.{k}", k, v)
                                         for k, v in _flatten(params or {}).items()]
    parser = OverridesParser.create()
    for arg in arguments:
        try:
            override = parser.parse_override(arg)
        except HydraException:
            continue  # Hydra has composed these already: not this sweeper's to report
        if override.is_sweep_override():
            items.append((override.key_or_group, override.key_or_group, override))
    entries: dict[str, tuple[str, str, dict[str, Any]]] = {}  # config key: (label, path, entry)
    fixed: dict[str, str] = {}
    errors: list[str] = []
    for label, path, value in items:
        if value is None:  # removed (hydra.sweeper.params.<key>=null)
            continue
        try:
            entry = _entry(label, path, value)
        except ConfigError as err:
            errors += err.errors
            continue
        if isinstance(entry, str):
            fixed[path] = entry
            entries.pop(path, None)
        else:
            entries[entry["key"]] = (label, path, entry)
            fixed.pop(entry["key"], None)
    if errors:
        raise ConfigError(errors)
    names = _names([path for _, path, _ in entries.values()])
    return SearchSyntax(specs={names[path]: e for _, path, e in entries.values()},
                        labels={names[path]: label for label, path, _ in entries.values()},
                        fixed=list(fixed.values()))
