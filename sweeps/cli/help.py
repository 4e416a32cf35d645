"""The config groups and the sweeper's settings, for ``--help`` and the override check.

``conf/train.yaml`` writes its help text itself (``hydra.help``); its group list is
``${mcmc_groups:}`` and its list of the sweeper's settings ``${mcmc_sweeper:}``, OmegaConf
resolvers (:func:`register_resolver`): the option files in ``conf/`` (the groups that exist, each
with the options that exist) and the ``hydra.sweeper`` settings with their defaults.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

from omegaconf import OmegaConf

__all__ = ["config_groups", "groups_text", "register_resolver", "sweeper_text"]


def config_groups() -> dict[str, list[str]]:
    """``{group: [option, ...]}``, sorted: the folders of ``conf/`` and their ``*.yaml`` files."""
    conf = resources.files("conf")
    groups = {d.name: sorted(f.name[:-5] for f in d.iterdir() if f.name.endswith(".yaml"))
              for d in conf.iterdir() if d.is_dir() and not d.name.startswith("_")}
    return {name: options for name, options in sorted(groups.items()) if options}


def groups_text() -> str:
    """One ``group: option, option`` line per group."""
    groups = config_groups()
    width = max(map(len, groups)) + 1
    return "\n".join(f"{name + ':':<{width}} {', '.join(options)}"
                     for name, options in groups.items())


def sweeper_text() -> str:
    """The ``hydra.sweeper`` settings with their defaults, a few to a line (``params``: the
    search space, ``conf/hparams_search/default.yaml``)."""
    from sweeps.sweeper.settings import McmcOptunaSweeperConf

    defaults = McmcOptunaSweeperConf()
    settings = []
    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        if f.name.startswith("_") or f.name == "params":
            continue
        if dataclasses.is_dataclass(value):  # a cluster backend's own settings
            settings += [f"{f.name}.{k}={json.dumps(v)}" for k, v in vars(value).items()]
        else:
            settings.append(f"{f.name}={json.dumps(value)}")
    lines, line = [], "hydra.sweeper.params.<config key>=<search form>"
    for item in settings:
        if len(line) + len(item) > 90:
            lines.append(line)
            line = ""
        line = f"{line} {item}".strip()
    return "\n".join([*lines, line])


def register_resolver() -> None:
    """Register ``${mcmc_groups:}`` and ``${mcmc_sweeper:}`` (see the module docstring)."""
    OmegaConf.register_new_resolver("mcmc_groups", groups_text, replace=True)
    OmegaConf.register_new_resolver("mcmc_sweeper", sweeper_text, replace=True)
