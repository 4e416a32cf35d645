"""A 2-worker ``mcmc-sweep`` reaches exactly ``hydra.sweeper.n_trials`` finished trials, logs
them to MLflow under one parent run, resumes to the same total with the same command (running
nothing), continues the same study to a larger ``hydra.sweeper.n_trials``, and writes its report
on demand."""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import yaml
from optuna.trial import TrialState

from sweeptools import check_first_launch, env, finished, states

N_TRIALS, MORE_TRIALS, EPOCHS = 4, 5, 3
SAMPLED_KEYS = {"temperature": "sampler.temperature", "cooling_rate": "schedule.cooling_rate",
                "flip_ratio": "sampler.flip_ratio"}
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_accuracy", "test_accuracy",
                 "current_temperature", "current_flip_ratio", "n_steps")
#: The report's images: every Optuna plot (4 complete trials are enough for each).
IMAGES = {"optimization_history.png", "param_importances.png", "parallel_coordinate.png",
          "slice.png", "intermediate_values.png"}


@pytest.fixture(scope="module")
def sweep(new_sweep):
    """The same command twice, then with a larger ``n_trials``, with snapshots of the study and
    the MLflow store after each."""
    s = new_sweep("two-workers")
    args = s.args(f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2")
    first = s.run(args).ok()
    name = first.study_name
    after_first = s.study(name).get_trials()
    runs_first = s.runs(name)
    again = s.run(args).ok()
    after_again = s.study(name).get_trials()
    runs_again = s.runs(name)
    # The number of workers is how the study runs, not what it is: one worker continues it.
    more = s.run([*args, f"hydra.sweeper.n_trials={MORE_TRIALS}", "hydra.sweeper.n_jobs=1"]).ok()
    return SimpleNamespace(s=s, args=args, name=name, first=first, again=again, more=more,
                           after_first=after_first, after_again=after_again,
                           runs_first=runs_first, runs_again=runs_again,
                           study=s.study(name), runs=s.runs(name))


def test_two_workers_reach_exactly_n_trials(sweep) -> None:
    check_first_launch(sweep.first, sweep.after_first, N_TRIALS)


def test_mlflow_one_parent_and_one_finished_child_per_trial(sweep) -> None:
    runs = sweep.runs_first
    assert len(runs.parents) == 1
    parent = runs.parents[0]
    assert parent.info.status == "FINISHED"
    assert sweep.study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    done = finished(sweep.after_first)
    assert len(runs.children) == len(done)
    assert all(r.info.status == "FINISHED" for r in runs.children)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs.children)
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs.children}
    assert sorted(by_number) == sorted(t.number for t in done)
    for t in done:
        assert t.user_attrs["mlflow_run_id"] == by_number[t.number].info.run_id


def test_child_runs_hold_params_metrics_config_and_model(sweep) -> None:
    runs = sweep.runs_first
    for t in finished(sweep.after_first):
        run = runs.by_id(t.user_attrs["mlflow_run_id"])
        params, tags = run.data.params, run.data.tags
        for name, key in SAMPLED_KEYS.items():  # each sampled value once, by its config key
            # A short number (3 significant digits, of the range's width on a linear scale)...
            assert float(params[key]) == pytest.approx(t.params[name], rel=5e-3), key
            assert len(params[key]) <= 9, params[key]
            assert name not in params
            # ... and the exact value as a metric of the same name, at step 0.
            assert run.data.metrics[key] == t.params[name], key
            assert [step for step, _ in runs.steps(run.info.run_id, key)] == [0]
        # Keys searched on a log scale also as log10, the axis of MLflow's parallel coordinates.
        assert run.data.metrics["log10 sampler.temperature"] == pytest.approx(
            math.log10(t.params["temperature"]))
        assert "log10 schedule.cooling_rate" not in run.data.metrics  # a linear search
        # A few params a user filters by, not the whole config (in config.yaml).
        assert len(params) <= 15, sorted(params)
        assert "tracking.uri" not in params and "dataset.root" not in params
        assert params["dataset.name"] == "synthetic"
        assert params["trainer.epochs"] == str(EPOCHS)
        assert tags["optuna.trial_number"] == str(t.number)
        assert tags["optuna.state"] == t.state.name
        assert tags["optuna.study"] == sweep.name
        for metric in EPOCH_METRICS:
            assert [step for step, _ in runs.steps(run.info.run_id, metric)] == [1, 2, 3], metric
        logged = [v for _, v in sorted(t.intermediate_values.items())]
        history = sorted((m.step, m.value) for m in
                         runs.client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert [v for _, v in history] == pytest.approx(logged)
        assert run.data.metrics["final_epoch"] == EPOCHS
        assert t.value == pytest.approx(run.data.metrics["best_val_accuracy"])
        # No final_* copy of an epoch metric's last value.
        assert not {k for k in run.data.metrics if k.startswith("final_")} - {"final_epoch"}
        # The objective: each epoch's reported value, then (latest) the trial's value; no
        # metric named like MLflow's step or a bare param.
        assert run.data.metrics["objective"] == t.value
        assert not {"step", "epoch", "temperature", "flip_ratio"} & set(run.data.metrics)
        objective = sorted((m.step, m.timestamp, m.value) for m in
                           runs.client.get_metric_history(run.info.run_id, "objective"))
        assert [(st, v) for st, _, v in objective[:-1]] == sorted(t.intermediate_values.items())
        assert (objective[-1][0], objective[-1][2]) == (EPOCHS, t.value)
        # MLflow's compare view colours by the first metric a run logged: the objective.
        assert next(iter(m.key for m in run.data._metric_objs)) == "objective"
        assert t.user_attrs["best_test_accuracy"] == run.data.metrics["best_test_accuracy"]
        assert "config.yaml" in runs.artifacts(run.info.run_id)
        assert {"model/state_dict.pt", "model/model.txt"} <= set(
            runs.artifacts(run.info.run_id, "model"))
        config = yaml.safe_load(open(runs.client.download_artifacts(run.info.run_id,
                                                                    "config.yaml")))
        assert config["sampler"]["temperature"] == pytest.approx(t.params["temperature"])
        assert config["sampler"]["flip_ratio"] == pytest.approx(t.params["flip_ratio"])


def test_parent_run_carries_settings_search_space_best_and_report(sweep) -> None:
    parent = sweep.runs_first.parents[0]
    best = max(finished(sweep.after_first), key=lambda t: t.value)
    assert parent.data.metrics["best_value"] == best.value
    assert parent.data.metrics["best_trial"] == best.number
    assert parent.data.metrics["n_complete"] == N_TRIALS
    params, tags = parent.data.params, parent.data.tags
    assert (params["hydra.sweeper.params.sampler.temperature"]
            == "sampler.temperature float [1e-05, 0.01] log")
    assert (params["hydra.sweeper.params.schedule.cooling_rate"]
            == "schedule.cooling_rate float [0.999, 0.99995]")
    assert {"hydra.sweeper.study_name": sweep.name, "hydra.sweeper.metric": "val_accuracy",
            "hydra.sweeper.direction": "maximize",
            "hydra.sweeper.sampler": "tpe"}.items() <= params.items()
    # Settings a relaunch may change are tags: the latest launch's (n_trials 5, one worker).
    assert (tags["hydra.sweeper.n_trials"], tags["hydra.sweeper.n_jobs"]) == (str(N_TRIALS), "2")
    latest = sweep.runs.parents[0].data.tags
    assert ((latest["hydra.sweeper.n_trials"], latest["hydra.sweeper.n_jobs"])
            == (str(MORE_TRIALS), "1"))
    # The best trial's run, linked.
    child = best.user_attrs["mlflow_run_id"]
    url = f"#/experiments/{parent.info.experiment_id}/runs/{child}"
    assert (tags["best_run_id"], tags["best_run_url"]) == (child, url)
    assert url in tags["mlflow.note.content"]
    assert float(tags["best.sampler.temperature"]) == best.params["temperature"]
    report = set(sweep.runs_first.artifacts(parent.info.run_id, "report"))
    assert {"report/best.json", "report/trials.csv", "report/plots.html"} <= report
    assert {f"report/{name}" for name in IMAGES} <= report


def best_runs(runs) -> list:
    """The child runs tagged best."""
    return [r for r in runs.children if r.data.tags.get("best") == "true"]


def test_the_best_trial_run_is_marked_and_moves_with_the_best(sweep) -> None:
    for result, trials, runs in ((sweep.first, sweep.after_first, sweep.runs_first),
                                 (sweep.more, sweep.study.get_trials(), sweep.runs)):
        (marked,) = best_runs(runs)  # exactly one run ...
        number = int(marked.data.tags["optuna.trial_number"])
        # ... the trial the sweep names as best, the best value of the study then.
        assert f"best: trial {number} val_accuracy=" in result.stdout
        trial = next(t for t in trials if t.number == number)
        assert trial.value == max(t.value for t in trials if t.state == TrialState.COMPLETE)
        assert marked.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert marked.info.run_name == f"trial-{number:04d} (best)"
        assert sum(r.info.run_name.endswith(" (best)") for r in runs.children) == 1


def test_optuna_dashboard_sees_metric_name_run_links_and_no_config_line(sweep) -> None:
    study = sweep.study
    assert study.metric_names == ["val_accuracy"]
    experiment = sweep.runs_first.children[0].info.experiment_id
    for t in finished(study.get_trials()):
        # A local store: the run's page where `mlflow ui` serves it (a server's otherwise).
        assert t.user_attrs["mlflow_run_url"] == (
            f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/"
            f"{t.user_attrs['mlflow_run_id']}?workflowType=machine_learning")
        # The config is not a one-line user attribute: a system one, and config.yaml in MLflow.
        assert "config" not in t.user_attrs
        assert t.system_attrs["mcmc_sweeps:config"]["sampler"]["temperature"] == (
            t.params["temperature"])


def test_parent_run_holds_the_sweep_config(sweep) -> None:
    parent = sweep.runs.parents[0]
    path = sweep.runs.client.download_artifacts(parent.info.run_id, "config.yaml")
    config = yaml.safe_load(Path(path).read_text())
    assert config["dataset"]["name"] == "synthetic" and config["trainer"]["epochs"] == EPOCHS


def test_same_command_runs_no_new_trial(sweep) -> None:
    assert sweep.again.study_name == sweep.name
    assert sweep.again.finished_before == N_TRIALS
    before = {t.number: (t.state, t.datetime_complete) for t in sweep.after_first}
    after = {t.number: (t.state, t.datetime_complete) for t in sweep.after_again}
    assert after == before
    assert "trial " not in "".join(line for line in sweep.again.stdout.splitlines()
                                   if line.startswith("["))
    # The same parent run, finished again; no new child.
    assert [r.info.run_id for r in sweep.runs_again.parents] == [
        r.info.run_id for r in sweep.runs_first.parents]
    assert sweep.runs_again.parents[0].info.status == "FINISHED"
    assert len(sweep.runs_again.children) == len(sweep.runs_first.children)


def test_larger_n_trials_continues_the_same_study(sweep) -> None:
    assert sweep.more.study_name == sweep.name
    assert sweep.more.finished_before == N_TRIALS
    trials = sweep.study.get_trials()
    assert len(finished(trials)) == MORE_TRIALS, states(trials)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    old = {t.number for t in finished(sweep.after_first)}
    assert old < {t.number for t in finished(trials)}
    runs = sweep.runs
    assert len(runs.parents) == 1
    assert runs.parents[0].info.run_id == sweep.runs_first.parents[0].info.run_id
    assert runs.parents[0].info.status == "FINISHED"
    assert len(runs.with_status("FINISHED")) == MORE_TRIALS == len(runs.children)


def test_report_on_demand_writes_files_and_logs_them(sweep) -> None:
    folder = sweep.s.out / "report"
    shutil.rmtree(folder)
    before = sweep.study.get_trials()
    start = time.time()
    result = sweep.s.run([*sweep.args, "hydra.sweeper.report=true"]).ok()
    trials = sweep.study.get_trials()
    assert [(t.number, t.state) for t in trials] == [(t.number, t.state) for t in before]
    best = json.loads((folder / "best.json").read_text())
    top = max(finished(trials), key=lambda t: t.value)
    assert best["best"]["value"] == pytest.approx(top.value)
    assert best["complete"] + best["pruned"] == MORE_TRIALS
    lines = (folder / "trials.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + len(trials)
    assert "params_temperature" in lines[0] and "config" not in lines[0], lines[0]
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"best.json", "trials.csv", "plots.html"} | IMAGES <= written
    assert sorted(best["files"]) == sorted(written)  # the files written, best.json included
    assert f"study {sweep.name!r}: " in result.stdout
    assert f"({', '.join(best['files'])})" in result.stdout
    for name in IMAGES:  # real PNG images with something drawn
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    # One page that renders offline: plotly.js inline once, no script fetched from anywhere.
    page = (folder / "plots.html").read_text()
    assert not re.findall(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert page.count("plotly.js v") == 1 and len(page) > 3_000_000
    for name in best["files"]:
        if name.endswith(".png"):
            assert f'id="{name[:-4]}"' in page, name  # each plot's interactive figure too
    parent = sweep.s.runs(sweep.name).parents[0]
    logged = set(sweep.runs.artifacts(parent.info.run_id, "report"))
    assert {f"report/{name.split('/')[0]}" for name in written} <= logged
    # Logged again by this command (not only by the sweep before it).
    artifacts = Path(urlparse(parent.info.artifact_uri).path) / "report"
    assert (artifacts / "best.json").stat().st_mtime >= start - 1
    assert json.loads((artifacts / "best.json").read_text()) == best
    assert (artifacts / "slice.png").read_bytes() == (folder / "slice.png").read_bytes()


def test_best_command_reruns_the_best_trial_exactly(sweep, tmp_path) -> None:
    """The report's command (printed last, in best.json) runs ``mcmc-train`` with the written
    experiment and gets the best trial's value to the last bit (more in test_report_best.py)."""
    folder = sweep.s.out / "report"
    best = json.loads((folder / "best.json").read_text())["best"]
    top = max((t for t in sweep.study.get_trials() if t.state == TrialState.COMPLETE),
              key=lambda t: t.value)
    assert best["number"] == top.number
    command = best["command"]
    assert f"reproduce the best trial: {command}" in sweep.more.stdout
    args = shlex.split(command)
    assert args == ["mcmc-train", "--config-dir", str((folder / "best").resolve()),
                    "experiment=best"]
    # The sweep's own defaults and the sampled values are in the experiment.
    written = yaml.safe_load((folder / "best" / "experiment" / "best.yaml").read_text())
    assert written["dataset"]["binarize"] == "thermometer"
    assert written["sampler"]["temperature"] == top.params["temperature"]
    assert "checkpoint_dir" not in written["trainer"] and "tracking" not in written
    script = Path(sys.executable).parent / "mcmc-train"
    done = subprocess.run([str(script), *args[1:]], cwd=tmp_path, env=env(), text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"val_accuracy={top.value:.4f}" in done.stdout.splitlines()[-1]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mcmc-train")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["best_val_accuracy"] == top.value
    assert run.data.metrics["best_test_accuracy"] == top.user_attrs["best_test_accuracy"]


def test_compare_view_defaults_are_the_searched_keys_and_a_validation_score(sweep) -> None:
    """MLflow's compare view (3.x) plots the first three params that differ between the runs,
    sorted, against the metric the first run logged first (and the runs share)."""
    children = sweep.runs_first.children
    keys = sorted(set().union(*(r.data.params for r in children)))
    differing = [k for k in keys if len({r.data.params.get(k) for r in children}) > 1]
    assert differing[:3] == sorted(SAMPLED_KEYS.values())
    shared = [m.key for m in children[0].data._metric_objs
              if all(m.key in r.data.metrics for r in children)]
    assert shared[0] == "objective" and "val_accuracy" in shared
