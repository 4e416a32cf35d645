"""The MLflow UI of a sweep, in a browser: the links a sweep prints open its trial runs in
"Model training" mode with the columns ``objective`` and the searched keys, and a parallel
coordinates chart of the searched keys and ``objective``; the parent run's page is no wider than
the window (``scripts/mlflow_screenshots.py``, headless Chromium through playwright-core).
Skipped, with what is missing, without Chromium, node 20+ or ``npm install``'s playwright-core.
"""

from __future__ import annotations

import json
import os
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.tracking import ui_links
from sweeptools import env

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "scripts" / "mlflow_screenshots.py"
N_TRIALS = 4
#: conf/hparams_search/default.yaml's searched keys.
SEARCHED = ["sampler.flip_ratio", "sampler.temperature", "schedule.cooling_rate"]


def test_links_of_a_store_and_of_a_server() -> None:
    store = ui_links.sweep_links("sqlite:///mlflow.db", "3", "abc")
    assert store["runs"] == ("http://127.0.0.1:5000/#/experiments/3/runs?workflowType="
                             "machine_learning&viewStateShareKey=sweep-abc")
    assert store["charts"] == store["runs"] + "&compareRunsMode=CHART"
    assert store["serve"] == "mlflow ui --backend-store-uri sqlite:///mlflow.db"
    server = ui_links.sweep_links("https://me:s3cret@mlflow.example:8443/", "3", "abc")
    assert server["runs"].startswith("https://mlflow.example:8443/#/") and "serve" not in server
    assert not any("s3cret" in link or "me@" in link for link in server.values())
    assert "(#/experiments/3/runs?" in ui_links.links_markdown(store)  # relative in the UI


def test_view_holds_the_searched_keys_and_objective() -> None:
    view = ui_links.sweep_view("abc", SEARCHED, "minimize")
    assert view["searchFilter"] == "tags.mlflow.parentRunId = 'abc'"
    assert view["orderByKey"] == "metrics.`objective`" and view["orderByAsc"] is True
    assert view["selectedColumns"] == ["metrics.`objective`",
                                       *(f"params.`{k}`" for k in SEARCHED)]
    (chart,) = view["compareRunCharts"]
    assert chart["type"] == "PARALLEL" and chart["selectedParams"] == SEARCHED
    assert chart["selectedMetrics"] == ["objective"]


def test_view_draws_log_searched_keys_as_their_log10() -> None:
    view = ui_links.sweep_view("abc", SEARCHED, logs={"sampler.temperature"})
    (chart,) = view["compareRunCharts"]
    assert chart["selectedParams"] == ["sampler.flip_ratio", "schedule.cooling_rate"]
    assert chart["selectedMetrics"] == ["log10 sampler.temperature", "objective"]
    assert view["selectedColumns"][1:] == [f"params.`{k}`" for k in SEARCHED]  # the table's


def test_command_block_has_short_lines_and_the_same_words() -> None:
    command = ("mcmc-train --config-dir /a/long/path/report/best --config-name config "
               + " ".join(f"group.key{i}=0.000{i}123456789" for i in range(12)) + " x='a b'")
    block = ui_links.command_markdown(command)
    lines = block.splitlines()
    assert lines[0] == lines[-1] == "```" and all(len(line) <= 72 for line in lines)
    assert shlex.split(" ".join(line.rstrip("\\") for line in lines[1:-1])) == \
        shlex.split(command)


@pytest.fixture(scope="module")
def tools() -> None:
    check = subprocess.run([sys.executable, str(SCREENSHOTS), "--check"], capture_output=True,
                           text=True, env=env())
    if check.returncode == 3:
        pytest.skip(check.stderr.strip())
    assert check.returncode == 0, check.stderr


@pytest.fixture(scope="module")
def sweep(new_sweep):
    s = new_sweep("mlflow-ui")
    done = s.run(s.args(f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=2")).ok()
    return s, done


def test_sweep_prints_its_mlflow_links(sweep) -> None:
    s, done = sweep
    lines = [line for line in done.stdout.splitlines() if "viewStateShareKey=" in line]
    assert len(lines) == 2, done.stdout
    assert "workflowType=machine_learning" in lines[0] and lines[0].startswith("mlflow:   ")
    assert lines[1].rstrip().endswith("&compareRunsMode=CHART (parallel coordinates)")
    assert "mlflow ui --backend-store-uri" in done.stdout  # a sqlite store: how to serve it
    assert f"optuna:   optuna-dashboard {s.storage}" in done.stdout.splitlines()


def test_mlflow_ui_shows_the_sweep(tools, sweep, tmp_path) -> None:
    s, done = sweep
    out = tmp_path / "shots"
    docs = os.environ.get("MLFLOW_SCREENSHOTS_DOCS")  # e.g. docs: refresh docs/*.png
    ran = subprocess.run([sys.executable, str(SCREENSHOTS), "--tracking-uri", s.uri,
                          "--experiment", done.study_name, "--out", str(out), "--compare", "3",
                          *(["--docs", docs] if docs else [])],
                         capture_output=True, text=True, env=env(), timeout=1500)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    pages = {p["name"]: p for p in json.loads((out / "pages.json").read_text())}
    for name in ("runs", "charts", "compare", "parent", "report"):
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, name
        assert struct.unpack(">II", data[16:24])[0] == 1600, name
    columns = pages["runs"]["probe"]["columns"]
    assert "metrics.`objective`" in columns
    assert all(f"params.`{key}`" in columns for key in SEARCHED), columns
    assert "Model training" in pages["runs"]["text"] and "Sort: objective" in pages["runs"]["text"]
    assert sorted(pages["charts"]["probe"]["axes"]) == sorted(  # log searches on log10 axes
        ["log10 sampler.flip_ratio", "log10 sampler.temperature", "schedule.cooling_rate",
         "objective"])
    assert set(SEARCHED) <= set(pages["compare"]["probe"]["axes"])  # MLflow's own choice
    assert "Optimization history" in pages["report"]["text"]
    assert pages["report"]["probe"]["plotly"] >= 3
    # The parent run's description (the report's): the links, and the command wrapped so that
    # the page is no wider than the window.
    assert "Trial runs, best first" in pages["parent"]["text"]
    assert pages["parent"]["probe"]["right"] <= 1600, pages["parent"]["probe"]
