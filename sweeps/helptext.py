"""The config groups each command has, for its ``--help`` and its override check.

``conf/train.yaml`` and ``conf/sweep.yaml`` write their help text themselves (``hydra.help``);
its group list is ``${mcmc_groups:train}`` / ``${mcmc_groups:sweep}``, an OmegaConf resolver
(:func:`register_resolver`) that lists the option files in ``conf/``: the groups that exist,
each with the options that exist, and for each command none of the other's own groups.
"""

from __future__ import annotations

from importlib import resources

from omegaconf import OmegaConf

__all__ = ["APPS", "SWEEP_ONLY_GROUPS", "TRAIN_ONLY_GROUPS", "config_groups", "groups_text",
           "register_resolver"]

#: The two commands, by the name their config has in ``conf/``.
APPS = ("train", "sweep")
#: Groups only ``mcmc-sweep`` composes (``conf/sweep.yaml``'s defaults).
SWEEP_ONLY_GROUPS = ("search",)
#: Groups only ``mcmc-train`` composes (``conf/train.yaml``'s defaults): ``hparams_search``
#: selects the sweeper of ``mcmc-train -m`` (``mcmc-sweep`` is its shorthand).
TRAIN_ONLY_GROUPS = ("hparams_search",)


def config_groups(app: str = "sweep") -> dict[str, list[str]]:
    """``{group: [option, ...]}`` of the groups of ``app`` (``train`` or ``sweep``), sorted: the
    folders of ``conf/`` and their ``*.yaml`` files."""
    if app not in APPS:
        raise ValueError(f"app must be one of {APPS}, not {app!r}")
    conf = resources.files("conf")
    groups = {d.name: sorted(f.name[:-5] for f in d.iterdir() if f.name.endswith(".yaml"))
              for d in conf.iterdir() if d.is_dir() and not d.name.startswith("_")}
    other = TRAIN_ONLY_GROUPS if app == "sweep" else SWEEP_ONLY_GROUPS
    return {name: options for name, options in sorted(groups.items())
            if options and name not in other}


def groups_text(app: str) -> str:
    """One ``group: option, option`` line per group of ``app``."""
    groups = config_groups(app)
    width = max(map(len, groups)) + 1
    return "\n".join(f"{name + ':':<{width}} {', '.join(options)}"
                     for name, options in groups.items())


def register_resolver() -> None:
    """Register ``${mcmc_groups:<app>}`` (see the module docstring)."""
    OmegaConf.register_new_resolver("mcmc_groups", groups_text, replace=True)
