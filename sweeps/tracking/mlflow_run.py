"""What every MLflow run of ours logs, and how: its params, per-epoch and closing metrics,
tags, the model files, the tracking URI and client (the runs themselves:
:mod:`sweeps.tracking.client_run`).

Everything logged here goes through :mod:`mcmc_core.secrets` first: params, tags and
``config.yaml`` show passwords and tokens as ``***``, and MLflow is given a server URI without its
``user:password@`` (see :func:`client_uri`), so the run links it prints carry none either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcmc_core.secrets import MASK, is_secret_key, mask_text, mask_url
from sweeps.study.stores import ensure_mlflow_store
from sweeps.tracking.outage import tolerant

if TYPE_CHECKING:
    from torch import nn

    from mcmc_core.config import TrackingConfig

__all__ = [
    "DEFAULT_TRACKING_URI",
    "FIRST_METRICS",
    "METRIC_NAMES",
    "OBJECTIVE",
    "PRUNED_SUFFIX",
    "TAG_STUDY_KEY",
    "client_uri",
    "closing_metrics",
    "epoch_metrics",
    "flatten",
    "masked_tags",
    "mlflow_client",
    "name_pruned",
    "rename",
    "tracking_uri",
]

#: MLflow 3 refuses the ./mlruns file store; an embedded SQLite store in the working directory.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RUN_ID_FILE = "mlflow_run_id"
#: Tag of a sweep's parent run: the study's key (its ``sweep_key`` user attribute).
TAG_STUDY_KEY = "mcmc_sweeps.study_key"
#: A trial's run's first metric (MLflow's compare view colours by it): each epoch the value
#: reported to Optuna (``hydra.sweeper.metric``), then at a complete trial's last epoch its value
#: (the best epoch's). A pruned trial's is so its last reported value, as optuna-dashboard shows.
OBJECTIVE = "objective"
#: What a pruned trial's run name ends with (``trial-0007 (pruned)``).
PRUNED_SUFFIX = " (pruned)"
#: Trainer metrics logged under another name, so that no metric is named like a param or like
#: MLflow's ``step``: the initial temperature is the param ``sampler.temperature``, the current
#: one the metric ``current_temperature``; the MCMC (or optimizer) step count is ``n_steps``.
METRIC_NAMES = {"step": "n_steps", "temperature": "current_temperature",
                "flip_ratio": "current_flip_ratio"}
#: Epoch metrics logged first, in this order: MLflow's compare view colours its parallel
#: coordinates by the first metric a run logged.
FIRST_METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_accuracy",
                  "train_loss")


def tracking_uri(cfg: TrackingConfig) -> str:
    """The configured tracking URI, or the embedded default."""
    return cfg.uri or DEFAULT_TRACKING_URI


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``, for MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def masked_tags(tags: dict[str, Any]) -> dict[str, str]:
    """``tags`` (or params) as strings, with secret-named keys' values and URL passwords
    masked."""
    return {k: MASK if is_secret_key(k) and v not in (None, "") else mask_text(str(v))
            for k, v in tags.items()}


def epoch_metrics(metrics: dict[str, float], objective: str | None = None) -> dict[str, float]:
    """An epoch's metrics as logged at ``step=epoch`` (the epoch itself is the step, so no
    ``epoch`` metric), renamed by :data:`METRIC_NAMES`: :data:`OBJECTIVE` first (the value of
    ``metrics[objective]``, a sweep's trial), then the scores."""
    order = [k for k in FIRST_METRICS if k in metrics]
    order += [k for k in metrics if k not in FIRST_METRICS and k != "epoch"]
    first = {OBJECTIVE: float(metrics[objective])} if objective in metrics else {}
    return {**first, **{METRIC_NAMES.get(k, k): float(metrics[k]) for k in order}}


def closing_metrics(final: dict[str, Any]) -> dict[str, float]:
    """A run's closing metrics: ``best_<k>`` of the best epoch and ``final_epoch``; not the last
    epoch's other values (the latest value of each epoch metric already is)."""
    return {k if k.startswith("best_") else f"final_{k}": float(v)
            for k, v in final.items() if k.startswith("best_") or k == "epoch"}


def name_pruned(client: Any, run_id: str, tags: dict[str, Any],
                name: str | None = None) -> str | None:
    """Append :data:`PRUNED_SUFFIX` to the name of a run whose ``tags`` say
    ``optuna.state=PRUNED`` (its status stays FINISHED: MLflow has no pruned status); ``name``:
    its name now, when known (else it is read). Returns its name (None: not read)."""
    if str(tags.get("optuna.state")) != "PRUNED":
        return name
    return rename(client, run_id, PRUNED_SUFFIX, add=True, name=name)


def rename(client: Any, run_id: str, suffix: str, *, add: bool, name: str | None = None) -> str:
    """Add ``suffix`` to a run's name (``add``) or remove it, where needed; ``name``: its name
    now, when known (else it is read). Returns the new name."""
    if name is None:
        name = client.get_run(run_id).info.run_name or ""
    new = (name if name.endswith(suffix) else f"{name}{suffix}") if add else (
        name.removesuffix(suffix))
    if new != name:
        client.update_run(run_id, name=new)
    return new


def save_model_files(model: nn.Module, folder: Path) -> None:
    """``state_dict.pt`` and ``model.txt`` of ``model`` into ``folder`` (the ``model/``
    artifacts)."""
    import torch

    torch.save(model.state_dict(), folder / "state_dict.pt")
    (folder / "model.txt").write_text(repr(model))


def write_run_id(path: Path, run_id: str) -> None:
    """Record a run id next to a checkpoint, so that a resumed run re-opens the same run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id)


def client_uri(uri: str) -> str:
    """``uri`` as MLflow is given it: the ``user:password@`` of an http(s) server URI is moved
    into ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` of this process (MLflow sends
    them as basic auth, as it would the URI's), so that the links MLflow prints (``View run ...
    at: ...``) and its error messages carry no password. Other URIs are returned unchanged."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    if not password:  # a bare token as the user: MLflow would not send it as basic auth
        return uri
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return urlunsplit(parts._replace(netloc=host))


def mlflow_client(uri: str) -> Any:
    """An ``MlflowClient`` of the store at ``uri`` (made whole first, see
    :func:`~sweeps.study.stores.ensure_mlflow_store`), given :func:`client_uri`'s URI; of a server,
    one that waits out its outages (:mod:`sweeps.tracking.outage`)."""
    from mlflow import MlflowClient

    ensure_mlflow_store(uri)
    client = MlflowClient(tracking_uri=client_uri(uri))
    if not client_uri(uri).startswith(("http://", "https://")):
        return client
    return tolerant(client, client_uri(uri), mask_url(uri))  # a server: outages waited out
