"""The README's first commands, run as a new user runs them: in a copy of the repository's files
(what a clone holds), the Install block's lines in one bash session, in order. `make sweep` (with
a small sweep passed in ``ARGS``, as the README shows), the activation line, then commands of the
next sections: ``mcmc-train``, the printed best command with a group override, and ``make ui``
and ``make dashboard`` answering on their ports. The set-up itself (``make``'s venv and pip lines) is what CI's clean clone
runs; here ``.venv`` is this test run's environment, linked into the copy."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SMALL_SWEEP = ("hydra.sweeper.n_trials=2 hydra.sweeper.n_jobs=1 trainer.epochs=2 "
               "hydra.sweeper.pruner=none")


def install_lines() -> list[str]:
    """The commands of the README's first code block under "## Install", comments dropped."""
    section = README.read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "no bash block under ## Install"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()
            if line.split("#", 1)[0].strip()]


def copy_of_repository(dest: Path) -> Path:
    """The repository's files that git would clone or commit (tracked and not ignored), copied."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_install_block_is_what_this_test_runs() -> None:
    assert install_lines()[:3] == ["make sweep", "make test", "source .venv/bin/activate"]
    assert install_lines()[3] == "make ui"


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None,
                    reason="needs git and make")
def test_the_first_commands_run_from_a_fresh_copy(tmp_path: Path) -> None:
    clone = copy_of_repository(tmp_path / "clone")
    venv = Path(sys.prefix)
    assert (venv / "bin" / "mcmc-sweep").exists(), f"{venv} is not a set-up environment"
    (clone / ".venv").symlink_to(venv)  # make's set-up target is then already done
    port, dashboard_port = free_port(), free_port()
    script = "\n".join([
        "set -euo pipefail",
        f'make sweep ARGS="{SMALL_SWEEP}"',
        "source .venv/bin/activate",
        "mcmc-train trainer.epochs=1",
        f"(make ui PORT={port} > ui.log 2>&1 &)",
        f"(make dashboard DASHBOARD_PORT={dashboard_port} > dashboard.log 2>&1 &)",
    ])
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(clone), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                    if not p.startswith(str(venv))))
    try:
        done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=1200)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert re.search(r"^final: epoch 1 test_accuracy=", done.stdout, re.MULTILINE), \
            done.stdout[-2000:]
        best = re.search(r"^reproduce the best trial: (mcmc-train .*)$", done.stdout,
                         re.MULTILINE)
        assert best, done.stdout[-3000:]
        variant = subprocess.run(
            ["bash", "-c", f"source .venv/bin/activate && {best.group(1)} tracking=none "
                           "schedule=step trainer.epochs=1"],
            cwd=clone, env=env, capture_output=True, text=True, timeout=600)
        assert variant.returncode == 0, variant.stdout[-2000:] + variant.stderr[-2000:]
        assert "make ui" in install_lines()
        wait_for_http(port, clone / "ui.log")
        wait_for_http(dashboard_port, clone / "dashboard.log")  # on the sweep's study
    finally:
        for p in (port, dashboard_port):
            subprocess.run(["pkill", "-f", f"PORT={p}|--port {p}"], capture_output=True)


def wait_for_http(port: int, log: Path) -> None:
    """Until the UI answers on ``port``; fails with its log once no process of it is left (or
    after 10 minutes, a machine far slower than any we run on)."""
    import time
    import urllib.request

    deadline = time.monotonic() + 600
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                assert answer.status == 200
                return
        except OSError:
            alive = subprocess.run(["pgrep", "-f", f"PORT={port}|--port {port}"],
                                   capture_output=True).returncode == 0
            text = log.read_text() if log.exists() else ""
            assert alive and time.monotonic() < deadline, f"make ui did not answer: {text[-2000:]}"
            time.sleep(1)
