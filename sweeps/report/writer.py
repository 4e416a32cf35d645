"""The study report: best trial, trials table (CSV) and Optuna's plots, in the output folder and
on the sweep's MLflow parent run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from mcmc_core.secrets import mask_error
from sweeps.checks.disk import write_atomic
from sweeps.report.best import EXPERIMENT_FILE, write_best
from sweeps.report.plots import write_plots
from sweeps.study.space import format_value
from sweeps.study.trials import count_trials
from sweeps.sweeper.settings import PARAMS
from sweeps.workers.trial_context import ATTR_CONFIG, SYSTEM_CONFIG

__all__ = ["write_report"]


def best_summary(study: optuna.Study) -> dict[str, Any] | None:
    """The best complete trial: number, value, params, its best epoch and that epoch's test
    accuracy (and the last epoch's), its MLflow run."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    best = study.best_trial
    attrs = best.user_attrs
    return {"number": best.number, "value": best.value, "params": best.params,
            "best_epoch": attrs.get("best_epoch"),
            "test_accuracy": attrs.get("best_test_accuracy"),  # the best epoch's
            "final_test_accuracy": attrs.get("test_accuracy"),  # the last epoch's
            "mlflow_run_id": attrs.get("mlflow_run_id")}


def write_report(study: optuna.Study, folder: Path, *, metric: str | None = None,
                 tracking_uri: str | None = None,
                 parent_run_id: str | None = None) -> dict[str, Any]:
    """Write the best trial's config (:mod:`sweeps.report.best`), ``trials.csv``, the plots
    (:mod:`sweeps.report.plots`) and ``best.json`` into ``folder`` (and log them on the parent
    run when given). Plots that need more trials than there are are skipped; ``best.json`` lists
    the files written. ``metric`` (``hydra.sweeper.metric``) names the value on the plots' axes
    (default: the study's metric name, else "Objective Value").

    Returns a summary: counts, best trial, and the files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    best = best_summary(study)
    metric = metric or (study.metric_names or ["Objective Value"])[0]
    reusable = write_best(study, folder, metric) if best is not None else None
    if best is not None and reusable is not None:
        best.update(reusable)
    summary = {"study": study.study_name, "direction": study.direction.name.lower(),
               "trials": len(trials), "complete": counts.complete, "pruned": counts.pruned,
               "failed": counts.failed, "best": best, "files": []}
    if reusable is not None:
        summary["files"].append(EXPERIMENT_FILE)
    if trials:
        frame = study.trials_dataframe().drop(  # the configs: in the best's experiment
            columns=[f"user_attrs_{ATTR_CONFIG}", f"system_attrs_{SYSTEM_CONFIG}"],
            errors="ignore")
        write_atomic(folder / "trials.csv", lambda p: frame.to_csv(p, index=False))
        summary["files"].append("trials.csv")
    summary["files"] += write_plots(study, folder, metric)
    summary["files"].insert(0, "best.json")  # written last, listing every file
    write_atomic(folder / "best.json",
                 lambda p: p.write_text(json.dumps(summary, indent=2, default=str)))
    if tracking_uri and parent_run_id:
        try:
            _log_on_parent(tracking_uri, parent_run_id, folder, summary)
        except Exception as err:  # the files are written; MLflow gets them next time
            print(f"warning: the report was not logged on the MLflow parent run "
                  f"({mask_error(err)})", flush=True)
    return summary


def _log_on_parent(uri: str, run_id: str, folder: Path, summary: dict[str, Any]) -> None:
    from sweeps.tracking.mlflow_run import mlflow_client

    client = mlflow_client(uri)
    for key in ("trials", "complete", "pruned", "failed"):
        client.log_metric(run_id, f"n_{key}", summary[key])
    if summary["best"] is not None:
        _log_best_on_parent(client, uri, run_id, summary)
    client.log_artifacts(run_id, str(folder), artifact_path="report")


def _log_best_on_parent(client: Any, uri: str, run_id: str, summary: dict[str, Any]) -> None:
    """The best trial on the parent run: metrics ``best_value`` and ``best_trial``; tags
    ``best_trial``, ``best_run_id``, ``best_run_url`` (the UI's path of its run),
    ``best.<config key>`` per sampled value, ``best_command``; a description linking its run,
    its command wrapped, and the sweep's views (:mod:`sweeps.tracking.ui_links`)."""
    from mlflow.entities import Metric, RunTag

    from sweeps.tracking.mlflow_run import masked_tags
    from sweeps.tracking.ui_links import command_markdown, links_markdown, sweep_links

    best, now = summary["best"], int(time.time() * 1000)
    tags: dict[str, Any] = {"best_trial": best["number"]}
    by_key = _params_by_key(client, run_id, best["params"])
    tags.update({f"best.{key}": value for key, value in by_key.items()})
    note = (f"Study {summary['study']}: {summary['complete']} complete, {summary['pruned']} "
            f"pruned, {summary['failed']} failed. Best: trial {best['number']}, "
            f"value {best['value']:.6g}")
    exp = client.get_run(run_id).info.experiment_id
    if best.get("mlflow_run_id"):
        url = f"#/experiments/{exp}/runs/{best['mlflow_run_id']}"
        tags.update(best_run_id=best["mlflow_run_id"], best_run_url=url)
        note += f" ([its run]({url}))"
    if best.get("command"):
        tags["best_command"] = best["command"]
        note += f".\n\nRun it again:\n\n{command_markdown(best['command'])}"
    note += "\n\n" + links_markdown(sweep_links(uri, exp, run_id))
    tags["mlflow.note.content"] = note
    client.log_batch(run_id, metrics=[Metric("best_value", float(best["value"]), now, 0),
                                      Metric("best_trial", float(best["number"]), now, 0)],
                     tags=[RunTag(k, v) for k, v in masked_tags(tags).items()])


def _params_by_key(client: Any, run_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """The best trial's sampled values by config key, read from the parent run's
    ``hydra.sweeper.params.<key>`` params (``sampler.temperature float ...``): an entry is
    named by its key's last part, or by the whole key; by search name otherwise."""
    keys = [k[len(PARAMS) + 1:] for k in client.get_run(run_id).data.params
            if k.startswith(f"{PARAMS}.")]
    by_name = {name: key for key in keys for name in (key, key.rsplit(".", 1)[-1])}
    return {by_name.get(name, name): value for name, value in params.items()}


def format_best(summary: dict[str, Any], metric: str) -> str:
    """One line for the console."""
    best = summary["best"]
    if best is None:
        return "no complete trial yet"
    params = ", ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
    return f"best: trial {best['number']} {metric}={best['value']:.4f} ({params})"
