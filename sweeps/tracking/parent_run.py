"""MLflow runs of a sweep as a whole: its parent run (found by the study's key, whichever
launcher comes first) and the launch settings logged on it, and the ending of runs that killed
processes left RUNNING. Secrets are masked as in :mod:`sweeps.tracking.mlflow_run`."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from mcmc_core.secrets import mask_config
from sweeps.study.stores import store_lock
from sweeps.sweeper.settings import PARAMS, SWEEPER, McmcOptunaSweeperConf
from sweeps.tracking.mlflow_run import (
    OBJECTIVE,
    TAG_STUDY_KEY,
    masked_tags,
    mlflow_client,
    name_pruned,
)
from sweeps.tracking.run_params import log_keys
from sweeps.tracking.ui_links import describe_sweep

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from sweeps.sweeper.config import ParamSpec

__all__ = ["PARENT_PARAMS", "close_killed_run", "close_orphan_runs", "end_run",
           "log_sweep_settings", "open_parent_run", "run_status", "search_param",
           "trial_objective"]


def open_parent_run(uri: str, experiment: str, *, key: str, run_name: str,
                    tags: dict[str, Any], run_id: str | None = None) -> str:
    """The parent run of a sweep (``key``: its study's key) or of a multirun of ``mcmc-train
    -m`` (``multirun:<its folder>``), RUNNING again: ``run_id`` if it still exists, else the
    oldest active run of ``experiment`` tagged with ``key`` (another launcher's or job's), else
    a new one (and the experiment). Runs under the lock of ``key``
    (:func:`sweeps.study.stores.store_lock`), so that launchers on several machines, and the jobs
    of a multirun, find one run. Returns the run id."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(uri)
    with store_lock(uri, f"parent:{key}"):
        if run_id is not None:
            try:
                if client.get_run(run_id).info.lifecycle_stage == "active":
                    client.update_run(run_id, status="RUNNING")
                    return run_id
            except MlflowException:
                pass  # deleted or in another store: look for the study's run
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
        found = client.search_runs([exp_id], filter_string=f"tags.`{TAG_STUDY_KEY}` = '{key}'",
                                   order_by=["attributes.start_time ASC"], max_results=1)
        if found:
            client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
        run = client.create_run(exp_id, run_name=run_name,
                                tags={TAG_STUDY_KEY: key, **masked_tags(tags)})
        return run.info.run_id


#: Settings logged as params of a sweep's parent run (``hydra.sweeper.<name>``), with its search
#: entries: once, at the first launch (MLflow params cannot change). The other settings
#: (``n_trials``, ``n_jobs``, ...) may change from one launch of a study to the next: they are
#: tags, set by every launch.
PARENT_PARAMS = ("study_name", "metric", "direction", "sampler", "pruner", "seed")
#: Settings not logged: the search space (its entries are), the dry run and the report.
_NOT_LOGGED = ("params", "dry_run", "report")


def search_param(spec: ParamSpec) -> str:
    """A search entry as a parent run's param: ``sampler.temperature float [1e-05, 0.01] log``,
    ``model categorical ["mlp", "cnn"]``."""
    if spec.type == "categorical":
        return f"{spec.key} categorical {json.dumps(spec.choices)}"
    text = f"{spec.key} {spec.type} [{spec.low}, {spec.high}]"
    if spec.step is not None:
        text += f" step {spec.step}"
    return text + (" log" if spec.log else "")


def log_sweep_settings(uri: str, run_id: str, settings: McmcOptunaSweeperConf,
                       search: dict[str, ParamSpec], config: dict[str, Any] | None = None) -> None:
    """Log a launch's settings on the sweep's parent run: :data:`PARENT_PARAMS` as
    ``hydra.sweeper.<k>`` params and every search entry as a ``hydra.sweeper.params.<key>``
    param (:func:`search_param`), where not logged yet; the other settings as
    ``hydra.sweeper.<k>`` tags; ``config`` (the trials' resolved config before sampling) as
    ``config.yaml``. A param that this launch sets otherwise (a study continued with another
    sampler) gets a tag of the same name with this launch's value. Secrets masked. Saves the
    sweep's view of the MLflow UI and links it from the parent run's description
    (:func:`sweeps.tracking.ui_links.describe_sweep`)."""
    from mlflow.entities import Param, RunTag

    client = mlflow_client(uri)
    logged = client.get_run(run_id).data.params
    values = {k: v for k, v in dataclasses.asdict(settings).items()
              if not k.startswith("_") and k not in _NOT_LOGGED}
    wanted = masked_tags({**{f"{SWEEPER}.{k}": values[k] for k in PARENT_PARAMS},
                          **{f"{PARAMS}.{e.key}": search_param(e) for e in search.values()}})
    params = [Param(k, v) for k, v in wanted.items() if k not in logged]
    tags = {f"{SWEEPER}.{k}": v for k, v in values.items() if k not in PARENT_PARAMS}
    tags.update({k: v for k, v in wanted.items() if k in logged and logged[k] != v})
    client.log_batch(run_id, params=params,
                     tags=[RunTag(k, v) for k, v in masked_tags(tags).items()])
    if config is not None:
        client.log_dict(run_id, mask_config(config), "config.yaml")
    describe_sweep(uri, run_id, [e.key for e in search.values()], settings.direction,
                   logs=log_keys(search.values()))


def end_run(uri: str, run_id: str, status: str, tags: dict[str, Any] | None = None) -> None:
    """Set ``tags`` on a run and end it with ``status`` (FINISHED, FAILED or KILLED); a pruned
    trial's run is renamed (:func:`name_pruned`)."""
    client = mlflow_client(uri)
    for key, value in masked_tags(tags or {}).items():
        client.set_tag(run_id, key, value)
    name_pruned(client, run_id, tags or {})
    client.set_terminated(run_id, status=status)


def run_status(uri: str, run_id: str) -> str:
    """The status of a run (RUNNING, FINISHED, FAILED, KILLED)."""
    return mlflow_client(uri).get_run(run_id).info.status


def close_killed_run(uri: str | None, trial: FrozenTrial) -> None:
    """A trial's process died: end its MLflow run as KILLED (its retry re-opens it when it
    continues from the checkpoint, or links a new run to it)."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if uri is None or run_id is None:
        return
    try:
        if run_status(uri, run_id) == "RUNNING":
            end_run(uri, run_id, "KILLED", {"optuna.state": "KILLED", "optuna.retried": "true"})
    except Exception:  # the store may be unreachable; the retry will fix the run's status
        pass


def trial_objective(trial: FrozenTrial) -> tuple[float, int] | None:
    """A finished trial's :data:`~sweeps.tracking.mlflow_run.OBJECTIVE` and its step: a complete
    trial's value, a pruned one's last reported value (as optuna-dashboard shows it), at its last
    reported step; None without either."""
    step = max(trial.intermediate_values, default=0)
    if trial.value is not None:
        return float(trial.value), step
    if trial.intermediate_values:
        return float(trial.intermediate_values[step]), step
    return None


def close_orphan_runs(uri: str, experiment: str, trials: list[FrozenTrial]) -> list[str]:
    """End the RUNNING child runs of ``experiment`` whose trial no longer runs: a process killed
    between telling Optuna and ending its run (FINISHED, with the trial's state), or before its
    trial recorded the run (KILLED). Runs of RUNNING trials -- maybe on other machines -- are
    left alone. Returns the ids of the runs ended."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    by_number = {t.number: t for t in trials}
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials if "mlflow_run_id" in t.user_attrs
              and t.state.name != "FAIL"}  # a retry continues its predecessor's run
    ended = []
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'",
                                  max_results=10_000):
        tags = run.data.tags
        if MLFLOW_PARENT_RUN_ID not in tags:
            continue  # a parent run: the launcher's
        trial = by_run.get(run.info.run_id) or by_number.get(
            int(tags.get("optuna.trial_number", -1)))
        if trial is not None and trial.state.name == "RUNNING":
            continue
        if trial is not None and trial.state.name in ("COMPLETE", "PRUNED"):
            extra = {"optuna.value": trial.value} if trial.value is not None else {}
            if (objective := trial_objective(trial)) is not None:
                client.log_metric(run.info.run_id, OBJECTIVE, objective[0], step=objective[1])
            end_run(uri, run.info.run_id, "FINISHED", {"optuna.state": trial.state.name, **extra})
        else:
            end_run(uri, run.info.run_id, "KILLED", {"optuna.state": "KILLED"})
        ended.append(run.info.run_id)
    return ended
