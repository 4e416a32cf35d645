"""Fixtures of the ``mcmc-train`` end-to-end tests: the real console script in a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: The closing line printed by every successful run.
FINAL_LINE = re.compile(r"^final: epoch (\d+) test_accuracy=([0-9.]+) ")


@dataclass
class CliResult:
    """What one ``mcmc-train`` process did."""

    args: list[str]
    cwd: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def ok(self) -> CliResult:
        """Assert a zero exit status (showing the output otherwise) and return self."""
        assert self.returncode == 0, f"mcmc-train {' '.join(self.args)} failed:\n{self.stderr}"
        return self

    def epoch_lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("epoch ")]

    def final_test_accuracy(self) -> float:
        """The test accuracy printed in the last lines of stdout."""
        tail = self.stdout.strip().splitlines()[-2:]
        matches = [m for m in map(FINAL_LINE.match, tail) if m]
        assert matches, f"no test accuracy in the last lines of stdout: {tail}"
        return float(matches[0].group(2))


def _command(name: str = "mcmc-train") -> list[str]:
    """The installed console script ``name`` next to this interpreter, else the module."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", f"sweeps.{name.split('-')[1]}"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")}
    # One thread per process: the tests run two processes at a time on small machines.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # Offline: any download attempt fails fast instead of reaching the network.
    env.update({k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                                  "https_proxy")})
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def run_cli(args: Sequence[str], cwd: Path, timeout: float = 600, *,
            command: str = "mcmc-train", env: dict[str, str] | None = None) -> CliResult:
    """Run ``mcmc-train *args`` (or ``command``) in ``cwd``, with ``env`` added to the
    environment, and capture everything."""
    cwd.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([*_command(command), *args], cwd=cwd, env={**_env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    return CliResult(list(args), cwd, proc.returncode, proc.stdout, proc.stderr,
                     time.perf_counter() - start)


def run_many(jobs: Sequence[tuple[Sequence[str], Path]], workers: int = 2,
             timeout: float = 600) -> list[CliResult]:
    """Run independent ``(args, cwd)`` jobs, ``workers`` at a time; results in job order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run_cli(*job, timeout=timeout), jobs))


@pytest.fixture(scope="session")
def cli() -> Callable[..., CliResult]:
    """``cli(args, cwd)`` runs ``mcmc-train`` as a real subprocess."""
    return run_cli


@pytest.fixture(scope="session")
def cli_many() -> Callable[..., list[CliResult]]:
    """``cli_many([(args, cwd), ...])`` runs independent ``mcmc-train`` processes two at a time."""
    return run_many


@pytest.fixture(scope="session")
def cli_popen() -> Callable[..., subprocess.Popen]:
    """``cli_popen(args, cwd, stdout, stderr)``: start ``mcmc-train *args`` in the background."""
    def start(args: Sequence[str], cwd: Path, stdout: Any, stderr: Any) -> subprocess.Popen:
        return subprocess.Popen([*_command(), *args], cwd=cwd, env=_env(), stdout=stdout,
                                stderr=stderr)
    return start
