"""The study report: best trial, trials table (CSV) and Optuna's plots, in the output folder and
on the sweep's MLflow parent run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeps.report_plots import write_plots
from sweeps.study import count_trials

__all__ = ["write_report"]


def best_summary(study: optuna.Study) -> dict[str, Any] | None:
    """The best complete trial: number, value, params and its recorded test accuracy."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    best = study.best_trial
    return {"number": best.number, "value": best.value, "params": best.params,
            "test_accuracy": best.user_attrs.get("test_accuracy"),
            "mlflow_run_id": best.user_attrs.get("mlflow_run_id")}


def write_report(study: optuna.Study, folder: Path, *, tracking_uri: str | None = None,
                 parent_run_id: str | None = None) -> dict[str, Any]:
    """Write ``trials.csv``, the plots (``sweeps.report_plots``) and ``best.json`` into ``folder``
    (and log them on the parent run when given). Plots that need more trials than there are are
    skipped; ``best.json`` lists the files written.

    Returns a summary: counts, best trial, and the files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    best = best_summary(study)
    summary = {"study": study.study_name, "direction": study.direction.name.lower(),
               "trials": len(trials), "complete": counts.complete, "pruned": counts.pruned,
               "failed": counts.failed, "best": best, "files": []}
    if trials:
        study.trials_dataframe().to_csv(folder / "trials.csv", index=False)
        summary["files"].append("trials.csv")
    summary["files"] += write_plots(study, folder)
    summary["files"].insert(0, "best.json")  # written last, listing every file
    (folder / "best.json").write_text(json.dumps(summary, indent=2, default=str))
    if tracking_uri and parent_run_id:
        _log_on_parent(tracking_uri, parent_run_id, folder, summary)
    return summary


def _log_on_parent(uri: str, run_id: str, folder: Path, summary: dict[str, Any]) -> None:
    from sweeps.tracking import mlflow_client

    client = mlflow_client(uri)
    for key in ("trials", "complete", "pruned", "failed"):
        client.log_metric(run_id, f"n_{key}", summary[key])
    best = summary["best"]
    if best is not None:
        client.log_metric(run_id, "best_value", best["value"])
        client.set_tag(run_id, "best_trial", best["number"])
        for name, value in best["params"].items():
            client.set_tag(run_id, f"best.{name}", value)
    client.log_artifacts(run_id, str(folder), artifact_path="report")


def format_best(summary: dict[str, Any], metric: str) -> str:
    """One line for the console."""
    best = summary["best"]
    if best is None:
        return "no complete trial yet"
    params = ", ".join(f"{k}={_short(v)}" for k, v in best["params"].items())
    return f"best: trial {best['number']} {metric}={best['value']:.4f} ({params})"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
