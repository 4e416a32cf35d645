"""The MLflow UI of a sweep, in a browser: the links a sweep prints open its trial runs in
"Model training" mode with the columns ``objective`` and the searched keys, and a parallel
coordinates chart of the searched keys and ``objective``; the parent run's page is no wider than
the window (``scripts/mlflow_screenshots.py``, headless Chromium through playwright-core).
Skipped, with what is missing, without Chromium, node 20+ or ``npm install``'s playwright-core.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sweeptools import env

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "scripts" / "mlflow_screenshots.py"
N_TRIALS = 4
#: conf/hparams_search/default.yaml's searched keys.
SEARCHED = ["sampler.flip_ratio", "sampler.temperature", "schedule.cooling_rate"]


@pytest.fixture(scope="module")
def tools() -> None:
    check = subprocess.run([sys.executable, str(SCREENSHOTS), "--check"], capture_output=True,
                           text=True, env=env())
    if check.returncode == 3:
        pytest.skip(check.stderr.strip())
    assert check.returncode == 0, check.stderr


@pytest.fixture(scope="module")
def sweep(tools, new_sweep):
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


def test_mlflow_ui_shows_the_sweep(sweep, tmp_path) -> None:
    s, done = sweep
    out = tmp_path / "shots"
    docs = os.environ.get("MLFLOW_SCREENSHOTS_DOCS")  # e.g. docs: refresh docs/*.png
    ran = subprocess.run([sys.executable, str(SCREENSHOTS), "--tracking-uri", s.uri,
                          "--experiment", done.study_name, "--out", str(out), "--compare", "3",
                          *(["--docs", docs] if docs else [])],
                         capture_output=True, text=True, env=env(), timeout=1500)
    problems = [line.strip() for line in ran.stdout.splitlines() if line.startswith("  ")]
    assert ran.returncode == 0 or problems and all(  # only the width: see the end
        p.startswith("wider than the window") for p in problems), ran.stdout + ran.stderr
    pages = {p["name"]: p for p in json.loads((out / "pages.json").read_text())}
    for name in ("runs", "charts", "compare", "parent", "report"):
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, name
        assert struct.unpack(">II", data[16:24])[0] == 1600, name
    columns = pages["runs"]["probe"]["columns"]
    assert "metrics.`objective`" in columns
    assert all(f"params.`{key}`" in columns for key in SEARCHED), columns
    assert "Model training" in pages["runs"]["text"] and "Sort: objective" in pages["runs"]["text"]
    assert sorted(pages["charts"]["probe"]["axes"]) == sorted([*SEARCHED, "objective"])
    assert set(SEARCHED) <= set(pages["compare"]["probe"]["axes"])  # MLflow's own choice
    assert "Optimization history" in pages["report"]["text"]
    assert pages["report"]["probe"]["plotly"] >= 3
    # The parent run's description: the report rewrites it (sweeps/report/writer.py); until it
    # keeps the links and wraps the command (ui_links.links_markdown, command_markdown), its
    # one-line command widens the page.
    if "Trial runs, best first" not in pages["parent"]["text"]:
        pytest.xfail("the report's description of the parent run has no UI links yet")
    assert pages["parent"]["probe"]["right"] <= 1600, pages["parent"]["probe"]
