"""``mcmc-sweep``: an Optuna study over ``mcmc-train``'s configuration (``conf/sweep.yaml``).

Examples::

    mcmc-sweep                                   # the default sweep: digits, 2 workers
    mcmc-sweep study.n_trials=40                 # the same study, continued to 40 trials
    mcmc-sweep dry_run=true                      # print the plan, run nothing
    mcmc-sweep report=true                       # the report of the existing study
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mcmc_core._validation import ConfigError, violation
from mcmc_core.config import TrainConfig
from mcmc_core.data import DatasetNotFoundError, load_dataset
from mcmc_core.secrets import mask_url
from sweeps.config import SweepConfig, register_sweep_configs, typed_config
from sweeps.population import population_errors
from sweeps.space import SearchSpace
from sweeps.stores import sqlite_path
from sweeps.train import fail, override_errors

__all__ = ["main", "prepare"]

register_sweep_configs()

_SWEEP_ONLY = ("search", "study", "dry_run", "report")


def _compose_with(extra: list[str]) -> DictConfig:
    task = list(HydraConfig.get().overrides.task)
    return hydra.compose(config_name="sweep", overrides=task + extra)


def prepare(cfg: DictConfig, compose: Callable[[list[str]], DictConfig] | None = None,
            ) -> tuple[SweepConfig, dict[str, Any], dict[str, Any], dict]:
    """Validate a composed sweep config, including every search entry at its bounds and each
    group choice, and whether its trials can run as populations (``study.population`` > 1).
    Returns the typed config, the resolved config, the base training config of a
    trial (plain dict) and the composed group options. ``compose(["model=cnn"])`` composes the
    config with extra overrides (default: ``conf/sweep.yaml`` with the command line's).

    Raises:
        ConfigError: one line per violation, before any work starts.
    """
    cfg = typed_config(cfg)
    sweep: SweepConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    errors = sweep.errors()
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore
    base = {k: v for k, v in resolved.items() if k not in _SWEEP_ONLY}
    group_options: dict[str, dict] = {}
    if not errors:
        try:
            group_options = SearchSpace.compose_group_options(sweep.search,
                                                              compose or _compose_with)
        except (HydraException, OmegaConfBaseException) as err:
            errors.append(violation("search", {k: v.choices for k, v in sweep.search.items()
                                               if v.type == "categorical"},
                                    f"choices that exist in conf/ ({str(err).splitlines()[0]})"))
    if not errors:
        errors += SearchSpace(sweep.search, group_options).key_errors(base)
    if not errors:
        space = SearchSpace(sweep.search, group_options)
        for label, values in space.bounds():
            try:
                trial_cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                                            space.apply(OmegaConf.create(base), values))
                typed: TrainConfig = OmegaConf.to_object(trial_cfg)  # type: ignore[assignment]
                errors += [f"{label} gives {line}" for line in typed.errors()]
            except (OmegaConfBaseException, ValueError, KeyError) as err:
                errors.append(f"{label}: {str(err).splitlines()[0]}")
    if not errors and sweep.study.population > 1:
        errors += population_errors(sweep.train_config(), sweep.search, sweep.study.population)
    if errors:
        raise ConfigError(errors)
    return sweep, resolved, base, group_options


def dry_run(sweep: SweepConfig, resolved: dict[str, Any]) -> None:
    """Print the resolved search space, study settings, storage and folders; load the dataset."""
    from sweeps.launcher import plan

    p = plan(sweep, resolved)
    print(f"study:    {p.name}")
    print(f"storage:  {mask_url(p.storage_url)}")
    print(f"output:   {p.output_dir} (checkpoints/, report/)")
    print(f"tracking: {mask_url(p.tracking_uri) or 'off'} (experiment {p.name})")
    together = (f", up to {sweep.study.population} trials each as one population"
                if sweep.study.population > 1 else "")
    print(f"workers:  {sweep.study.workers} on {', '.join(p.devices)}, {p.threads} threads each"
          f"{together}")
    print("settings: " + json.dumps({k: v for k, v in resolved["study"].items()
                                     if k not in ("name", "output_dir", "storage")}))
    print("search space:")
    for name, spec in resolved["search"].items():
        details = {k: v for k, v in spec.items() if v is not None and k != "key"}
        print(f"  {name:<14} {spec['key']:<24} {json.dumps(details)}")
    data = load_dataset(sweep.dataset)
    print(f"dataset:  {data.name}: train {len(data.train.targets)}, val {len(data.val.targets)}, "
          f"test {len(data.test.targets)}, input {tuple(data.input_shape)}, "
          f"{data.n_classes} classes: loads")


def report(sweep: SweepConfig, resolved: dict[str, Any],
           without: str = "mcmc-sweep command without report=true") -> int:
    """Write the report of an existing study; no trial runs (``without``: what to run first
    when there is none)."""
    import optuna

    from sweeps.best import format_reproduce
    from sweeps.launcher import ATTR_PARENT_RUN, plan
    from sweeps.report import format_best, write_report

    p = plan(sweep, resolved)
    missing = [f"study.name={p.name!r} is not in storage {mask_url(p.storage_url)}: run the same "
               f"{without} first"]
    path = sqlite_path(p.storage_url)
    if path is not None and not path.exists():  # opening it would create an empty storage
        fail(missing)
    try:
        study = optuna.load_study(study_name=p.name, storage=p.storage_url)
    except KeyError:
        fail(missing)
    summary = write_report(study, p.output_dir / "report", tracking_uri=p.tracking_uri,
                           parent_run_id=study.user_attrs.get(ATTR_PARENT_RUN))
    print(f"study {p.name!r}: {summary['complete']} complete, {summary['pruned']} pruned, "
          f"{summary['failed']} failed")
    print(format_best(summary, sweep.study.metric))
    if reproduce := format_reproduce(summary):
        print(reproduce)
    print(f"report: {p.output_dir / 'report'} ({', '.join(summary['files'])})")
    return 0


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="sweep")
def sweep_app(cfg: DictConfig) -> None:
    """The Hydra task: validate, then dry run, report, or launch the sweep."""
    from sweeps.launcher import launch, plan

    try:
        sweep, resolved, base, group_options = prepare(cfg)
        if sweep.dry_run:
            dry_run(sweep, resolved)
            return
        if sweep.report:
            raise SystemExit(report(sweep, resolved))
        plan(sweep, resolved)  # devices: fail fast with a clear message
        load_dataset(sweep.dataset)  # likewise for missing data files
    except (ConfigError, DatasetNotFoundError) as err:
        fail(str(err).splitlines())
    raise SystemExit(launch(sweep, resolved, base, group_options))


def main() -> Any:
    """Console entry point: bad overrides are reported one line each before Hydra composes."""
    errors = override_errors(sys.argv[1:], SweepConfig, app="sweep")
    if errors:
        fail(errors)
    return sweep_app()


if __name__ == "__main__":
    main()
