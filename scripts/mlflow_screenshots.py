"""The browser check of a sweep in the MLflow UI: starts ``mlflow ui`` on the sweep's MLflow store
at a free port of 127.0.0.1 and opens, in headless Chromium (``mlflow_screenshots.mjs``: npm's
playwright-core driving the system's ``/usr/bin/chromium``), the links a sweep prints
(:mod:`sweeps.tracking.ui_links`) and checks what they show:

- ``runs``: the trial runs' table in "Model training" mode, with the columns ``objective`` and
  the searched keys (the parent run's ``hydra.sweeper.params.<key>`` params), every trial run;
- ``charts``: its chart view, whose parallel coordinates' axes are the searched keys (a key
  searched on a log scale as its ``log10 <key>`` metric) and ``objective``;
- ``compare``: the comparison page of the first ``--compare`` trial runs (its plotly parallel
  coordinates' axes are recorded: MLflow picks them, see ``ui_links``);
- ``parent``: the parent run's page, its description's links, no wider than the window;
- ``report``: the report's ``plots.html`` in the parent run's artifact viewer;
- ``optuna-dashboard``: optuna-dashboard's page of the study, when it is installed.

Saves ``<name>.png`` per page and ``pages.json`` (each page's text and what its probe read) into
the output folder; ``--docs DIR`` also copies the screenshots as ``DIR/mlflow-runs.png``,
``mlflow-compare.png`` (the chart view), ``mlflow-parent.png`` and ``optuna-dashboard.png``.

    python scripts/mlflow_screenshots.py --tracking-uri sqlite:///mlflow.db \\
        --experiment mlp-digits-0bdcf59d --out screenshots
    python scripts/mlflow_screenshots.py --check   # what is missing, if anything (exit 3)

Needs ``node`` 20+, ``npm install`` run in the repository (playwright-core) and Chromium
(``apt-get install chromium``). Every wait is on a page state (an element shown), up to
``--timeout`` seconds each. Exit status: 0 done, 1 a page did not show what it must, 2 no such
experiment or no trial runs, 3 a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # sweeps.tracking.ui_links, when run as a script
SCRIPT = Path(__file__).with_suffix(".mjs")
DEFAULT_CHROMIUM = "/usr/bin/chromium"
#: MLflow 3.17's assistant side panel's close button (shown on a first visit).
CLOSE_ASSISTANT = 'button[aria-label="Close"]'
#: The parent run's params naming the searched keys: ``hydra.sweeper.params.<key>``.
SEARCHED = "hydra.sweeper.params."
OBJECTIVE = "objective"
WIDTH = 1600
#: Screenshots copied by ``--docs``: page name -> file name.
DOCS = {"runs": "mlflow-runs.png", "charts": "mlflow-compare.png", "parent": "mlflow-parent.png",
        "optuna-dashboard": "optuna-dashboard.png"}


def missing(chromium: str = DEFAULT_CHROMIUM) -> list[str]:
    """What this check needs and does not find (empty when it can run)."""
    found = []
    if not (Path(chromium).is_file() and os.access(chromium, os.X_OK)):
        found.append(f"Chromium at {chromium} (apt-get install chromium)")
    node = shutil.which("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout if node \
        else ""
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 20:
        found.append(f"node 20 or later (found: {version.strip() or 'none'})")
    if not (ROOT / "node_modules" / "playwright-core" / "package.json").is_file():
        found.append(f"playwright-core in {ROOT / 'node_modules'} (npm install)")
    return found


def start_ui(tracking_uri: str, log: Path, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow ui`` on ``tracking_uri`` at a free port of 127.0.0.1; wait for ``/health``.
    Returns the process (its own process group) and the UI's base URL."""
    port = _free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [str(mlflow)] if mlflow.exists() else [sys.executable, "-m", "mlflow"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    with open(log, "w") as out:
        proc = subprocess.Popen([*command, "ui", "--backend-store-uri", tracking_uri,
                                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait(proc, f"{url}/health", timeout, log)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server's process group and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sweep_of(tracking_uri: str, experiment: str) -> dict:
    """The sweep logged in ``experiment``: its id, parent run, trial runs (by name), searched
    keys (the parent's ``hydra.sweeper.params.<key>`` params) and Optuna storage."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment {experiment!r} in {tracking_uri}")
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags
               and any(k.startswith(SEARCHED) for k in r.data.params)]
    if not parents:
        raise LookupError(f"experiment {experiment!r} has no sweep parent run")
    parent = parents[0]
    trials = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") ==
                     parent.info.run_id), key=lambda r: r.info.run_name or "")
    if not trials:
        raise LookupError(f"experiment {experiment!r} has no trial (child) runs")
    keys = sorted(k[len(SEARCHED):] for k in parent.data.params if k.startswith(SEARCHED))
    logs = [k for k in keys if parent.data.params[SEARCHED + k].endswith(" log")]
    return {"experiment_id": found.experiment_id, "parent": parent.info.run_id,
            "trials": trials, "keys": keys, "logs": logs, "storage": parent.data.tags.get("optuna.storage"),
            "study": parent.data.tags.get("optuna.study", experiment)}


def pages(tracking_uri: str, experiment: str, base: str, compare: int) -> list[dict]:
    """The pages to open, with what each must show: the runs table of the link the sweep
    printed (objective and searched-key columns, every trial run), its chart view (parallel
    coordinates of the searched keys and objective), the comparison of the first ``compare``
    trial runs, the parent run (not wider than the window) and the report's plots.html."""
    from sweeps.tracking import ui_links
    from sweeps.tracking.run_params import log_metric_name

    sweep = sweep_of(tracking_uri, experiment)
    exp, parent, keys = sweep["experiment_id"], sweep["parent"], sweep["keys"]
    axes = [k for k in keys if k not in sweep["logs"]]  # a log search on its log10 metric
    axes += [log_metric_name(k) for k in sweep["logs"]]
    trials = sweep["trials"]
    names = [r.info.run_name for r in trials]
    chosen = trials[:compare]
    return [
        {"name": "runs", "url": ui_links.runs_url(base, exp, parent), "probe": "table",
         "ready": ".ag-header-cell[col-id*='objective']", "click": [CLOSE_ASSISTANT],
         "expect": [experiment, *names], "columns": [f"metrics.`{OBJECTIVE}`",
                                                      *(f"params.`{k}`" for k in keys)]},
        {"name": "charts", "url": ui_links.runs_url(base, exp, parent, charts=True),
         "probe": "parallel", "ready": "svg g.dimension text.label", "click": [CLOSE_ASSISTANT],
         "axes": [*axes, OBJECTIVE], "height": 1000},
        {"name": "compare", "url": ui_links.compare_url(base, exp, [r.info.run_id for r in chosen]),
         "probe": "plotly", "ready": ".js-plotly-plot .parcoords", "click": [CLOSE_ASSISTANT],
         "expect": [r.info.run_name for r in chosen], "height": 1400},
        {"name": "parent", "url": ui_links.run_url(base, exp, parent), "probe": "width",
         "ready": "text=Description", "click": [CLOSE_ASSISTANT]},
        {"name": "report", "url": f"{base}/#/experiments/{exp}/runs/{parent}/artifacts/report/"
         "plots.html", "ready": "text=report/plots.html", "click": [CLOSE_ASSISTANT],
         "expect": ["Optimization history"], "probe": "plotly"},
    ]


def start_dashboard(storage: str, log: Path, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    """Start ``optuna-dashboard`` on the Optuna ``storage`` at a free port of 127.0.0.1."""
    port = _free_port()
    exe = Path(sys.executable).parent / "optuna-dashboard"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(exe), storage, "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait(proc, f"{url}/api/studies", timeout, log)
    return proc, url


def _wait(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    stop(proc)
    raise RuntimeError(f"{url} did not answer:\n{log.read_text()[-3000:]}")


def dashboard_page(storage: str, study: str, url: str) -> dict:
    """optuna-dashboard's page of ``study``."""
    import optuna

    study_id = optuna.storages.get_storage(storage).get_study_id_from_name(study)
    return {"name": "optuna-dashboard", "url": f"{url}/dashboard/studies/{study_id}",
            "ready": "text=History", "expect": [study], "probe": "plotly", "height": 1000}


def verify(page: dict, shown: dict) -> list[str]:
    """What ``page`` (as :func:`pages` made it) should show and ``shown`` (its ``pages.json``
    entry) does not."""
    wrong = [f"text {s!r} not shown" for s in page.get("expect", []) if s not in shown["text"]]
    if shown.get("error"):
        wrong.insert(0, shown["error"])
    probe = shown.get("probe") or {}
    if page.get("columns"):
        headers = probe.get("columns", [])
        wrong += [f"column {c} not shown (columns: {headers})" for c in page["columns"]
                  if c not in headers]
    if page.get("axes") and sorted(probe.get("axes", [])) != sorted(page["axes"]):
        wrong.append(f"parallel coordinates' axes {probe.get('axes')}, not {page['axes']}")
    if page["name"] == "compare" and not probe.get("axes"):
        wrong.append("no parallel coordinates plot")
    if page.get("probe") == "width" and probe.get("right", 0) > page.get("width", WIDTH):
        wrong.append(f"wider than the window: {probe.get('right')} px > {WIDTH} px "
                     f"({probe.get('widest')})")
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri",
                        help="the sweep's MLflow store, e.g. sqlite:///mlflow.db")
    parser.add_argument("--experiment", help="the experiment (the sweep's study name)")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--docs", type=Path, help="copy the screenshots there too (docs/)")
    parser.add_argument("--compare", type=int, default=5, help="trial runs to compare")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", DEFAULT_CHROMIUM))
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds to wait for each page state")
    parser.add_argument("--check", action="store_true", help="only say what is missing")
    args = parser.parse_args(argv)
    lacking = missing(args.chromium)
    if lacking:
        print("missing: " + "; ".join(lacking), file=sys.stderr)
        return 3
    if args.check:
        return 0
    if not (args.tracking_uri and args.experiment):
        parser.error("--tracking-uri and --experiment are needed")
    args.out.mkdir(parents=True, exist_ok=True)
    servers = []
    try:
        proc, base = start_ui(args.tracking_uri, args.out / "mlflow-ui.log")
        servers.append(proc)
        try:
            todo = pages(args.tracking_uri, args.experiment, base, args.compare)
            sweep = sweep_of(args.tracking_uri, args.experiment)
        except LookupError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if sweep["storage"] and (Path(sys.executable).parent / "optuna-dashboard").exists():
            dash, url = start_dashboard(sweep["storage"], args.out / "optuna-dashboard.log")
            servers.append(dash)
            todo.append(dashboard_page(sweep["storage"], sweep["study"], url))
        config = {"chromium": args.chromium, "out": str(args.out.resolve()), "pages": todo,
                  "timeout_ms": int(args.timeout * 1000), "width": WIDTH}
        done = subprocess.run(["node", str(SCRIPT), json.dumps(config)], cwd=ROOT,
                              timeout=120 + args.timeout * 3 * len(todo))
    finally:
        for proc in servers:
            stop(proc)
    shown = {p["name"]: p for p in json.loads((args.out / "pages.json").read_text())}
    failed = 0 if done.returncode == 0 else 1
    for page in todo:
        wrong = verify(page, shown[page["name"]]) if page["name"] in shown else ["not opened"]
        print(f"{args.out / (page['name'] + '.png')}: {page['url']}"
              + "".join(f"\n  {w}" for w in wrong))
        failed = failed or bool(wrong)
        if args.docs and page["name"] in DOCS and (args.out / f"{page['name']}.png").exists():
            args.docs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.out / f"{page['name']}.png", args.docs / DOCS[page["name"]])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
