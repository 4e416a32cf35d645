"""The ``mcmc_optuna`` sweeper's parts without a sweep: hydra-optuna-sweeper's search syntax read
into our search entries (each form), the command-line rewrite of ``hydra.sweeper.params``, the
mapping of its settings onto ``study``, error lines in its own names, and its registration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mcmc_core._validation import ConfigError
from sweeps.sweeper.params import FORMS, parse_space, rewrite_params_args
from sweeps.study.space import SearchSpace
from sweeps.sweeper.settings import McmcOptunaSweeperConf

#: Each form of hydra-optuna-sweeper's syntax and the entry it is read into.
FORMS_READ = {
    "interval(0.999, 0.9999)": {"type": "float", "low": 0.999, "high": 0.9999, "log": False},
    "tag(log, interval(1e-5, 1e-2))": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "int(interval(10, 20))": {"type": "int", "low": 10.0, "high": 20.0, "log": False},
    "tag(log, int(interval(1, 64)))": {"type": "int", "low": 1.0, "high": 64.0, "log": True},
    "choice(mlp, cnn)": {"type": "categorical", "choices": ["mlp", "cnn"]},
    "choice([], [64, 32])": {"type": "categorical", "choices": [[], [64, 32]]},
    "0.001,0.01,0.1": {"type": "categorical", "choices": [0.001, 0.01, 0.1]},
    # Hydra's range: stop excluded, as its basic sweeper runs it.
    "range(1, 10, 3)": {"type": "int", "low": 1.0, "high": 7.0, "step": 3.0},
    "range(4)": {"type": "int", "low": 0.0, "high": 3.0, "step": 1.0},
    "range(0.1, 0.5, 0.1)": {"type": "float", "low": 0.1, "high": 0.4, "step": 0.1},
    "shuffle(range(3))": {"type": "categorical"},
}
DEFAULT_SEARCH = {"sampler.temperature": "tag(log, interval(1e-5, 1e-2))",
                  "schedule.cooling_rate": "interval(0.999, 0.99995)",
                  "sampler.flip_ratio": "tag(log, interval(5e-4, 2e-2))"}


def _settings(**changes) -> dict:
    """The default ``hydra.sweeper`` settings, plain, with ``changes``."""
    conf = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(McmcOptunaSweeperConf)}
    return {**conf, **changes}


@pytest.mark.parametrize("value", list(FORMS_READ))
def test_each_form_is_read_into_its_entry(value: str) -> None:
    space = parse_space({"model.hidden": value}, [])
    entry = space.specs["hidden"]
    assert entry["key"] == "model.hidden"
    for field, expected in FORMS_READ[value].items():
        assert entry[field] == (expected if field == "choices" else pytest.approx(expected))
    assert space.labels == {"hidden": "hydra.sweeper.params.model.hidden"}


def test_every_form_gives_a_distribution_that_samples_within_it() -> None:
    import optuna

    params = {f"k{i}.v": value for i, value in enumerate(FORMS_READ)}
    space = parse_space(params, [])
    names = SearchSpace(_specs(space.specs)).distributions()
    trial = optuna.create_study().ask()
    values = SearchSpace(_specs(space.specs)).suggest(trial)
    assert set(values) == set(names) == {f"k{i}.v" for i in range(len(FORMS_READ))}
    assert values["k3.v"] in range(1, 65) and values["k7.v"] in (1, 4, 7)


def _specs(specs: dict) -> dict:
    from sweeps.sweeper.config import ParamSpec

    return {name: ParamSpec(**entry) for name, entry in specs.items()}


def test_an_int_entry_is_checked_at_int_bounds() -> None:
    """``int(interval(10, 20))`` on an int key: the checks before any work try 10 and 20, not
    10.0 and 20.0 (which OmegaConf refuses for an int key)."""
    space = SearchSpace(_specs(parse_space({"trainer.steps_per_epoch": "int(interval(10, 20))"},
                                           []).specs))
    assert space.bounds() == [
        ("hydra.sweeper.params.trainer.steps_per_epoch.low", {"steps_per_epoch": 10}),
        ("hydra.sweeper.params.trainer.steps_per_epoch.high", {"steps_per_epoch": 20})]
    assert all(type(v) is int for _, values in space.bounds() for v in values.values())


def test_our_search_entries_and_plain_values_work_alongside() -> None:
    params = {"temperature": {"key": "sampler.temperature", "type": "float", "low": 1e-5,
                              "high": 1e-1, "log": True},
              "sampler.flip_ratio": {"type": "float", "low": 1e-4, "high": 1e-2},
              "trainer.epochs": 5, "model": "cnn", "model.hidden": "[64]"}
    space = parse_space(params, [])
    assert space.specs["temperature"]["key"] == "sampler.temperature"
    assert space.specs["flip_ratio"]["key"] == "sampler.flip_ratio"
    assert space.fixed == ["trainer.epochs=5", "model=cnn", "model.hidden=[64]"]


def test_the_default_space_reads_as_the_entries_mcmc_sweep_searched() -> None:
    """The names, keys and bounds of ``conf/hparams_search/default.yaml``'s space are those of
    the search space ``mcmc-sweep`` had before it was a shorthand: the study's name hashes
    them, so this keeps naming the studies it made the same."""
    from omegaconf import OmegaConf

    params = OmegaConf.load(Path(__file__).parents[2] / "conf" / "hparams_search" /
                            "default.yaml").hydra.sweeper.params
    assert dict(params) == DEFAULT_SEARCH
    entry = {"step": None, "choices": None}
    ours = {"temperature": {"key": "sampler.temperature", "type": "float", "low": 1e-5,
                            "high": 1e-2, "log": True, **entry},
            "cooling_rate": {"key": "schedule.cooling_rate", "type": "float", "low": 0.999,
                             "high": 0.99995, "log": False, **entry},
            "flip_ratio": {"key": "sampler.flip_ratio", "type": "float", "low": 5e-4,
                           "high": 2e-2, "log": True, **entry}}
    assert parse_space(DEFAULT_SEARCH, []).specs == ours
    assert list(parse_space(DEFAULT_SEARCH, []).specs) == list(ours)


def test_names_are_the_last_part_unless_two_share_it() -> None:
    space = parse_space({"sampler.temperature": "interval(1, 2)",
                         "schedule.temperature": "interval(1, 2)",
                         "sampler.flip_ratio": "interval(0.1, 0.2)"}, [])
    assert list(space.specs) == ["sampler.temperature", "schedule.temperature", "flip_ratio"]


def test_a_command_line_entry_replaces_the_one_of_its_key_in_place() -> None:
    """``hydra.sweeper.params.sampler.temperature=...`` (Hydra nests it beside the flat key) and
    a sweep override ``sampler.flip_ratio=a,b`` replace the entries of their keys; null
    removes one."""
    params = {**DEFAULT_SEARCH, "sampler": {"temperature": "tag(log, interval(1e-5, 1e-1))"},
              "schedule": {"cooling_rate": None}}
    space = parse_space(params, ["sampler.flip_ratio=0.001,0.01", "trainer.epochs=2"])
    assert list(space.specs) == ["temperature", "flip_ratio"]
    assert space.specs["temperature"]["high"] == pytest.approx(0.1)
    assert space.specs["flip_ratio"]["choices"] == [0.001, 0.01]
    assert space.labels["flip_ratio"] == "sampler.flip_ratio"
    assert space.fixed == []  # trainer.epochs=2 is no sweep: Hydra composed it already


def test_another_sweepers_params_are_left_alone() -> None:
    args = ["-m", "hydra/sweeper=basic", "hydra.sweeper.params.seed=1,2"]
    assert rewrite_params_args(args) == args


def test_the_command_line_passes_params_on_quoted_and_forced() -> None:
    args = ["-m", "hparams_search=default", "hydra.sweeper.n_trials=40",
            "hydra.sweeper.params.sampler.temperature=tag(log, interval(1e-5, 1e-1))",
            "+hydra.sweeper.params.model.hidden=choice([],[64])",
            "~hydra.sweeper.params.sampler.flip_ratio",
            "hydra.sweeper.params.x=it's \"both\""]
    assert rewrite_params_args(args) == [
        "-m", "hparams_search=default", "hydra.sweeper.n_trials=40",
        "++hydra.sweeper.params.sampler.temperature='tag(log, interval(1e-5, 1e-1))'",
        "++hydra.sweeper.params.model.hidden='choice([],[64])'",
        "++hydra.sweeper.params.sampler.flip_ratio=null",
        "++hydra.sweeper.params.x=it's \"both\""]


@pytest.mark.parametrize("value, says", [
    ("intervl(1, 2)", "Unknown function 'intervl'"),
    ("glob(*)", "glob_choice_sweep is not a search form"),
    ("range(3, 3)", "range gives no value"),
    ("interval(1", "no viable alternative"),
])
def test_a_bad_form_is_one_line_naming_key_value_and_forms(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_space({"sampler.temperature": value, "seed": "also(bad)"}, [])
    first, second = err.value.errors
    assert first.startswith(f"hydra.sweeper.params.sampler.temperature={value!r} is not "
                            f"allowed: expected {FORMS} (")
    assert says in first and "\n" not in first
    assert second.startswith("hydra.sweeper.params.seed='also(bad)' is not allowed")


@pytest.mark.parametrize("params, says", [
    ({"sampler.temperature": "tag(log, interval(0, 1))"},
     "hydra.sweeper.params.sampler.temperature.low=0.0 is not allowed: expected > 0 on a log"),
    ({"sampler.temperature": "interval(2, 1)"},
     "hydra.sweeper.params.sampler.temperature.low/high=[2.0, 1.0] is not allowed"),
    ({"t": {"key": "sampler.temperature", "low": 1, "hihg": 2}},
     "hydra.sweeper.params.t.hihg=2 is not allowed: expected a search entry's field: key, type"),
    ({"t": {"key": "sampler.temperature", "low": "abc", "high": 2}}, "hydra.sweeper.params.t.low"),
])
def test_an_entry_out_of_range_is_one_line(params: dict, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_space(params, [])
    assert len(err.value.errors) == 1 and err.value.errors[0].startswith(says), err.value.errors


def test_checked_settings_are_what_the_launcher_reads() -> None:
    conf = McmcOptunaSweeperConf(**_settings(n_jobs=3, study_name="s", n_trials=7,
                                             population=4, sampler="random", seed=5)).checked()
    assert conf == McmcOptunaSweeperConf(n_jobs=3, study_name="s", n_trials=7, population=4,
                                         sampler="random", seed=5)
    # hydra-optuna-sweeper's form of the sampler: its class and seed.
    conf = McmcOptunaSweeperConf(**_settings(sampler={"_target_": "optuna.samplers.CmaEsSampler",
                                                      "seed": 1234})).checked()
    assert (conf.sampler, conf.seed) == ("cmaes", 1234)


def test_the_defaults_are_those_mcmc_sweep_ran() -> None:
    """Same defaults, same study: ``hparams_search=default`` needs to set none of them."""
    conf = dataclasses.asdict(McmcOptunaSweeperConf().checked())
    assert {k: conf[k] for k in DEFAULTS_BEFORE} == DEFAULTS_BEFORE
    assert conf["study_name"] is conf["storage"] is conf["output_dir"] is None


#: ``mcmc-sweep``'s study settings before it was a shorthand (its dry run's ``settings:`` line).
DEFAULTS_BEFORE = {"metric": "val_accuracy", "direction": "maximize", "sampler": "tpe",
                   "pruner": "median", "n_trials": 24, "timeout": None, "n_jobs": 2,
                   "max_failures": 5, "max_retries": 3, "gpus": None, "heartbeat_interval": 10,
                   "grace_period": 30, "seed": 0, "population": 1}


def test_bad_settings_are_one_line_each_in_the_sweepers_names() -> None:
    with pytest.raises(ConfigError) as err:
        McmcOptunaSweeperConf(**_settings(
            n_jobs=0, direction=["maximize", "minimize"],
            sampler={"_target_": "optuna.samplers.TPESampler", "n_startup_trials": 10},
            max_failure_rate=0.5, custom_search_space="my.fn")).checked()
    lines = err.value.errors
    assert [line.split("=", 1)[0] for line in lines] == [
        "hydra.sweeper.sampler", "hydra.sweeper.direction", "hydra.sweeper.n_jobs",
        "hydra.sweeper.max_failure_rate", "hydra.sweeper.custom_search_space"]
    assert "{_target_: optuna.samplers.<TPESampler|RandomSampler|" in lines[0]


def test_the_sweeper_is_registered_under_hydra_sweeper() -> None:
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    import hydra_plugins.mcmc_optuna_sweeper.sweeper as plugin

    node = ConfigStore.instance().load("hydra/sweeper/mcmc_optuna.yaml").node
    assert node._target_ == f"{plugin.__name__}.McmcOptunaSweeper"
    assert Plugins.is_in_toplevel_plugins_module(node._target_)
    assert node._recursive_ is False  # a sampler: {_target_: ...} stays a config


def test_the_plugin_imports_without_torch_or_optuna() -> None:
    """Hydra's plugin scan imports the sweeper (and its settings, ``McmcOptunaSweeperConf``) at
    the start of every Hydra app: that must not load torch or Optuna."""
    import subprocess
    import sys

    code = ("import sys, hydra_plugins.mcmc_optuna_sweeper.sweeper; "
            "print(sorted({'torch', 'optuna', 'mlflow', 'mcmc_core'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", out
