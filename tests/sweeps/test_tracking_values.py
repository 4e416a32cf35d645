"""What MLflow shows of a trial, on a real SQLite store: short params plus the searched values as
metrics, ``objective`` first and superseded by a complete trial's value, a pruned trial's last
reported value when a launch ends its orphan run, the best run's mark moving, and the config
kept for the report (also as studies of earlier versions kept it)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mcmc_core.config import TrackingConfig
from sweeps.report.best import trial_config_of
from sweeps.tracking.best_run import mark_best_run
from sweeps.tracking.client_run import ClientRun
from sweeps.tracking.mlflow_run import closing_metrics
from sweeps.tracking.ui_links import run_link
from sweeps.tracking.parent_run import close_orphan_runs, trial_objective
from sweeps.tracking.run_params import run_params, short_number
from sweeps.workers.trial_context import SYSTEM_CONFIG, record_final, stored_config


@pytest.mark.parametrize(("value", "width", "text"), [
    (7.679700455376728e-05, None, "7.68e-05"),
    (0.002, None, "0.002"),
    (30.0, None, "30"),
    (0.99953213, 0.00095, "0.999532"),  # schedule.cooling_rate in [0.999, 0.99995]: not "1"
    (0.5123456, 0.2, "0.512"),
    (3, None, "3"),
    ("mlp", None, "mlp"),
    (True, None, "True"),
])
def test_short_number(value, width, text) -> None:
    # 3 significant digits, of the search range's width on a linear scale.
    assert short_number(value, width) == text


def test_params_are_a_few_filter_keys_and_the_searched_ones_secrets_masked() -> None:
    config = {"model": {"name": "mlp", "hidden": [64]}, "dataset": {"name": "digits",
              "root": "data"}, "sampler": {"temperature": 0.001, "flip_ratio": 0.002},
              "tracking": {"uri": "http://u:pw@h:5000", "token": "abc"}, "seed": 0}
    params = run_params(config, {"sampler.temperature": 7.679700455376728e-05,
                                 "tracking.token": "abc"})
    # The searched value overrides the config's, short; the rest of the config is not a param.
    assert params == {"model.name": "mlp", "dataset.name": "digits",
                      "sampler.temperature": "7.68e-05", "sampler.flip_ratio": "0.002",
                      "seed": "0", "tracking.token": "***"}


def test_closing_metrics_keep_no_copy_of_the_last_epoch() -> None:
    final = {"epoch": 3, "val_accuracy": 0.5, "temperature": 1e-4, "best_val_accuracy": 0.6,
             "best_epoch": 2}
    assert closing_metrics(final) == {"final_epoch": 3.0, "best_val_accuracy": 0.6,
                                      "best_epoch": 2.0}


def test_run_link_is_a_server_page_without_password_else_the_local_ui_page() -> None:
    assert run_link("https://me:pw@mlflow.example:5000/", "7", "abc") == (
        "https://mlflow.example:5000/#/experiments/7/runs/abc?workflowType=machine_learning")
    assert run_link("sqlite:///mlflow.db", "7", "abc") == (
        "http://127.0.0.1:5000/#/experiments/7/runs/abc?workflowType=machine_learning")


def _tracking(tmp_path: Path) -> TrackingConfig:
    return TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="e")


def _epoch(n: int, acc: float) -> dict[str, float]:
    return {"epoch": n, "val_accuracy": acc, "val_loss": 1.0 / n}


def test_objective_first_searched_values_as_metrics_then_the_trials_value(tmp_path) -> None:
    run = ClientRun(_tracking(tmp_path), {"seed": 0}, params={"sampler.temperature": 7.68e-5,
                                                                "model.name": "cnn"},
                    objective="val_accuracy")
    run_id = run.open(None, resume=False)
    run.log_epoch(_epoch(1, 0.5))
    run.log_epoch(_epoch(2, 0.4))
    run.log_metrics({"objective": 0.5}, step=2)  # complete: its best epoch's value
    got = run.client.get_run(run_id)
    # The first metric logged (what MLflow's compare view colours by) is the objective.
    assert [m.key for m in got.data._metric_objs][0] == "objective"
    assert got.data.metrics["objective"] == 0.5  # the trial's value supersedes epoch 2's 0.4
    assert got.data.metrics["sampler.temperature"] == 7.68e-5 and "model.name" not in (
        got.data.metrics)
    assert got.data.params["sampler.temperature"] == "7.68e-05"
    history = run.client.get_metric_history(run_id, "objective")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.4), (2, 0.5)]


def test_a_reopened_run_gets_the_missing_epochs_objective(tmp_path) -> None:
    tracking, id_file = _tracking(tmp_path), tmp_path / "run_id"
    run = ClientRun(tracking, {"seed": 0}, objective="val_accuracy")
    run_id = run.open(id_file, resume=False)
    run.log_epoch(_epoch(1, 0.5))
    run.close("KILLED")
    again = ClientRun(tracking, {"seed": 0}, objective="val_accuracy")
    again.open(id_file, resume=True, history=[_epoch(1, 0.5), _epoch(2, 0.7)])
    history = again.client.get_metric_history(run_id, "objective")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.7)]


def _child(client, experiment: str, parent: str, name: str) -> str:
    return client.create_run(experiment, run_name=name,
                             tags={"mlflow.parentRunId": parent}).info.run_id


def test_the_best_mark_moves_to_the_new_best(tmp_path) -> None:
    run = ClientRun(_tracking(tmp_path), {"seed": 0})
    parent = run.open(None, resume=False)
    client, experiment = run.client, run.experiment_id
    a, b = (_child(client, experiment, parent, n) for n in ("trial-0000", "trial-0001"))
    uri = _tracking(tmp_path).uri
    mark_best_run(uri, parent, a)
    mark_best_run(uri, parent, a)  # marked once
    assert client.get_run(a).info.run_name == "trial-0000 (best)"
    mark_best_run(uri, parent, b)
    assert client.get_run(a).info.run_name == "trial-0000"
    assert "best" not in client.get_run(a).data.tags
    assert (client.get_run(b).info.run_name, client.get_run(b).data.tags["best"]) == (
        "trial-0001 (best)", "true")


def test_an_orphan_pruned_run_ends_with_its_last_reported_value(tmp_path) -> None:
    run = ClientRun(_tracking(tmp_path), {"seed": 0})
    parent = run.open(None, resume=False)
    client = run.client
    study = optuna.create_study(direction="maximize")
    pruned, complete = study.ask(), study.ask()
    for step, value in ((1, 0.3), (2, 0.2)):
        pruned.report(value, step)
        complete.report(value + 0.5, step)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.tell(complete, 0.8)
    ids = {}
    for t in (pruned, complete):
        ids[t.number] = _child(client, run.experiment_id, parent, f"trial-{t.number:04d}")
        client.set_tag(ids[t.number], "optuna.trial_number", str(t.number))
    trials = study.get_trials()
    assert [trial_objective(t) for t in trials] == [(0.2, 2), (0.8, 2)]
    close_orphan_runs(_tracking(tmp_path).uri, "e", trials)
    got = {n: client.get_run(i) for n, i in ids.items()}
    assert got[0].data.metrics["objective"] == 0.2 and got[1].data.metrics["objective"] == 0.8
    assert got[0].info.run_name == "trial-0000 (pruned)"


def test_the_config_is_kept_out_of_user_attrs_and_read_back_as_before(tmp_path) -> None:
    study = optuna.create_study()
    trial = study.ask()
    record_final(trial, {"best_val_accuracy": 0.5}, {"seed": 1, "tracking": {"token": "abc"}})
    study.tell(trial, 0.5)
    old = study.ask()  # a trial of an earlier version: its config as a user attribute
    old.set_user_attr("config", {"seed": 2})
    study.tell(old, 0.4)
    new, legacy = study.get_trials()
    assert "config" not in new.user_attrs
    assert new.system_attrs[SYSTEM_CONFIG] == {"seed": 1, "tracking": {"token": "***"}}
    assert stored_config(new)["seed"] == 1 and stored_config(legacy) == {"seed": 2}
    assert trial_config_of(new, tmp_path)["seed"] == 1
    assert trial_config_of(legacy, tmp_path) == {"seed": 2}
