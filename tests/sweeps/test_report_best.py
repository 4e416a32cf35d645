"""The report's best trial (``sweeps/report/best.py``): an experiment of ``mcmc-train``
(``<report>/best/experiment/best.yaml``) run by a short printed command that composes with
``conf/train.yaml``'s defaults list, so group overrides (``tracking=none``, ``schedule=step``)
can be added to it; unchanged it reproduces the trial exactly."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from mcmc_core.config import register_configs
from mcmc_core.trainers import load_checkpoint
from sweeps.report.best import (EXPERIMENT, EXPERIMENT_FILE, best_config, differences,
                                group_choices, write_best)
from sweeps.study.space import GROUPS
from sweeps.workers.trial_context import stored_config
from sweeptools import env

#: A sweep whose trials differ in a group without a ``name`` key (the sampler) and in a list.
SEARCH = ["hydra.sweeper.params.sampler=choice(barker, metropolis)",
          "hydra.sweeper.params.model.hidden=choice([], [8])"]
#: ``mcmc-train``'s option of each group.
DEFAULTS = {"model": "mlp", "dataset": "digits", "sampler": "metropolis",
            "schedule": "exponential", "flip_schedule": "constant", "trainer": "mcmc"}


def _compose(overrides: list[str]) -> dict[str, Any]:
    """``conf/train.yaml`` composed with ``overrides``, resolved (in Hydra's own app)."""
    register_configs()
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _options() -> dict[str, list[str]]:
    folder = resources.files("conf")
    return {g: sorted(p.name[:-5] for p in folder.joinpath(g).iterdir()
                      if p.name.endswith(".yaml")) for g in GROUPS}


def _study_of(config: dict[str, Any], value: float = 0.5) -> optuna.Study:
    """An in-memory study with one complete trial of resolved ``config``."""
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr("config", config)
    study.tell(trial, value)
    return study


def _without_run_keys(config: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    out.pop("tracking")
    for key in ("checkpoint_dir", "resume", "verbose"):
        out["trainer"].pop(key)
    return out


def test_experiment_name_is_free_in_conf() -> None:
    # conf/ is searched before --config-dir: a conf/experiment/best.yaml would win.
    assert not resources.files("conf").joinpath(f"experiment/{EXPERIMENT}.yaml").is_file()


@pytest.mark.parametrize(("overrides", "choices"), [
    ([], {}),
    (["dataset=synthetic", "schedule=step", "sampler=tempering", "trainer=ste"],
     {"dataset": "synthetic", "schedule": "step", "sampler": "tempering", "trainer": "ste"}),
    # The sampler has no name: the option it differs least from.
    (["sampler=barker", "model=cnn", "flip_schedule=exponential"],
     {"sampler": "barker", "model": "cnn", "flip_schedule": "exponential"}),
    (["schedule.name=linear"], {"schedule": "linear"}),  # the option its name says
])
def test_group_choices_are_the_composed_options(overrides, choices) -> None:
    config = _compose([*overrides, "sampler.temperature=0.01", "dataset.binarize=thermometer"])
    assert group_choices(config, _options(), _compose) == {**DEFAULTS, **choices}


def test_differences_are_nested_and_lists_whole() -> None:
    base = {"a": {"b": 1, "c": [1, 2], "d": {"e": "x"}}, "f": 1.0, "g": 1}
    config = {"a": {"b": 1, "c": [1, 3], "d": {"e": "x"}}, "f": 1.0, "g": True, "h": None}
    # A bool is not the int it equals; keys base lacks are kept.
    assert differences(config, base) == {"a": {"c": [1, 3]}, "g": True, "h": None}


def test_written_experiment_composes_to_the_trial_and_takes_group_overrides(tmp_path) -> None:
    config = _compose(["dataset=synthetic", "sampler=barker", "model.hidden=[8]",
                       "schedule.cooling_rate=0.9993553948078184", "sampler.temperature=5e-05",
                       "trainer.checkpoint_dir=/elsewhere", "tracking.uri=sqlite:///x.db",
                       "device=cpu"])
    config["device"] = "cuda:1"  # a worker's GPU
    written = write_best(_study_of(config), tmp_path / "report")
    path = tmp_path / "report" / EXPERIMENT_FILE
    assert written is not None and written["config"] == str(path)
    assert shlex.split(written["command"]) == [
        "mcmc-train", "--config-dir", str((tmp_path / "report" / "best").resolve()),
        f"experiment={EXPERIMENT}"]
    text = path.read_text()
    assert text.startswith("# @package _global_\n") and written["command"] in text
    body = yaml.safe_load(text)
    # The trial's options, then only what differs from them: short to read, no run settings.
    assert body["defaults"] == [{f"override /{g}": c} for g, c in
                                {**DEFAULTS, "dataset": "synthetic", "sampler": "barker"}.items()]
    assert {k: v for k, v in body.items() if k != "defaults"} == {
        "model": {"hidden": [8]}, "sampler": {"temperature": 5e-05},
        "schedule": {"cooling_rate": 0.9993553948078184}, "device": "cuda"}
    search = f"hydra.searchpath=[file://{tmp_path / 'report' / 'best'}]"
    again = _compose([search, f"experiment={EXPERIMENT}"])
    assert again == best_config(config, _compose([]))
    variant = _compose([search, f"experiment={EXPERIMENT}", "tracking=none", "schedule=step"])
    assert not variant["tracking"]["enabled"]
    assert variant["schedule"] == {**_compose(["schedule=step"])["schedule"],
                                   "cooling_rate": 0.9993553948078184}
    assert variant["sampler"] == again["sampler"]


def test_an_earlier_versions_config_is_replaced(tmp_path) -> None:
    old = tmp_path / "report" / "best" / "config.yaml"
    old.parent.mkdir(parents=True)
    old.write_text("defaults: [train_schema, _self_]\n")
    write_best(_study_of(_compose([])), tmp_path / "report")
    files = {p.relative_to(tmp_path / "report").as_posix()
             for p in (tmp_path / "report").rglob("*") if p.is_file()}
    assert files == {EXPERIMENT_FILE}


@pytest.fixture(scope="module")
def best(new_sweep) -> SimpleNamespace:
    """A 3-trial sweep searching the sampler and the hidden layers; its best trial and
    command."""
    s = new_sweep("best")
    launch = s.run(s.args("hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1", *SEARCH)).ok()
    summary = json.loads((s.out / "report" / "best.json").read_text())
    study = s.study(launch.study_name)
    return SimpleNamespace(s=s, launch=launch, summary=summary, trial=study.best_trial,
                           command=summary["best"]["command"])


def _rerun(best: SimpleNamespace, cwd: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    """Run the best command with ``extra`` overrides (and a checkpoint folder) in ``cwd``;
    returns its output and its checkpoint."""
    args = shlex.split(best.command)
    assert args[0] == "mcmc-train"
    script = Path(sys.executable).parent / "mcmc-train"
    done = subprocess.run([str(script), *args[1:], *extra, f"trainer.checkpoint_dir={cwd}/ck"],
                          cwd=cwd, env=env(), text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, load_checkpoint(cwd / "ck" / "last.pt")


def test_printed_command_is_short_and_in_best_json(best) -> None:
    folder = best.s.out / "report"
    assert f"reproduce the best trial: {best.command}\n" in best.launch.stdout
    assert shlex.split(best.command) == ["mcmc-train", "--config-dir",
                                         str((folder / "best").resolve()), "experiment=best"]
    assert best.summary["best"]["config"] == str(folder / EXPERIMENT_FILE)
    assert EXPERIMENT_FILE in best.summary["files"]
    body = yaml.safe_load((folder / EXPERIMENT_FILE).read_text())
    assert {"override /sampler": best.trial.params["sampler"]} in body["defaults"]
    assert {"override /dataset": "synthetic"} in body["defaults"]
    assert body["sampler"]["temperature"] == best.trial.params["temperature"]
    assert body["dataset"]["binarize"] == "thermometer"  # the sweep's default
    assert "tracking" not in body and "hydra" not in body


def test_best_command_with_tracking_none_reproduces_the_trial_exactly(best, tmp_path) -> None:
    out, checkpoint = _rerun(best, tmp_path, "tracking=none")
    trial = best.trial
    # The value, the best epoch's test accuracy and every epoch's value, to the last bit.
    assert checkpoint["best_metric"]["val_accuracy"] == trial.value
    assert checkpoint["best_metric"]["test_accuracy"] == trial.user_attrs["best_test_accuracy"]
    assert [e["val_accuracy"] for e in checkpoint["history"]] == [
        v for _, v in sorted(trial.intermediate_values.items())]
    assert f"val_accuracy={trial.value:.4f}" in out.splitlines()[-1]
    # The same config, but for where it ran; nothing tracked.
    assert (_without_run_keys(checkpoint["config"])
            == _without_run_keys(stored_config(trial)))
    assert not checkpoint["config"]["tracking"]["enabled"]
    assert not (tmp_path / "mlflow.db").exists()


def test_best_command_with_another_schedule_runs_it(best, tmp_path) -> None:
    _, checkpoint = _rerun(best, tmp_path, "tracking=none", "schedule=step")
    config, trial_config = checkpoint["config"], stored_config(best.trial)
    step = _compose(["schedule=step"])["schedule"]
    assert {k: config["schedule"][k] for k in ("name", "unit", "step_size", "gamma")} == {
        k: step[k] for k in ("name", "unit", "step_size", "gamma")}
    assert config["sampler"] == trial_config["sampler"]  # the rest of the trial stays
    assert config["model"] == trial_config["model"]
