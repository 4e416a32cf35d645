"""The best trial's MLflow run, marked: the tag :data:`TAG_BEST` and its name ending with
:data:`BEST_SUFFIX` (``trial-0007 (best)``), on exactly the run of the trial the sweep reports
as best (``study.best_trial``, as :mod:`sweeps.report.writer` and the console line do; on a tie,
the same one). Each launch marks it at its end; a mark the best of an earlier launch kept is
removed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeps.tracking.mlflow_run import mlflow_client, rename

if TYPE_CHECKING:
    import optuna

__all__ = ["BEST_SUFFIX", "TAG_BEST", "best_run_id", "mark_best_run"]

#: Tag of the best trial's run (``tags.best = 'true'`` in MLflow's search box).
TAG_BEST = "best"
#: What the best trial's run name ends with.
BEST_SUFFIX = " (best)"


def best_run_id(study: optuna.Study) -> str | None:
    """The MLflow run of the study's best complete trial (None: no complete trial, or no run)."""
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    return study.best_trial.user_attrs.get("mlflow_run_id")


def mark_best_run(uri: str, parent_run_id: str, run_id: str | None) -> None:
    """Mark ``run_id`` (a child run of ``parent_run_id``) as the best, and no other child."""
    client = mlflow_client(uri)
    experiment = client.get_run(parent_run_id).info.experiment_id
    marked = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_run_id}' "
                                f"and tags.`{TAG_BEST}` = 'true'", max_results=10_000)
    for run in marked:
        if run.info.run_id != run_id:
            client.delete_tag(run.info.run_id, TAG_BEST)
            rename(client, run.info.run_id, BEST_SUFFIX, add=False, name=run.info.run_name)
    if run_id is not None:
        client.set_tag(run_id, TAG_BEST, "true")
        rename(client, run_id, BEST_SUFFIX, add=True)
