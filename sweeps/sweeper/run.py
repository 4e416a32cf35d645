"""The sweep: ``mcmc-train -m hparams_search=default`` (or its shorthand ``mcmc-sweep``), Hydra's
multirun with our sweeper (``hydra/sweeper=mcmc_optuna``; the class Hydra loads is
``hydra_plugins.mcmc_optuna_sweeper.sweeper.McmcOptunaSweeper``, which calls :func:`run_sweep`).

The sweeper reads its settings (:class:`~sweeps.sweeper.settings.McmcOptunaSweeperConf`) and the
search space (``hydra.sweeper.params``, :mod:`sweeps.sweeper.params`), checks them with the
training config Hydra composed for a job (:func:`prepare`: every entry at its bounds, each
group choice) and the services (:func:`sweeps.checks.preflight.check_sweep`) before any work, then dry
runs, reports or runs the study (:func:`sweeps.workers.launcher.launch`). Error lines name the keys as
the user writes them (``hydra.sweeper.n_jobs``, ``hydra.sweeper.params.sampler.temperature``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from mcmc_core._validation import ConfigError, violation
from mcmc_core.config import TrainConfig
from mcmc_core.data import DatasetNotFoundError, load_dataset
from mcmc_core.secrets import mask_url
from sweeps.sweeper.config import ParamSpec, Sweep
from sweeps.workers.population_rules import population_errors
from sweeps.sweeper.params import SearchSyntax, parse_space
from sweeps.study.space import SearchSpace
from sweeps.study.stores import sqlite_path
from sweeps.sweeper.settings import PARAMS, SWEEPER, McmcOptunaSweeperConf
from sweeps.cli.train_app import fail

__all__ = ["dry_run", "prepare", "report", "run_sweep"]


def prepare(train: DictConfig, space: SearchSyntax, settings: McmcOptunaSweeperConf,
            compose: Callable[[list[str]], DictConfig]) -> Sweep:
    """Check the composed training config ``train``, the search ``space`` at its bounds and
    each group choice, and whether its trials can run as populations
    (``hydra.sweeper.population`` > 1). ``compose(["model=cnn"])`` composes the config with
    extra overrides.

    Raises:
        ConfigError: one line per violation, before any work starts.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), train)
    except OmegaConfBaseException as err:
        raise ConfigError([f"{err.full_key}: {str(err).splitlines()[0]}"]) from None
    typed: TrainConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    errors = typed.errors()
    base: dict[str, Any] = OmegaConf.to_container(merged, resolve=True)  # type: ignore
    search: dict[str, ParamSpec] = {name: OmegaConf.to_object(OmegaConf.merge(  # type: ignore
        OmegaConf.structured(ParamSpec), spec)) for name, spec in space.specs.items()}
    group_options: dict[str, dict] = {}
    if not errors:
        try:
            group_options = SearchSpace.compose_group_options(search, compose)
        except (HydraException, OmegaConfBaseException) as err:
            errors.append(violation(PARAMS, {k: v.choices for k, v in search.items()
                                             if v.type == "categorical"},
                                    f"choices that exist in conf/ ({str(err).splitlines()[0]})"))
    checked = SearchSpace(search, group_options, space.labels)
    if not errors:
        errors += checked.key_errors(base)
    if not errors:
        for label, values in checked.bounds():
            try:
                trial_cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                                            checked.apply(OmegaConf.create(base), values))
                trial: TrainConfig = OmegaConf.to_object(trial_cfg)  # type: ignore[assignment]
                errors += [f"{label} gives {line}" for line in trial.errors()]
            except (OmegaConfBaseException, ValueError, KeyError) as err:
                errors.append(f"{label}: {str(err).splitlines()[0]}")
    if not errors and settings.population > 1:
        errors += population_errors(typed, search, settings.population)
    if errors:
        raise ConfigError(errors)
    return Sweep(typed, base, search, settings, group_options, space.labels)


def dry_run(sweep: Sweep) -> None:
    """Print the resolved search space, the settings, storage and folders; load the dataset."""
    from sweeps.workers.launcher import plan

    p, s = plan(sweep), sweep.settings
    print(f"study:    {p.name}")
    print(f"storage:  {mask_url(p.storage_url)}")
    print(f"output:   {p.output_dir} (checkpoints/, report/)")
    print(f"tracking: {mask_url(p.tracking_uri) or 'off'} (experiment {p.name})")
    together = f", up to {s.population} trials each as one population" if s.population > 1 else ""
    where = {"slurm": "SLURM jobs", "dask": "Dask tasks"}.get(s.backend)
    on = (f"{where}, each on the GPU its scheduler gives it or the CPU" if where
          else f"on {', '.join(p.devices)}")
    print(f"workers:  {s.n_jobs} {on}, {p.threads} threads each{together}")
    shown = {k: v for k, v in dataclasses.asdict(s).items() if not k.startswith("_") and k not in
             ("params", "study_name", "output_dir", "storage", "dry_run", "report",
              "max_failure_rate", "custom_search_space", *({"slurm", "dask"} - {s.backend}))}
    print("settings: " + json.dumps(shown))
    print("search space:")
    for name, spec in sweep.search.items():
        details = {k: v for k, v in dataclasses.asdict(spec).items()
                   if v is not None and k != "key"}
        print(f"  {name:<14} {spec.key:<24} {json.dumps(details)}")
    data = load_dataset(sweep.train.dataset)
    print(f"dataset:  {data.name}: train {len(data.train.targets)}, val {len(data.val.targets)}, "
          f"test {len(data.test.targets)}, input {tuple(data.input_shape)}, "
          f"{data.n_classes} classes: loads")


def report(sweep: Sweep) -> int:
    """Write the report of an existing study; no trial runs."""
    import optuna

    from sweeps.report.best import format_reproduce
    from sweeps.workers.launcher import ATTR_PARENT_RUN, plan
    from sweeps.report.writer import format_best, write_report
    from sweeps.tracking.ui_links import closing_lines

    p = plan(sweep)
    missing = [f"{SWEEPER}.study_name={p.name!r} is not in storage {mask_url(p.storage_url)}: "
               f"run the same command without {SWEEPER}.report=true first"]
    path = sqlite_path(p.storage_url)
    if path is not None and not path.exists():  # opening it would create an empty storage
        fail(missing)
    try:
        study = optuna.load_study(study_name=p.name, storage=p.storage_url)
    except KeyError:
        fail(missing)
    summary = write_report(study, p.output_dir / "report", metric=sweep.settings.metric,
                           tracking_uri=p.tracking_uri,
                           parent_run_id=study.user_attrs.get(ATTR_PARENT_RUN))
    print(f"study {p.name!r}: {summary['complete']} complete, {summary['pruned']} pruned, "
          f"{summary['failed']} failed")
    print(format_best(summary, sweep.settings.metric))
    if reproduce := format_reproduce(summary):
        print(reproduce)
    print(f"report: {p.output_dir / 'report'} ({', '.join(summary['files'])})")
    print(closing_lines(p.tracking_uri, study.user_attrs.get(ATTR_PARENT_RUN), p.storage_url))
    return 0


def _is_sweep(parser: OverridesParser, arg: str) -> bool:
    try:
        return parser.parse_override(arg).is_sweep_override()
    except HydraException:
        return False


def _write_results(sweep: Sweep, folder: Path) -> None:
    """hydra-optuna-sweeper's ``optimization_results.yaml`` in the sweep folder: the best
    complete trial's sampled values (by config key) and value."""
    import optuna

    from sweeps.workers.launcher import plan

    p = plan(sweep)
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


def _checked(settings: Mapping[str, Any], arguments: list[str]
             ) -> tuple[McmcOptunaSweeperConf, SearchSyntax]:
    """The checked settings and the search space.

    Raises:
        ConfigError: every bad setting and entry, one line each.
    """
    errors: list[str] = []
    conf = McmcOptunaSweeperConf(**{k: v for k, v in settings.items() if not k.startswith("_")})
    try:
        conf = conf.checked()
    except ConfigError as err:
        errors += err.errors
    try:
        space = parse_space(conf.params, arguments)
    except ConfigError as err:
        errors += err.errors
    if not errors and not space.specs:
        errors.append(violation(PARAMS, conf.params, "at least one search entry, e.g. "
                                f"{PARAMS}.sampler.temperature='tag(log, interval(1e-5, 1e-1))'"))
    if errors:
        raise ConfigError(errors)
    return conf, space


def run_sweep(settings: Mapping[str, Any], config: DictConfig, loader: Any,
              arguments: list[str]) -> None:
    """The sweep of the multirun whose master ``config`` Hydra composed (``loader``: its
    config loader), with the ``hydra.sweeper`` ``settings`` and the command line's task
    overrides ``arguments``. Checks everything first (one ``error:`` line each, exit status
    2, or 1 for a service), then dry-runs, reports or runs the study; exits with the launch's
    status when it is not 0."""
    from sweeps.cli.main import exit_at_once_on_signals
    from sweeps.cli.masking import mask_yaml_file
    from sweeps.workers.job_folders import JobFolders
    from sweeps.workers.launcher import launch, plan
    from sweeps.checks.preflight import check_sweep

    # MLflow's INFO lines (creating its tables on first use) are not the sweep's progress; set
    # before MLflow is imported (it reads this when it configures its loggers) and inherited by
    # the workers.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    exit_at_once_on_signals()  # stores are written whole: nothing is half-made
    settings = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                for k, v in settings.items()}
    try:
        conf, space = _checked(settings, arguments)
        parser = OverridesParser.create()
        shared = [a for a in arguments if not _is_sweep(parser, a)] + space.fixed

        def compose(extra: list[str]) -> DictConfig:
            return loader.load_sweep_config(config, shared + extra)

        try:
            train = copy.deepcopy(compose([]))
        except (HydraException, OmegaConfBaseException) as err:
            raise ConfigError([f"{PARAMS}: the fixed values {space.fixed} do not compose: "
                               f"{str(err).splitlines()[0]}"]) from None
        with read_write(train), open_dict(train):
            train.pop("hydra", None)
        sweep = prepare(train, space, conf, compose)
    except ConfigError as err:
        fail(str(err).splitlines())
    sweep_dir = Path(config.hydra.sweep.dir)
    check_sweep(sweep, folders=[("hydra.sweep.dir", sweep_dir)])
    if conf.dry_run:
        dry_run(sweep)
        print(f"jobs:     {sweep_dir}/<trial number>/.hydra (overrides.yaml, config.yaml)")
        return
    if conf.report:
        raise SystemExit(report(sweep))
    try:
        plan(sweep)  # devices: fail fast with a clear message
        load_dataset(sweep.train.dataset)  # likewise for missing data files
    except (ConfigError, DatasetNotFoundError) as err:
        fail(str(err).splitlines())
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    mask_yaml_file(sweep_dir / "multirun.yaml")
    code = launch(sweep, jobs=JobFolders(str(sweep_dir), tuple(shared)))
    _write_results(sweep, sweep_dir)
    if code:
        raise SystemExit(code)
