"""``mcmc-train -m hparams_search=default``: the sweep of ``mcmc-sweep`` behind Hydra's
``Sweeper`` interface (``hydra/sweeper=mcmc_optuna``; the class Hydra loads is
``hydra_plugins.mcmc_optuna_sweeper.sweeper.McmcOptunaSweeper``, which calls :func:`run_sweep`).

The sweeper maps its settings (:mod:`sweeps.sweeper_config`) onto a ``mcmc-sweep`` config --
the training config Hydra composed for a job, ``search`` read from ``hydra.sweeper.params``
(:mod:`sweeps.search_syntax`), ``study`` -- and runs it through the same code as ``mcmc-sweep``:
:func:`sweeps.sweep.prepare` and :func:`sweeps.preflight.check_sweep` before any work, then
the dry run, the report or :func:`sweeps.launcher.launch`. The same settings give the same
config, so the same study name and storage: either command resumes the other's study. Error
lines name the keys as written here (``hydra.sweeper.n_jobs``, not ``study.workers``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from mcmc_core._validation import ConfigError, violation
from sweeps.search_syntax import PARAMS, SearchSyntax, parse_space
from sweeps.study_config import SAMPLERS, SAMPLER_CLASSES, StudyConfig
from sweeps.sweeper_config import RENAMED
from sweeps.train import fail

__all__ = ["SAMPLER_TARGETS", "relabel", "run_sweep", "study_settings", "sweep_config"]

#: hydra-optuna-sweeper's ``sampler._target_`` values and our sampler names.
SAMPLER_TARGETS = {f"optuna.samplers.{cls}": name for name, cls in SAMPLER_CLASSES.items()}
_SETTING = {field: setting for setting, field in RENAMED.items()}  # study field -> setting


def _setting(field: str) -> str:
    """The ``hydra.sweeper`` key of the study field ``field`` (``workers`` -> ``n_jobs``)."""
    return f"hydra.sweeper.{_SETTING.get(field, field)}"


def _sampler(value: Any, errors: list[str]) -> tuple[str, int | None]:
    """Our sampler name (and a seed) from ``sampler``: a name, or hydra-optuna-sweeper's
    ``{_target_: optuna.samplers.TPESampler, seed: N}``."""
    if isinstance(value, Mapping):
        name = SAMPLER_TARGETS.get(value.get("_target_"))
        if name is not None and set(value) <= {"_target_", "seed"}:
            return name, value.get("seed")
    elif isinstance(value, str):
        return value, None
    classes = "|".join(SAMPLER_CLASSES.values())
    errors.append(violation("hydra.sweeper.sampler", value, f"one of {', '.join(SAMPLERS)}, or "
                            f"{{_target_: optuna.samplers.<{classes}>, seed: N}} (no other "
                            "arguments)"))
    return "tpe", None


def study_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``study`` config (:class:`~sweeps.config.StudyConfig` fields) the ``hydra.sweeper``
    ``settings`` (plain values) set.

    Raises:
        ConfigError: one line per bad value (named ``study.<field>``: see :func:`relabel`),
            and per setting that has no meaning here (a list of directions, another sampler
            form, hydra-optuna-sweeper's ``max_failure_rate`` and ``custom_search_space``).
    """
    errors: list[str] = []
    study = {f.name: settings[_SETTING.get(f.name, f.name)] for f in fields(StudyConfig)}
    if not isinstance(study["direction"], str):
        errors.append(violation("hydra.sweeper.direction", study["direction"],
                                "maximize or minimize (one objective: hydra.sweeper.metric)"))
        study["direction"] = StudyConfig.direction
    study["sampler"], seed = _sampler(settings["sampler"], errors)
    if seed is not None:
        study["seed"] = seed
    if settings.get("max_failure_rate") not in (None, 0, 0.0):
        errors.append(violation("hydra.sweeper.max_failure_rate", settings["max_failure_rate"],
                                "0.0 (failed trials are counted by hydra.sweeper.max_failures)"))
    if settings.get("custom_search_space"):
        errors.append(violation("hydra.sweeper.custom_search_space",
                                settings["custom_search_space"],
                                f"null (write the search space in {PARAMS})"))
    errors += StudyConfig(**study).errors()
    if errors:
        raise ConfigError(errors)
    return study


def relabel(lines: list[str], labels: Mapping[str, str]) -> list[str]:
    """Error lines of :func:`sweeps.sweep.prepare` with ``mcmc-sweep``'s keys replaced by the
    ones written here: ``search.<name>`` by its ``labels`` entry, ``study.<field>`` by its
    ``hydra.sweeper`` setting."""
    names = {"search=": f"{PARAMS}=", **{f"search.{n}": label for n, label in labels.items()},
             **{f"study.{f.name}": _setting(f.name) for f in fields(StudyConfig)}}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(
        re.escape(k) for k in sorted(names, key=len, reverse=True)) + r")(?!\w)")
    return [pattern.sub(lambda m: names[m.group(1)], line) for line in lines]


def sweep_config(base: DictConfig, space: SearchSyntax, settings: Mapping[str, Any]
                 ) -> DictConfig:
    """The ``mcmc-sweep`` config of this sweep: the composed training config ``base`` (its
    ``hydra`` node left out), the search space and the study settings."""
    train = copy.deepcopy(base)
    with read_write(train), open_dict(train):
        train.pop("hydra", None)
    return OmegaConf.create({**OmegaConf.to_container(train, resolve=True),  # type: ignore
                             "search": space.specs, "study": study_settings(settings),
                             "dry_run": settings["dry_run"], "report": settings["report"]})


def _is_sweep(parser: OverridesParser, arg: str) -> bool:
    try:
        return parser.parse_override(arg).is_sweep_override()
    except HydraException:
        return False


def _write_results(sweep: Any, resolved: dict[str, Any], folder: Path) -> None:
    """hydra-optuna-sweeper's ``optimization_results.yaml`` in the sweep folder: the best
    complete trial's sampled values (by config key) and value."""
    import optuna

    from sweeps.launcher import plan
    from sweeps.space import SearchSpace

    p = plan(sweep, resolved)
    study = optuna.load_study(study_name=p.name, storage=p.storage_url)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials()):
        return
    space = SearchSpace(sweep.search)
    best = study.best_trial
    values = space.by_key(space.decode({k: v for k, v in best.params.items()
                                        if k in sweep.search}))
    OmegaConf.save(OmegaConf.create({"name": "mcmc_optuna", "study": p.name,
                                     "best_params": values, "best_value": best.value}),
                   folder / "optimization_results.yaml")


def _checked_space(settings: Mapping[str, Any], arguments: list[str]) -> SearchSyntax:
    """The search space, once the settings and every search entry are known to be good.

    Raises:
        ConfigError: every bad setting and entry, one line each.
    """
    errors: list[str] = []
    try:
        study_settings(settings)
    except ConfigError as err:
        errors += err.errors
    try:
        space = parse_space(settings["params"], arguments)
    except ConfigError as err:
        errors += err.errors
    if errors:
        raise ConfigError(errors)
    return space


def run_sweep(settings: Mapping[str, Any], config: DictConfig, loader: Any,
              arguments: list[str]) -> None:
    """The sweep of the multirun whose master ``config`` Hydra composed (``loader``: its
    config loader), with the ``hydra.sweeper`` ``settings`` and the command line's task
    overrides ``arguments``. Checks everything first (one ``error:`` line each, exit status
    2, or 1 for a service), then dry-runs, reports or runs the study; exits with the launch's
    status when it is not 0."""
    from sweeps.cli import exit_at_once_on_signals
    from sweeps.hydra_output import mask_yaml_file
    from sweeps.job_folders import JobFolders
    from sweeps.launcher import launch, plan
    from sweeps.preflight import check_sweep
    from sweeps.sweep import dry_run, prepare, report

    exit_at_once_on_signals()  # as mcmc-sweep: stores are written whole, nothing is half-made
    settings = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                for k, v in settings.items()}
    labels: dict[str, str] = {}
    try:
        space = _checked_space(settings, arguments)
        labels = space.labels
        if not space.specs:
            raise ConfigError([violation(PARAMS, settings["params"], "at least one search "
                                         f"entry, e.g. {PARAMS}.sampler.temperature="
                                         "'tag(log, interval(1e-5, 1e-1))'")])
        parser = OverridesParser.create()
        shared = [a for a in arguments if not _is_sweep(parser, a)] + space.fixed

        def compose(extra: list[str]) -> DictConfig:
            return loader.load_sweep_config(config, shared + extra)

        try:
            base = compose([])
        except (HydraException, OmegaConfBaseException) as err:
            raise ConfigError([f"{PARAMS}: the fixed values {space.fixed} do not compose: "
                               f"{str(err).splitlines()[0]}"]) from None
        sweep, resolved, base_config, group_options = prepare(
            sweep_config(base, space, settings), compose=compose)
    except ConfigError as err:
        fail(relabel(str(err).splitlines(), labels))
    sweep_dir = Path(config.hydra.sweep.dir)
    check_sweep(sweep, resolved, folders=[("hydra.sweep.dir", sweep_dir)], study_key=_setting)
    if sweep.dry_run:
        dry_run(sweep, resolved)
        print(f"jobs:     {sweep_dir}/<trial number>/.hydra (overrides.yaml, config.yaml)")
        return
    if sweep.report:
        raise SystemExit(report(sweep, resolved, "command without hydra.sweeper.report=true"))
    try:
        plan(sweep, resolved)  # devices: fail fast with a clear message
    except ConfigError as err:
        fail(relabel(str(err).splitlines(), labels))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    mask_yaml_file(sweep_dir / "multirun.yaml")
    code = launch(sweep, resolved, base_config, group_options,
                  jobs=JobFolders(str(sweep_dir), tuple(shared)))
    _write_results(sweep, resolved, sweep_dir)
    if code:
        raise SystemExit(code)
