"""The configuration reference, ``docs/config.md``, generated from the typed schema::

    python -m sweeps.cli.reference > docs/config.md

Every key of ``mcmc-train`` and of its sweep (``hydra.sweeper``): its meaning (the ``Args:`` entry
of its dataclass's docstring), its default (the config the command composes with no overrides) and
the values allowed (its type, and what the schema's own ``errors()`` checks say when it is given
values out of range: the same words as the error lines). ``tests/cli/test_config_reference.py``
checks that the committed file is what this prints.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import typing
from importlib import resources
from typing import Any

from mcmc_core.config import TrainConfig
from sweeps.sweeper.config import ParamSpec
from sweeps.cli.help import config_groups
from sweeps.sweeper.settings import PARAMS, SAMPLER_CLASSES, SWEEPER, McmcOptunaSweeperConf

__all__ = ["allowed_values", "field_docs", "render"]

#: Values tried on a key to make the schema's checks say what is allowed, by the key's type.
PROBES: dict[Any, list[Any]] = {int: [-1, 0, 10**9], float: [-1.0, 0.0, 1.5, 1e9],
                                str: ["\x00"], list: [[], [-1], [1, 1, 1, 1]]}
_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
#: What the ``hydra.sweeper`` settings allow beyond what their checks say.
_SWEEPER_ALLOWED = {"sampler": ", or {_target_: optuna.samplers.<"
                               + "|".join(SAMPLER_CLASSES.values()) + ">, seed: N}",
                    "params": "the forms in *meaning*"}
#: The placeholder of a search entry's key in ``hydra.sweeper.params.<key>.*``.
ENTRY = f"{PARAMS}.<key>"


def field_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Args:`` sections of ``cls`` and its bases (the class's
    own entry first); ``a / b: text`` documents both ``a`` and ``b``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        entries: dict[str, list[str]] = {}
        lines = inspect.cleandoc(klass.__doc__ or "").splitlines()
        start = next((i + 1 for i, line in enumerate(lines) if line.strip() == "Args:"), None)
        current: list[str] = []
        for line in lines[start:] if start is not None else []:
            if line and not line.startswith(" "):
                break
            entry = re.match(r"^ {4}(\w[\w /]*):\s*(.*)$", line)
            if entry:
                current = [entry.group(2)]
                for name in entry.group(1).split("/"):
                    entries[name.strip()] = current
            elif line.strip():
                current.append(line.strip())
        docs.update({name: " ".join(text) for name, text in entries.items()})
    return docs


def _markdown(text: str) -> str:
    """Docstring markup as Markdown in a table cell."""
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return text.replace("``", "`").replace("|", "\\|")


def _value(value: Any) -> str:
    """A default as it is written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    return str(value)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """``(X, optional)`` of ``X`` or ``X | None``; ``list`` for ``list[...]``."""
    args = typing.get_args(tp)
    optional = type(None) in args
    if optional:
        tp = next(a for a in args if a is not type(None))
    return (list if typing.get_origin(tp) is list else tp), optional


def allowed_values(root: Any, path: list[str], tp: Any, prefix: str | None = None) -> str:
    """What the key ``path`` of the config object ``root`` (a :class:`TrainConfig`,
    :class:`~sweeps.sweeper.settings.McmcOptunaSweeperConf` or :class:`ParamSpec`, valid as it
    is) accepts: its type, then every distinct ``expected ...`` its ``errors()`` report for
    the :data:`PROBES` of that type (``errors(prefix)`` where its lines name the key
    ``<prefix>.<field>``)."""
    base, optional = _base_type(tp)
    words = _WORDS.get(base, "a list" if base is list else getattr(base, "__name__", str(base)))
    found: list[str] = []
    for probe in PROBES.get(base, []):
        config = copy.deepcopy(root)
        node = config
        for part in path[:-1]:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        setattr(node, path[-1], probe)
        try:
            errors = config.errors(prefix) if isinstance(config, ParamSpec) else config.errors()
        except (TypeError, ValueError, AttributeError):  # a value the checks cannot compare
            continue
        for line in errors:
            name = line.split("=", 1)[0]
            parent, _, last = name.rpartition(".")
            if (parent == ".".join(path[:-1]) or parent == prefix) and path[-1] in last.split("/"):
                text = line.split(" is not allowed: expected ", 1)[1]
                if text not in found:
                    found.append(text)
    words += " or null" if optional and not any("null" in t for t in found) else ""
    if found and (base is str or found[0].startswith((words, "null or a", "["))
                  or (base is list and "list" in found[0])):
        return "; ".join(found)  # the checks' words say it all
    return "; ".join([words, *found])


def _typed(overrides: list[str]) -> tuple[Any, dict[str, Any], dict[str, str], Any]:
    """The typed config ``mcmc-train`` composes with ``overrides``, as a plain dict, its group
    choices and its ``hydra.sweeper`` node."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict

    from mcmc_core.config import register_configs
    from sweeps.cli.help import register_resolver

    register_configs()
    register_resolver()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items()
               if not k.startswith("hydra") and k in config_groups()}
    sweeper = cfg.hydra.sweeper
    with open_dict(cfg):
        del cfg["hydra"]
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg)
    return (OmegaConf.to_object(cfg), OmegaConf.to_container(cfg, resolve=True), choices,
            sweeper)


def _rows(root: Any, cls: type, path: list[str], defaults: dict[str, Any],
          other: dict[str, Any] | None, missing: list[str]) -> list[str]:
    """The table rows of the scalar fields of ``cls`` at ``path``."""
    docs, rows = field_docs(cls), []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
            continue
        key = ".".join([*path, f.name])
        if f.name not in docs:
            missing.append(key)
        default = f"`{_value(defaults.get(f.name))}`"
        if other is not None and f.name in other and other[f.name] != defaults.get(f.name):
            default += f" (sweep: `{_value(other[f.name])}`)"
        rows.append(f"| `{key}` | {default} "
                    f"| {_markdown(allowed_values(root, [*path, f.name], tp))} "
                    f"| {_markdown(docs.get(f.name, ''))} |")
    return rows


def _table(title: str, summary: str, rows: list[str]) -> list[str]:
    return [f"## {title}", "", summary, "", "| key | default | allowed | meaning |",
            "|---|---|---|---|", *rows, ""]


def _all_groups() -> dict[str, list[str]]:
    """Every config group and its options."""
    return config_groups()


def _option_notes(group: str) -> list[str]:
    """``- `group=option`: <the option file's first comment line>`` per option."""
    notes = []
    for option in _all_groups()[group]:
        text = (resources.files("conf") / group / f"{option}.yaml").read_text()
        lines = [line for line in text.splitlines() if not line.startswith("# @package")]
        block = " ".join(line.lstrip("#").strip() for line in
                         lines[:next((i for i, line in enumerate(lines)
                                      if not line.startswith("#")), len(lines))])
        first = re.split(r"(?<=\.)\s", block, maxsplit=1)[0]  # its first sentence
        notes.append(f"- `{group}={option}`" + (f": {_markdown(first)}" if first else ""))
    return notes


def render() -> str:
    """The whole reference, as Markdown.

    Raises:
        ValueError: a schema field has no ``Args:`` entry (document it in its dataclass).
    """
    train, train_defaults, train_choices, _ = _typed([])
    _, sweep_defaults, sweep_choices, sweeper = _typed(["hparams_search=default"])
    missing: list[str] = []
    out = ["# Configuration reference", "",
           "Generated from the typed schema (`mcmc_core/config.py`, `mcmc_core/*/_config.py`, "
           "`sweeps/sweeper/config.py`) by `python -m sweeps.cli.reference > docs/config.md`; "
           "`tests/cli/test_config_reference.py` fails when this file is out of date.", "",
           "Every key is a command-line override (`mcmc-train sampler.flip_ratio=0.01`). "
           "*default* is what `mcmc-train` composes with no overrides (the default option of "
           "each group), with the default sweep's (`mcmc-train -m hparams_search=default`, or "
           "`mcmc-sweep`) where it differs; *allowed* is the type and what "
           "the checks run before any work accept (a value outside it is refused with one "
           "`error:` line). A group option (`schedule=step`) sets several keys at once: the "
           "files in `conf/`.", "",
           "## Config groups", "",
           "| group | options | default (`mcmc-train`) | default (sweep) |",
           "|---|---|---|---|"]
    for group, options in _all_groups().items():
        out.append(f"| `{group}` | {', '.join(options)} | `{train_choices.get(group, '-')}` | "
                   f"`{sweep_choices.get(group, '-')}` |".replace("`None`", "none"))
    out.append("")
    for group in _all_groups():
        out += _option_notes(group)
    out.append("")
    out += _table("Top level", _markdown(inspect.getdoc(TrainConfig).splitlines()[0]),
                  _rows(train, TrainConfig, [], train_defaults, sweep_defaults, missing))
    for f in dataclasses.fields(TrainConfig):
        cls = typing.get_type_hints(TrainConfig)[f.name]
        if dataclasses.is_dataclass(cls):
            out += _table(f"`{f.name}`", _markdown(inspect.getdoc(cls).splitlines()[0]),
                          _rows(train, cls, [f.name], train_defaults[f.name],
                                sweep_defaults[f.name], missing))
    out += _sweeper_table(sweeper, missing)
    out += _entry_table(sweeper, missing)
    if missing:
        raise ValueError("no Args: entry for " + ", ".join(missing))
    return "\n".join(out).rstrip() + "\n"


def _sweeper_table(defaults: Any, missing: list[str]) -> list[str]:
    """The settings of ``hydra/sweeper=mcmc_optuna``, with the defaults of
    ``hparams_search=default``."""
    docs, rows = field_docs(McmcOptunaSweeperConf), []
    hints = typing.get_type_hints(McmcOptunaSweeperConf)
    for f in dataclasses.fields(McmcOptunaSweeperConf):
        if f.name.startswith("_"):
            continue
        if f.name not in docs:
            missing.append(f"{SWEEPER}.{f.name}")
        if dataclasses.is_dataclass(hints[f.name]):  # a cluster backend's own settings
            rows += _backend_rows(f.name, hints[f.name], defaults[f.name], missing)
            continue
        tp = hints[f.name] if hints[f.name] is not Any else str
        allowed = (_SWEEPER_ALLOWED["params"] if f.name == "params" else
                   allowed_values(McmcOptunaSweeperConf(), [f.name], tp, prefix=SWEEPER)
                   + _SWEEPER_ALLOWED.get(f.name, ""))
        default = "the digits search" if f.name == "params" else _value(defaults[f.name])
        rows.append(f"| `{SWEEPER}.{f.name}` | `{default}` | {_markdown(allowed)} "
                    f"| {_markdown(docs.get(f.name, ''))} |")
    summary = " ".join(inspect.getdoc(McmcOptunaSweeperConf).split("\n\n")[0].split())
    return _table(f"`{SWEEPER}` (`mcmc-train -m hparams_search=default`, or `mcmc-sweep`)",
                  _markdown(summary) + " Defaults: `conf/hparams_search/default.yaml`.", rows)


def _backend_rows(group: str, cls: type, defaults: Any, missing: list[str]) -> list[str]:
    """The rows of ``hydra.sweeper.<group>.*`` (``slurm``, ``dask``), checked as when
    ``hydra.sweeper.backend=<group>``."""
    docs, hints, rows = field_docs(cls), typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        key = f"{SWEEPER}.{group}.{f.name}"
        if f.name not in docs:
            missing.append(key)
        allowed = allowed_values(McmcOptunaSweeperConf(backend=group), [group, f.name],
                                 hints[f.name], prefix=f"{SWEEPER}.{group}")
        rows.append(f"| `{key}` | `{_value(defaults[f.name])}` | {_markdown(allowed)} "
                    f"| {_markdown(docs.get(f.name, ''))} |")
    return rows


def _entry_table(defaults: Any, missing: list[str]) -> list[str]:
    """The fields of a search entry written as a dict, ``hydra.sweeper.params.<key>: {type:
    ..., low: ...}``, with the default search space's first entry as the example."""
    from sweeps.sweeper.params import parse_space

    spec = ParamSpec(**next(iter(parse_space(defaults.params, []).specs.values())))
    docs, rows = field_docs(ParamSpec), []
    for f in dataclasses.fields(ParamSpec):
        if f.name not in docs:
            missing.append(f"{ENTRY}.{f.name}")
        tp = typing.get_type_hints(ParamSpec)[f.name]
        rows.append(f"| `{ENTRY}.{f.name}` | `{_value(getattr(spec, f.name))}` "
                    f"| {_markdown(allowed_values(spec, [f.name], tp, prefix=ENTRY))} "
                    f"| {_markdown(docs.get(f.name, ''))} |")
    return _table(f"`{ENTRY}` (an entry written as a dict)",
                  _markdown(inspect.getdoc(ParamSpec).splitlines()[0]) + f" The defaults are "
                  f"those of the default search space's first entry, `{PARAMS}.{spec.key}`.",
                  rows)


if __name__ == "__main__":
    print(render(), end="")
