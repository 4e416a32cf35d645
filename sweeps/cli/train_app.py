"""``mcmc-train``: one training run, configured by Hydra (``conf/train.yaml``).

Example::

    mcmc-train model=mlp dataset=digits schedule=exponential schedule.cooling_rate=0.999 \
        sampler.flip_ratio=0.01
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import typing
from typing import Any, NoReturn

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mcmc_core._validation import ConfigError, violation
from mcmc_core.config import TrainConfig, build_trainer, register_configs
from mcmc_core.data import DatasetNotFoundError
from mcmc_core.secrets import mask_text
from sweeps.cli.help import config_groups, register_resolver
from sweeps.tracking.multirun import close_parent, job_parent
from sweeps.tracking.client_run import MLflowCallback

__all__ = ["fail", "main", "override_errors", "run"]

_logger = logging.getLogger(__name__)

register_configs()
register_resolver()

_SWEEPER = "hydra.sweeper."
_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Validate ``cfg``, train, log to MLflow when enabled, and return the final metrics. In a
    job of a multirun (``mcmc-train -m``) the run is a child of the multirun's parent run
    (:mod:`sweeps.tracking.multirun`). A stop signal (a ``KeyboardInterrupt``) ends the run as
    KILLED, an error as FAILED.

    Raises:
        ConfigError: one line per invalid value, before any work starts.
    """
    train_cfg: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    train_cfg.validate()
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    parent = job_parent(train_cfg.tracking) if train_cfg.tracking.enabled else None
    tracker, status = None, "FAILED"
    try:
        if train_cfg.tracking.enabled:
            tracker = MLflowCallback(parent.tracking if parent else train_cfg.tracking, resolved,
                                     parent_run_id=parent.run_id if parent else None,
                                     params=parent.params if parent else None)
        trainer = build_trainer(train_cfg, callbacks=[tracker] if tracker else [],
                                config=resolved)
        final = trainer.train()
        status = "FINISHED"
        return final
    except KeyboardInterrupt:  # a stop signal: MLflow's KILLED
        status = "KILLED"
        raise
    except Exception as err:
        if _interrupted(err):  # a stop signal broke a store write whose clean-up then failed
            status = "KILLED"
            raise KeyboardInterrupt from None
        raise
    finally:
        if tracker is not None:
            tracker.close(status=status)
        if parent is not None:
            close_parent(parent, status != "FINISHED")


def _interrupted(err: BaseException) -> bool:
    """Whether ``err`` was raised while a ``KeyboardInterrupt`` (a stop signal) was handled."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _expected(tp: Any) -> str:
    """What a value of the schema type ``tp`` looks like, in words."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is list:
        return f"a list of {_PLURALS.get(args[0], 'values')}, e.g. [1, 2]"
    if len(args) < len(typing.get_args(tp)):  # Optional[X]
        return f"{_expected(args[0])} or null"
    return _WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def override_errors(args: list[str], schema_cls: type = TrainConfig) -> list[str]:
    """One line per command-line override of the packaged config that Hydra would reject with a
    multi-line report: an unknown group option (``model=nope``), an unknown group or key, or a
    value of the wrong type (``sampler.temperature=abc``), and so for the settings of our
    sweeper (``hydra.sweeper.n_trials``) when it is selected; a key of the sweep's old
    vocabulary (``study.n_trials``) names its new key (:func:`_moved`). Other overrides, and
    Hydra's shell completion (``-sc install=bash``), are left to Hydra."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    from sweeps.sweeper.params import selects_sweeper

    known, _ = get_args_parser().parse_known_args(args)
    if known.config_dir or known.config_path:  # other configs: only Hydra knows them
        return []
    if known.shell_completion:  # install=bash, query=bash: Hydra's, not config keys
        return []
    groups = config_groups()
    schema, parser, errors = OmegaConf.structured(schema_cls), OverridesParser.create(), []
    ours = selects_sweeper(known.overrides)
    for arg in known.overrides:
        try:
            ov = parser.parse_override(arg)
        except HydraException:  # a syntax error: Hydra reports it
            continue
        key = ov.key_or_group
        if moved := _moved(key.lstrip("~+"), ov):
            errors.append(moved)
            continue
        if ours and key.startswith(_SWEEPER) and not ov.is_sweep_override():
            errors += _setting_errors(key, ov.value())
            continue
        if (ov.type != OverrideType.CHANGE or ov.is_sweep_override() or ov.package is not None
                or key.replace("/", ".").split(".")[0] == "hydra"):
            continue
        value = ov.value()
        if key in groups:
            if isinstance(value, str) and value not in groups[key]:
                errors.append(violation(key, value, "one of " + ", ".join(groups[key])))
            continue
        tp, parent = schema_cls, ""
        for part in key.split("."):
            if not dataclasses.is_dataclass(tp):  # inside a list or dict: OmegaConf checks it
                break
            hints = typing.get_type_hints(tp)
            if part not in hints:
                names = [*hints, *(g for g in groups if g not in hints)] if not parent else hints
                where = f"a key of {parent}" if parent else "a top-level key or group"
                errors.append(violation(key, value, f"{where}: {', '.join(names)}"))
                break
            tp, parent = hints[part], f"{parent}.{part}".lstrip(".")
        else:
            try:
                OmegaConf.update(schema, key, value, merge=True)
            except OmegaConfBaseException:
                errors.append(violation(key, value, _expected(tp)))
    return errors


def _moved(key: str, override: Any) -> str | None:
    """The line for a key of the sweep's old vocabulary (``mcmc-sweep study.*``, ``search.*``,
    ``dry_run``, ``report``), naming its ``hydra.sweeper`` key; None for any other key."""
    part, _, rest = key.partition(".")
    if part == "study" and rest:
        new = f"{_SWEEPER}{ {'workers': 'n_jobs', 'name': 'study_name'}.get(rest, rest)}"
    elif part == "search":
        from importlib import resources

        # An entry was named by its key's last part: the default sweep's keys by that name.
        params = OmegaConf.load(resources.files("conf") / "hparams_search" / "default.yaml")
        keys = {k.rsplit(".", 1)[-1]: k for k in params.hydra.sweeper.params}
        value = override.value() if rest and "." not in rest else None
        entry = value.get("key") if isinstance(value, dict) else None
        new = f"{_SWEEPER}params.{entry or keys.get(rest.split('.')[0], '<config key>')}"
    elif key in ("dry_run", "report"):
        new = f"{_SWEEPER}{key}"
    else:
        return None
    return (f"{key} is no longer a key: the sweep's settings are {_SWEEPER}* (use {new}; "
            "every setting: mcmc-sweep --help)")


def _setting_errors(key: str, value: Any) -> list[str]:
    """A ``hydra.sweeper.<setting>`` of our sweeper (:mod:`sweeps.sweeper.settings`) that does
    not exist, or a value of the wrong type."""
    from sweeps.sweeper.settings import McmcOptunaSweeperConf

    name = key[len(_SWEEPER):]
    group, _, setting = name.partition(".")
    settings: Any = McmcOptunaSweeperConf
    hints = {k: tp for k, tp in typing.get_type_hints(settings).items() if not k.startswith("_")}
    if group in ("slurm", "dask") and setting:  # a cluster backend's own settings
        settings = hints[group]
        hints = typing.get_type_hints(settings)
        name, prefix = setting, f"{_SWEEPER}{group}"
    else:
        prefix = "hydra.sweeper"
    if name.split(".")[0] not in hints:
        return [violation(key, value, f"a key of {prefix}: {', '.join(hints)}")]
    if name in hints and hints[name] is not Any:
        try:
            OmegaConf.update(OmegaConf.structured(settings), name, value, merge=True)
        except OmegaConfBaseException:
            return [violation(key, value, _expected(hints[name]))]
    return []


def fail(lines: list[str]) -> NoReturn:
    """Print ``error: <line>`` per line on stderr (passwords masked) and exit with status 2 (no
    traceback)."""
    print("\n".join(f"error: {mask_text(line)}" for line in lines), file=sys.stderr)
    raise SystemExit(2)


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="train")
def train_app(cfg: DictConfig) -> float:
    """The Hydra task; returns the final validation accuracy (for Hydra sweepers)."""
    try:
        final = run(cfg)
    except (ConfigError, DatasetNotFoundError) as err:
        fail(str(err).splitlines())
    return float(final["val_accuracy"])


def main() -> Any:
    """Console entry point: bad overrides are reported one line each before Hydra composes; a
    search entry given as ``hydra.sweeper.params.<key>=<sweep>`` is passed on quoted
    (:func:`sweeps.sweeper.params.rewrite_params_args`)."""
    from sweeps.sweeper.params import rewrite_params_args

    errors = override_errors(sys.argv[1:])
    if errors:
        fail(errors)
    sys.argv[1:] = rewrite_params_args(sys.argv[1:])
    return train_app()


if __name__ == "__main__":
    main()
