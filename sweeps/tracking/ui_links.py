"""Links to a sweep in the MLflow UI (3.17's), printed at the end of a sweep and put on its parent
run's description.

What MLflow 3.17's UI takes from a link (its routes are after ``#``, their query after ``?``):

- ``workflowType=machine_learning``: the "Model training" side of the top-left toggle (a first
  visit is otherwise on the GenAI side, whose experiment page is an empty "Overview"). 3.17
  ignores the experiment tag ``mlflow.experimentKind`` for this: the toggle decides, and the
  link sets the toggle (for that page; the browser's own choice is kept otherwise).
- ``viewStateShareKey=<key>``: a view saved as the experiment tag
  ``mlflow.sharedViewState.<key>`` (JSON): the runs table's filter, sort and columns and the
  charts of its chart view. Ignored when the link also holds a filter or sort
  (``searchFilter``, ``orderByKey``, ``orderByAsc``, ...): all of them are in the view.
- ``compareRunsMode=CHART``: the runs page's chart view instead of its table.
- ``#/compare-runs?runs=[ids]&experiments=[ids]``: the comparison page of some runs. Its parallel
  coordinates plot takes no setting from a link: its axes are the first 3 params (sorted by
  name) that differ between the runs and the first metric they share (in the order the first
  run logged them).

A parent run's children cannot be shown expanded by a link (``runsExpanded`` is left out of a
shared view); the view's filter ``tags.mlflow.parentRunId = '<parent>'`` lists them flat, sorted.

:func:`save_sweep_view` saves the view of a sweep (its trial runs, the columns ``objective`` and
the searched keys, sorted by ``objective`` best first, and a parallel coordinates chart of the
searched keys and ``objective``); :func:`sweep_links` builds the links to it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from sweeps.tracking.run_params import log_metric_name

__all__ = ["DEFAULT_UI", "SHARE_TAG_PREFIX", "command_markdown", "compare_url", "closing_lines", "describe_sweep",
           "format_links", "links_markdown", "links_text", "run_link", "run_url", "runs_url",
           "save_sweep_view", "sweep_links", "sweep_view", "ui_base", "ui_command", "view_key"]

#: Where ``mlflow ui --backend-store-uri <store>`` serves the UI by default.
DEFAULT_UI = "http://127.0.0.1:5000"
#: The experiment tag of a shared view: this prefix and its key.
SHARE_TAG_PREFIX = "mlflow.sharedViewState."
#: The "Model training" side of the UI's top-left toggle.
MODEL_TRAINING = "workflowType=machine_learning"
_OBJECTIVE = "objective"


def ui_base(tracking_uri: str) -> str:
    """The UI's address: an ``http(s)`` tracking server's own (without a ``user:password@``,
    a query or a trailing ``/``), else (a database or a folder) where ``mlflow ui`` serves it:
    :data:`DEFAULT_UI`."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query="",
                                         fragment="")).rstrip("/")
    return DEFAULT_UI


def ui_command(tracking_uri: str) -> str | None:
    """The command serving the UI of a store that is not a server (``None`` for a server):
    ``mlflow ui --backend-store-uri <uri>``, its password masked."""
    if urlsplit(tracking_uri).scheme in ("http", "https"):
        return None
    from mcmc_core.secrets import mask_url

    return f"mlflow ui --backend-store-uri {shlex.quote(mask_url(tracking_uri))}"


def view_key(parent_run_id: str) -> str:
    """The key of a sweep's shared view (one per parent run)."""
    return f"sweep-{parent_run_id}"


def sweep_view(parent_run_id: str, keys: Sequence[str], direction: str = "maximize",
               metric: str = _OBJECTIVE, logs: Collection[str] = ()) -> dict[str, Any]:
    """A sweep's view of its experiment's runs page: the trial runs of ``parent_run_id`` (flat),
    sorted by ``metric`` best first, with the columns ``metric`` and the searched ``keys``, and a
    chart view holding one parallel coordinates chart of ``keys`` and ``metric``; a key searched
    on a log scale (in ``logs``) is drawn as its ``log10 <key>`` metric (the chart's axes are
    linear)."""
    section = "sweep"
    axes = [k for k in keys if k not in logs]
    log_axes = [log_metric_name(k) for k in keys if k in logs]
    return {
        "searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'",
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": direction == "minimize",
        "selectedColumns": [f"metrics.`{metric}`", *(f"params.`{k}`" for k in keys)],
        "compareRunSections": [{"uuid": section, "name": "Sweep", "display": True,
                                "isReordered": False, "columns": 1, "cardHeight": 480}],
        "compareRunCharts": [{"type": "PARALLEL", "uuid": "sweep-parallel-coordinates",
                              "metricSectionId": section, "selectedParams": axes,
                              "selectedMetrics": [*log_axes, metric], "deleted": False,
                              "isGenerated": False}],
    }


def save_sweep_view(tracking_uri: str, parent_run_id: str, keys: Sequence[str],
                    direction: str = "maximize", metric: str = _OBJECTIVE,
                    logs: Collection[str] = ()) -> str:
    """Save :func:`sweep_view` as a tag of the parent run's experiment (again at every launch:
    the search space may have grown); returns the experiment id."""
    from sweeps.tracking.mlflow_run import mlflow_client

    client = mlflow_client(tracking_uri)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    view = sweep_view(parent_run_id, keys, direction, metric, logs)
    client.set_experiment_tag(experiment_id, SHARE_TAG_PREFIX + view_key(parent_run_id),
                              json.dumps(view, separators=(",", ":")))
    return experiment_id


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the UI: on an http(s) tracking server (any ``user:password@`` left out),
    else where ``mlflow ui`` serves a local store (:func:`ui_base`)."""
    return run_url(ui_base(tracking_uri), experiment_id, run_id)


def runs_url(base: str, experiment_id: str, parent_run_id: str, charts: bool = False) -> str:
    """The sweep's trial runs (the view :func:`save_sweep_view` saved) in model-training mode:
    the table, or with ``charts`` the chart view (its parallel coordinates)."""
    url = (f"{base}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING}"
           f"&viewStateShareKey={quote(view_key(parent_run_id))}")
    return url + ("&compareRunsMode=CHART" if charts else "")


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page (the parent run's: its description, params and report)."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING}"


def compare_url(base: str, experiment_id: str, run_ids: Sequence[str]) -> str:
    """The comparison page of ``run_ids`` (see the module's note on its parallel coordinates)."""
    runs = quote(json.dumps(list(run_ids), separators=(",", ":")))
    return f"{base}/#/compare-runs?runs={runs}&experiments={quote(json.dumps([experiment_id]))}"


def sweep_links(tracking_uri: str, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """``runs`` (the trial runs' table), ``charts`` (their parallel coordinates), ``parent``
    (the parent run's page) and, for a store that is not a server, ``serve`` (the command
    serving the UI at the links' address)."""
    base = ui_base(tracking_uri)
    links = {"runs": runs_url(base, experiment_id, parent_run_id),
             "charts": runs_url(base, experiment_id, parent_run_id, charts=True),
             "parent": run_url(base, experiment_id, parent_run_id)}
    command = ui_command(tracking_uri)
    if command:
        links["serve"] = command
    return links


def format_links(links: dict[str, str]) -> str:
    """The links for the console, one a line."""
    lines = [f"mlflow:   {links['runs']}", f"          {links['charts']} (parallel coordinates)"]
    if "serve" in links:
        lines.append(f"          (serve them: {links['serve']})")
    return "\n".join(lines)


def links_markdown(links: dict[str, str]) -> str:
    """The links as a markdown list, for the parent run's description (relative: the page is
    already on the UI, whichever address it has)."""
    def here(url: str) -> str:
        return url[url.index("#"):]

    items = [f"- [Trial runs, best first]({here(links['runs'])})",
             f"- [Parallel coordinates of the searched keys and objective]"
             f"({here(links['charts'])})"]
    if "serve" in links:
        items.append(f"- Served by: `{links['serve']}`")
    return "\n".join(items)


def command_markdown(command: str, width: int = 72) -> str:
    """A shell command as a markdown code block of lines of at most ``width`` characters (longer
    words alone on their line), continued with ``\\`` -- the UI does not wrap code, and one long
    line widens the whole run page. The lines paste into a shell as the same command."""
    try:
        words = [shlex.quote(w) for w in shlex.split(command)]
    except ValueError:  # not a shell command: wrapped as text
        words = command.split()
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width - 6:
            lines[-1] += " " + word
        else:
            lines.append(word)
    body = " \\\n    ".join(lines)
    return f"```\n{body}\n```"


def describe_sweep(tracking_uri: str, parent_run_id: str, keys: Sequence[str],
                   direction: str = "maximize", metric: str = _OBJECTIVE,
                   logs: Collection[str] = ()) -> dict[str, str]:
    """Save the sweep's view (:func:`save_sweep_view`) and add its links
    (:func:`links_markdown`) to the parent run's description when they are not there yet.
    Returns the links (:func:`sweep_links`)."""
    from sweeps.tracking.mlflow_run import mlflow_client

    experiment_id = save_sweep_view(tracking_uri, parent_run_id, keys, direction, metric, logs)
    links = sweep_links(tracking_uri, experiment_id, parent_run_id)
    client = mlflow_client(tracking_uri)
    note = client.get_run(parent_run_id).data.tags.get("mlflow.note.content", "")
    markdown = links_markdown(links)
    if markdown not in note:
        client.set_tag(parent_run_id, "mlflow.note.content",
                       f"{note}\n\n{markdown}" if note else markdown)
    return links


def links_text(tracking_uri: str | None, parent_run_id: str | None) -> str:
    """:func:`format_links` of a sweep's parent run, or ``""`` (no tracking, no parent run, or
    the store cannot be read)."""
    if not (tracking_uri and parent_run_id):
        return ""
    try:
        from sweeps.tracking.mlflow_run import mlflow_client

        experiment_id = mlflow_client(tracking_uri).get_run(parent_run_id).info.experiment_id
    except Exception:  # the store is down or the run gone: the sweep's outcome is printed already
        return ""
    return format_links(sweep_links(tracking_uri, experiment_id, parent_run_id))


def closing_lines(tracking_uri: str | None, parent_run_id: str | None, storage_url: str) -> str:
    """What a sweep prints last: its MLflow links (:func:`links_text`, when tracked) and the
    optuna-dashboard command on its storage (password masked)."""
    from mcmc_core.secrets import mask_url

    dashboard = f"optuna:   optuna-dashboard {mask_url(storage_url)}"
    links = links_text(tracking_uri, parent_run_id)
    return f"{links}\n{dashboard}" if links else dashboard
