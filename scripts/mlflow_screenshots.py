"""Screenshots of a sweep in the MLflow UI: starts ``mlflow ui`` on the sweep's MLflow store at a
free port on 127.0.0.1, opens the experiment's runs table and the comparison of its trial runs in
headless Chromium (``mlflow_screenshots.mjs``: npm's playwright-core driving the system's
``/usr/bin/chromium``), and the report's ``plots.html`` in the artifact viewer of the parent run,
and saves ``runs.png``, ``compare.png``, ``report.png`` and ``pages.json`` (each page's text and
the number of plotly figures it drew) into the output folder.

    python scripts/mlflow_screenshots.py --tracking-uri sqlite:///mlflow.db \\
        --experiment mlp-digits-0bdcf59d --out screenshots
    python scripts/mlflow_screenshots.py --check   # what is missing, if anything (exit 3)

Needs ``node``, ``npm install`` run in the repository (playwright-core) and Chromium
(``apt-get install chromium``). Exit status: 0 done, 1 a page did not show its runs, 2 no such
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
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).with_suffix(".mjs")
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# MLflow 3.17's UI: the assistant side panel's close button, and the button that shows a parent
# run's children in the runs table (the first run's: the sweep's parent run).
CLOSE_ASSISTANT = 'button[aria-label="Close"]'
EXPAND_PARENT = 'button[data-component-id$="runnamecellrenderer.tsx_46"]'


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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
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
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    stop(proc)
    raise RuntimeError(f"mlflow ui did not start on {url}:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Terminate the UI's process group and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def pages(tracking_uri: str, experiment: str, base: str, compare: int) -> list[dict]:
    """The pages to open: the experiment's runs table (child runs shown), the comparison of its
    first ``compare`` trial runs and the report's ``plots.html`` on the parent run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise LookupError(f"no MLflow experiment {experiment!r} in {tracking_uri}")
    runs = client.search_runs([found.experiment_id], max_results=1000)
    trials = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags),
                    key=lambda r: r.info.run_name or "")[:compare]
    if not trials:
        raise LookupError(f"experiment {experiment!r} has no trial (child) runs")
    names = [r.info.run_name for r in trials]
    ids = json.dumps([r.info.run_id for r in trials], separators=(",", ":"))
    exp = json.dumps([found.experiment_id], separators=(",", ":"))
    metric = "val_accuracy" if "val_accuracy" in trials[0].data.metrics else next(
        iter(trials[0].data.metrics), "")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    report = [{"name": "report", "url": f"{base}/#/experiments/{found.experiment_id}/runs/"
               f"{parents[0].info.run_id}/artifacts/report/plots.html",
               "click": [CLOSE_ASSISTANT], "expect": ["Optimization history"]}] if parents else []
    return [
        {"name": "runs", "url": f"{base}/#/experiments/{found.experiment_id}/runs",
         "ready": "matching runs", "click": [CLOSE_ASSISTANT, EXPAND_PARENT],
         "expect": [experiment, names[0]]},
        {"name": "compare", "url": f"{base}/#/compare-runs?runs={quote(ids)}"
         f"&experiments={quote(exp)}", "click": [CLOSE_ASSISTANT],
         "expect": [names[0], names[-1], metric], "height": 1400},
        *report,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri",
                        help="the sweep's MLflow store, e.g. sqlite:///mlflow.db")
    parser.add_argument("--experiment", help="the experiment (the sweep's study name)")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--compare", type=int, default=5, help="trial runs to compare")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", DEFAULT_CHROMIUM))
    parser.add_argument("--timeout", type=float, default=60, help="seconds per page")
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
    proc, base = start_ui(args.tracking_uri, args.out / "mlflow-ui.log")
    try:
        try:
            todo = pages(args.tracking_uri, args.experiment, base, args.compare)
        except LookupError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        config = {"chromium": args.chromium, "out": str(args.out.resolve()), "pages": todo,
                  "timeout_ms": int(args.timeout * 1000)}
        done = subprocess.run(["node", str(SCRIPT), json.dumps(config)], cwd=ROOT,
                              timeout=60 + args.timeout * 3 * len(todo))
    finally:
        stop(proc)
    for page in todo:
        print(f"{args.out / (page['name'] + '.png')}: {page['url']}")
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
