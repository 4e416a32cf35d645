"""``mcmc-train -m hparams_search=default``: the sweep, through our Hydra sweeper
(``hydra/sweeper=mcmc_optuna``). It reaches exactly ``n_trials`` finished trials logged under one
MLflow parent run, reruns to nothing, is the same study as its shorthand ``mcmc-sweep`` with the
same arguments (each command resumes the other's), keeps Hydra's multirun layout (a job folder
per trial with its overrides), runs a search written in hydra-optuna-sweeper's syntax, runs
populations, reports, and refuses bad input -- the sweep's old keys too -- one line each before
any work."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sweeptools import STUDY_LINE, TINY, check_first_launch, finished, states

N_TRIALS = 6
#: A search in hydra-optuna-sweeper's syntax, each form once, as a user's own config group
#: file: lightning-hydra-template's hparams_search/mnist_optuna.yaml with its sweeper line
#: changed (``optuna`` -> ``mcmc_optuna``), its sampler in hydra-optuna-sweeper's form.
FORMS = """\
# @package _global_
defaults:
  - override /hydra/sweeper: mcmc_optuna
hydra:
  mode: MULTIRUN
  sweeper:
    storage: null
    study_name: null
    n_jobs: 2
    direction: maximize
    n_trials: 4
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 1234
    params:
      sampler.temperature: tag(log, interval(1e-4, 1e-2))
      schedule.cooling_rate: interval(0.999, 0.9999)
      trainer.steps_per_epoch: int(interval(10, 20))
      model.hidden: choice([], [16])
      seed: range(0, 3)
      sampler.flip_ratio: 0.002,0.005
      model.output_scale: {type: float, low: 1.0, high: 4.0}
      trainer.epochs: 2
"""


def _job_folders(folder: Path) -> dict[int, Path]:
    return {int(p.name): p for p in folder.iterdir() if p.name.isdigit()}


def _overrides(job: Path) -> list[str]:
    return yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())


@pytest.fixture(scope="module")
def multirun(new_sweep):
    """Six trials with ``-m``, then the same command again (its own multirun folder)."""
    s = new_sweep("hydra-sweeper")
    args = s.multirun_args(f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2")
    first = s.run([*args, f"hydra.sweep.dir={s.root / 'multirun-1'}"], program="mcmc-train").ok()
    name = first.study_name
    after_first, runs_first = s.study(name).get_trials(), s.runs(name)
    again = s.run([*args, f"hydra.sweep.dir={s.root / 'multirun-2'}"], program="mcmc-train").ok()
    report = s.run([*args, "hydra.sweeper.report=true"], program="mcmc-train").ok()
    return SimpleNamespace(s=s, name=name, first=first, again=again, report=report,
                           after_first=after_first, runs_first=runs_first,
                           trials=s.study(name).get_trials(), runs=s.runs(name))


def test_multirun_reaches_exactly_n_trials_in_worker_processes(multirun) -> None:
    check_first_launch(multirun.first, multirun.after_first, N_TRIALS)


def test_one_mlflow_parent_with_one_finished_child_per_trial(multirun) -> None:
    runs = multirun.runs_first
    assert len(runs.parents) == 1 and runs.parents[0].info.status == "FINISHED"
    parent = runs.parents[0].info.run_id
    assert len(runs.children) == N_TRIALS
    assert all(r.info.status == "FINISHED" for r in runs.children)
    assert all(r.data.tags["mlflow.parentRunId"] == parent for r in runs.children)


def test_the_same_command_again_runs_nothing(multirun) -> None:
    assert multirun.again.finished_before == N_TRIALS
    assert len(multirun.trials) == len(multirun.after_first)
    assert len(multirun.runs.all) == len(multirun.runs_first.all)
    assert not _job_folders(multirun.s.root / "multirun-2")  # no trial ran


def test_each_trial_has_a_hydra_job_folder_with_its_sampled_values(multirun) -> None:
    folder = multirun.s.root / "multirun-1"
    jobs = _job_folders(folder)
    assert sorted(jobs) == sorted(t.number for t in multirun.after_first)
    keys = {"temperature": "sampler.temperature", "cooling_rate": "schedule.cooling_rate",
            "flip_ratio": "sampler.flip_ratio"}
    for trial in multirun.after_first:
        overrides = _overrides(jobs[trial.number])
        assert overrides[:len(TINY) + 1] == ["hparams_search=default", *TINY]
        for name, key in keys.items():  # the exact value the trial ran
            assert f"{key}={trial.params[name]!r}" in overrides
        config = yaml.safe_load((jobs[trial.number] / ".hydra" / "config.yaml").read_text())
        assert config["sampler"]["temperature"] == trial.params["temperature"]
    assert (folder / "multirun.yaml").is_file()
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    study = multirun.s.study(multirun.name)
    assert results["best_value"] == study.best_value
    assert results["best_params"]["sampler.temperature"] == study.best_params["temperature"]


def test_the_report_of_the_study(multirun) -> None:
    found = re.search(rf"^study '{multirun.name}': (\d+) complete, (\d+) pruned, 0 failed$",
                      multirun.report.stdout, re.MULTILINE)
    assert found and int(found[1]) + int(found[2]) == N_TRIALS, multirun.report.stdout
    assert (multirun.s.out / "report" / "best.json").is_file()
    assert len(multirun.s.study(multirun.name).get_trials()) == len(multirun.after_first)


def test_each_command_resumes_the_others_study(new_sweep) -> None:
    """``mcmc-sweep`` runs 2 trials, ``-m`` with the same settings continues that study to 3,
    ``mcmc-sweep`` then finds it done: one study, one MLflow parent run."""
    s = new_sweep("both-commands")
    sweep = s.run(s.args("hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1")).ok()
    multi = s.run(s.multirun_args("hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                                  f"hydra.sweep.dir={s.root / 'm'}"), program="mcmc-train").ok()
    again = s.run(s.args("hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1")).ok()
    assert sweep.study_name == multi.study_name == again.study_name
    assert (multi.finished_before, again.finished_before) == (2, 3)
    trials = s.study(sweep.study_name).get_trials()
    assert len(finished(trials)) == len(trials) == 3
    runs = s.runs(sweep.study_name)
    assert (len(runs.parents), len(runs.children)) == (1, 3)
    assert sorted(_job_folders(s.root / "m")) == [2]  # numbering goes on, as the study's


def test_the_shorthand_and_the_multirun_are_one_study_in_one_folder(new_sweep) -> None:
    """``mcmc-sweep hydra.sweeper.n_trials=4 trainer.epochs=2`` runs the study; ``mcmc-train -m
    hparams_search=default`` with the same arguments names the same study, in the same storage
    and output folder (their defaults: nothing set), and finds it done."""
    s = new_sweep("shorthand")
    args = ["device=cpu", "dataset=synthetic", "trainer.steps_per_epoch=20",
            "hydra.sweeper.n_trials=4", "trainer.epochs=2", f"tracking.uri={s.uri}"]
    sweep = s.run(args).ok()
    multi = s.run(["-m", "hparams_search=default", *args], program="mcmc-train").ok()
    lines = [STUDY_LINE.search(r.stdout)[0] for r in (sweep, multi)]
    output = [re.search(r"storage (\S+), output (\S+)", r.stdout).groups() for r in (sweep, multi)]
    assert sweep.study_name == multi.study_name and output[0] == output[1], lines
    assert (sweep.finished_before, multi.finished_before) == (0, 4)
    storage = output[0][0]
    assert storage == f"sqlite:///outputs/sweeps/{sweep.study_name}/optuna.db"
    study = optuna.load_study(study_name=sweep.study_name, storage=f"sqlite:///{s.cwd}/"
                              f"outputs/sweeps/{sweep.study_name}/optuna.db")
    assert len(finished(study.get_trials())) == len(study.get_trials()) == 4
    assert [p.name for p in (s.cwd / "outputs" / "sweeps").iterdir()] == [sweep.study_name]


def test_the_old_keys_name_their_new_key(new_sweep) -> None:
    """``mcmc-sweep study.n_trials=4`` (the vocabulary before ``hydra.sweeper``): exit status 2,
    one line naming the key to use, before any work."""
    s = new_sweep("old-keys")
    for old, new in [("study.n_trials=4", "hydra.sweeper.n_trials"),
                     ("study.workers=2", "hydra.sweeper.n_jobs"),
                     ("study.name=x", "hydra.sweeper.study_name"),
                     ("search.temperature.high=0.1", "hydra.sweeper.params.sampler.temperature"),
                     ("dry_run=true", "hydra.sweeper.dry_run"),
                     ("report=true", "hydra.sweeper.report")]:
        result = s.run([old])
        assert result.returncode == 2, result.describe()
        assert len(result.error_lines) == 1 and f"use {new};" in result.error_lines[0], old
    assert not list(s.cwd.iterdir())


@pytest.mark.parametrize("args", [
    [],
    ["hydra.sweeper.params.sampler.temperature=tag(log, interval(1e-5, 1e-1))",
     "dataset=synthetic", "hydra.sweeper.population=2"],
], ids=["default", "changed"])
def test_the_same_settings_name_the_same_study(new_sweep, args) -> None:
    s = new_sweep("same-study")
    dry = s.run(s.args("hydra.sweeper.dry_run=true", *args, base=[])).ok()
    multi = s.run(s.multirun_args("hydra.sweeper.dry_run=true", *args, base=[]),
                  program="mcmc-train").ok()
    # The whole plan, the same: study, storage, folders, settings, search space, dataset.
    lines = [[line for line in r.stdout.splitlines() if not line.startswith("jobs:")]
             for r in (dry, multi)]
    assert lines[0] == lines[1] and lines[0][0].startswith("study:") and len(lines[0]) >= 10
    assert not s.out.exists()  # a dry run creates nothing


def test_other_settings_name_another_study(new_sweep) -> None:
    s = new_sweep("other-study")
    dry = s.run(s.args("hydra.sweeper.dry_run=true", base=[])).ok()
    multi = s.run(s.multirun_args(
        "hydra.sweeper.dry_run=true",
        "hydra.sweeper.params.sampler.temperature=tag(log, interval(1e-5, 1e-1))", base=[]),
        program="mcmc-train").ok()
    names = [next(line for line in r.stdout.splitlines() if line.startswith("study:"))
             for r in (dry, multi)]
    assert names[0] != names[1]


def test_a_search_in_hydra_optuna_sweepers_syntax_runs(new_sweep) -> None:
    s = new_sweep("forms")
    (s.root / "conf" / "hparams_search").mkdir(parents=True)
    (s.root / "conf" / "hparams_search" / "forms.yaml").write_text(FORMS)
    result = s.run(["--config-dir", str(s.root / "conf"), "hparams_search=forms", "device=cpu",
                    "dataset=synthetic", f"hydra.sweeper.output_dir={s.out}",
                    f"tracking.uri={s.uri}", f"hydra.sweep.dir={s.root / 'm'}"],
                   program="mcmc-train").ok()  # no -m: hydra.mode is MULTIRUN
    trials = s.study(result.study_name).get_trials()
    assert len(finished(trials)) == 4, states(trials)
    jobs = _job_folders(s.root / "m")
    for t in finished(trials):
        p = t.params
        assert 1e-4 <= p["temperature"] <= 1e-2 and 0.999 <= p["cooling_rate"] <= 0.9999
        assert p["steps_per_epoch"] in range(10, 21) and p["seed"] in (0, 1, 2)
        assert p["hidden"] in ("[]", "[16]") and p["flip_ratio"] in (0.002, 0.005)
        assert 1.0 <= p["output_scale"] <= 4.0
        overrides = _overrides(jobs[t.number])
        assert "trainer.epochs=2" in overrides and f"seed={p['seed']}" in overrides
        assert f"model.hidden={p['hidden'].replace(' ', '')}" in overrides
        config = yaml.safe_load((jobs[t.number] / ".hydra" / "config.yaml").read_text())
        assert config["trainer"]["epochs"] == 2
        assert config["trainer"]["steps_per_epoch"] == p["steps_per_epoch"]
        assert config["model"]["output_scale"] == p["output_scale"]
    # The sampler in hydra-optuna-sweeper's form: its class and seed.
    params = s.runs(result.study_name).parents[0].data.params
    assert (params["hydra.sweeper.sampler"], params["hydra.sweeper.seed"]) == ("tpe", "1234")


def test_pruning_per_epoch_through_the_sweeper(new_sweep) -> None:
    """test_sweep_pruning's sweep: half the temperatures are absurd; the median pruner stops
    those trials before their last epoch, and never a good one."""
    s, epochs, good, bad = new_sweep("sweeper-pruning"), 7, 0.0003, 30.0
    result = s.run(s.multirun_args(
        f"hydra.sweeper.params.sampler.temperature=choice({good}, {bad})",
        "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler=random",
        "hydra.sweeper.pruner=median", f"trainer.epochs={epochs}"), program="mcmc-train").ok()
    trials = s.study(result.study_name).get_trials()
    assert len(finished(trials)) == 8, states(trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, states(trials)
    assert all(t.params["temperature"] == bad and t.last_step < epochs for t in pruned)
    assert all(t.state == TrialState.COMPLETE for t in trials
               if t.params["temperature"] == good)
    names = {r.info.run_name for r in s.runs(result.study_name).children}
    assert {f"trial-{t.number:04d} (pruned)" for t in pruned} <= names


def test_populations_through_the_sweeper(new_sweep) -> None:
    """``hydra.sweeper.population=3`` with one worker: its three trials run together."""
    s = new_sweep("sweeper-population")
    result = s.run(s.multirun_args("hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                                   "hydra.sweeper.population=3"), program="mcmc-train").ok()
    trials = s.study(result.study_name).get_trials()
    assert len(finished(trials)) == 3 == len(trials), states(trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 1
    assert max(t.datetime_start for t in trials) < min(t.datetime_complete for t in trials)


@pytest.mark.parametrize("extra, says", [
    (["hydra.sweeper.n_jobs=0", "hydra.sweeper.params.sampler.temperature=intervl(1, 2)"],
     ["error: hydra.sweeper.n_jobs=0 is not allowed: expected an integer >= 1",
      "error: hydra.sweeper.params.sampler.temperature='intervl(1, 2)' is not allowed: "
      "expected interval(a, b), "]),
    (["hydra.sweeper.n_trails=3", "hydra.sweeper.n_trials=abc"],
     ["error: hydra.sweeper.n_trails=3 is not allowed: expected a key of hydra.sweeper: ",
      "error: hydra.sweeper.n_trials='abc' is not allowed: expected an integer"]),
    (["hydra.sweeper.params.model.hiden=choice([],[16])"],
     ["error: hydra.sweeper.params.model.hiden.key='model.hiden' is not allowed: expected a "
      "key of model: "]),
    (["hydra.sweeper.params.sampler.flip_ratio=interval(0.5, 2)"],
     ["error: hydra.sweeper.params.sampler.flip_ratio.high gives sampler.flip_ratio=2.0 is not "
      "allowed: expected 0 < flip_ratio <= 1"]),
], ids=["settings", "unknown-and-typed", "key", "bounds"])
def test_bad_input_is_one_line_each_exit_2_before_any_work(new_sweep, extra, says) -> None:
    s = new_sweep("sweeper-errors")
    result = s.run(s.multirun_args(*extra), program="mcmc-train")
    assert result.returncode == 2, result.describe()
    assert len(result.error_lines) == len(says), result.stderr
    for line, start in zip(result.error_lines, says):
        assert line.startswith(start), result.stderr
    assert not s.out.exists() and not list(s.cwd.iterdir())


def test_a_service_problem_names_the_sweepers_key(new_sweep) -> None:
    s = new_sweep("sweeper-service")
    (s.root / "a-file").write_text("")
    result = s.run(s.multirun_args(f"hydra.sweeper.storage=sqlite:///{s.root}/a-file/x.db"),
                   program="mcmc-train")
    assert result.returncode == 2, result.describe()
    assert result.error_lines[0].startswith(f"error: hydra.sweeper.storage=sqlite:///{s.root}"
                                            "/a-file/x.db: ")
    assert not s.out.exists()


def test_the_mnist_sweep_tunes_the_784_256_10_chain(new_sweep, write_mnist_like) -> None:
    """``hparams_search=mnist_mlp`` on IDX files: the fully binary 784-256-10 net started from
    the data with the margin term, its four searched values within their bounds."""
    s = new_sweep("mnist-mlp")
    write_mnist_like(s.root / "mnist", {"t10k": 300}, shape=(28, 28))
    result = s.run(["-m", "hparams_search=mnist_mlp", f"dataset.root={s.root / 'mnist'}",
                    "device=cpu", "trainer.epochs=2", "trainer.steps_per_epoch=5",
                    "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
                    f"hydra.sweeper.output_dir={s.out}", f"tracking.uri={s.uri}",
                    f"hydra.sweep.dir={s.root / 'm'}"], program="mcmc-train").ok()
    assert result.study_name == "mnist_mlp"
    trials = s.study(result.study_name).get_trials()
    assert len(finished(trials)) == 2, states(trials)
    jobs = _job_folders(s.root / "m")
    for t in finished(trials):
        p = t.params
        assert 2e-5 <= p["temperature"] <= 5e-4 and 0.99999 <= p["cooling_rate"] <= 0.999999
        assert 0 <= p["margin_weight"] <= 0.2 and 0.4 <= p["output_scale"] <= 1.5
        config = yaml.safe_load((jobs[t.number] / ".hydra" / "config.yaml").read_text())
        assert config["model"]["hidden"] == [256] and config["model"]["init"] == "data"
        assert config["dataset"]["name"] == "idx" and config["dataset"]["val_fraction"] == 0.1
        assert config["sampler"]["margin_weight"] == p["margin_weight"]
