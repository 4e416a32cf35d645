"""Every service ``mcmc-sweep`` and ``mcmc-train`` depend on is checked at start-up: a service
that is unreachable or corrupt, or a config value that cannot work (a bad folder, a missing
database driver, no GPU), stops the real console script within seconds with exactly one
``error: <key>=<value>: ...`` line, exit status 1 (service) or 2 (config value), no traceback,
and nothing created: no output folder, no storage, no ``mlflow.db``, no Hydra run folder."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

TINY = ["device=cpu", "dataset=synthetic", "trainer.epochs=1", "trainer.steps_per_epoch=2"]
SWEEP = [*TINY, "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1"]
PG_DOWN = "postgresql+psycopg://u:s3cret@127.0.0.1:1/db"  # nothing listens on port 1
GARBAGE = bytes(range(256)) * 64


def _script(name: str) -> list[str]:
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    module = {"mcmc-sweep": "sweeps.cli.sweep_app", "mcmc-train": "sweeps.cli.train_app"}[name]
    return [found] if found else [sys.executable, "-m", module]


def _env() -> dict[str, str]:
    """Offline (dead proxy) except for loopback, one thread, no inherited tracking settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYDRA_"))
           and k.lower() != "no_proxy"}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update({k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                                  "https_proxy")})
    return env


@dataclass
class Case:
    """One rejected command: the script, its arguments (given ``root``) and what it must give."""

    script: str
    args: Callable[[Path], list[str]]
    status: int
    key: str
    says: str  # part of the error line
    setup: Callable[[Path], None] | None = None
    needs: Callable[[Path], str | None] | None = None  # a reason to skip, if any


@dataclass
class Outcome:
    case: Case
    root: Path
    cwd: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _garbage_db(root: Path) -> None:
    (root / "out").mkdir()
    (root / "out" / "optuna.db").write_bytes(GARBAGE)


def _a_file(root: Path) -> None:
    (root / "a-file").write_text("not a folder")


def _read_only(root: Path) -> None:
    (root / "ro").mkdir()
    (root / "ro").chmod(0o555)


def _read_only_dir(root: Path) -> Path:
    """A folder nothing can be created in: a read-only one, or /sys for root (who ignores
    permissions)."""
    return root / "ro" if os.geteuid() != 0 else Path("/sys")


def _unwritable(root: Path) -> str | None:
    """Skip unless creating a folder in :func:`_read_only_dir` really fails here."""
    target = _read_only_dir(root) / "probe"
    try:
        target.mkdir()
    except OSError:
        return None
    target.rmdir()
    return f"{target.parent} is writable here"


def _no_module(name: str) -> Callable[[Path], str | None]:
    return lambda root: f"{name} is installed" if importlib.util.find_spec(name) else None


def _module(name: str) -> Callable[[Path], str | None]:
    return lambda root: None if importlib.util.find_spec(name) else f"{name} is not installed"


def _no_gpu(root: Path) -> str | None:
    import torch

    return "a CUDA GPU is visible" if torch.cuda.is_available() else None


def _out(root: Path) -> str:
    return f"hydra.sweeper.output_dir={root / 'out'}"


CASES = {
    "sweep-tracking-server-down": Case(
        "mcmc-sweep", lambda r: [*SWEEP, _out(r), "tracking.uri=http://127.0.0.1:1"], 1,
        "tracking.uri", "no MLflow server answers at 127.0.0.1:1"),
    "sweep-storage-server-down": Case(
        "mcmc-sweep",
        lambda r: [*SWEEP, _out(r), f"hydra.sweeper.storage={PG_DOWN}", "tracking=none"], 1,
        "hydra.sweeper.storage", "cannot connect to 127.0.0.1:1", needs=_module("psycopg")),
    "sweep-storage-driver-missing": Case(
        "mcmc-sweep",
        lambda r: [*SWEEP, _out(r), "hydra.sweeper.storage=mysql://u@127.0.0.1/db"], 2,
        "hydra.sweeper.storage",
        "database driver (MySQLdb) is not installed; pip install mysqlclient",
        needs=_no_module("MySQLdb")),
    "sweep-storage-corrupt": Case(
        "mcmc-sweep", lambda r: [*SWEEP, _out(r), "tracking=none"], 1, "hydra.sweeper.storage",
        "is not a readable SQLite database", setup=_garbage_db),
    "sweep-output-under-a-file": Case(
        "mcmc-sweep",
        lambda r: [*SWEEP, f"hydra.sweeper.output_dir={r / 'a-file' / 'sub'}"], 2,
        "hydra.sweeper.output_dir", "a-file is a file, not a folder", setup=_a_file),
    "sweep-output-read-only": Case(
        "mcmc-sweep",
        lambda r: [*SWEEP, f"hydra.sweeper.output_dir={_read_only_dir(r) / 'sub'}"], 2,
        "hydra.sweeper.output_dir", "cannot create files in", setup=_read_only, needs=_unwritable),
    "sweep-device-cuda": Case(
        "mcmc-sweep", lambda r: [*SWEEP, _out(r), "device=cuda"], 2, "device",
        "no CUDA GPU is visible", needs=_no_gpu),
    "train-device-cuda": Case(
        "mcmc-train", lambda r: [*TINY, "device=cuda"], 2, "device", "no CUDA GPU is visible",
        needs=_no_gpu),
    "train-checkpoint-under-a-file": Case(
        "mcmc-train", lambda r: [*TINY, f"trainer.checkpoint_dir={r / 'a-file' / 'ck'}"], 2,
        "trainer.checkpoint_dir", "a-file is a file, not a folder", setup=_a_file),
    "train-tracking-server-down": Case(
        "mcmc-train", lambda r: [*TINY, "tracking.uri=http://127.0.0.1:1"], 1, "tracking.uri",
        "no MLflow server answers at 127.0.0.1:1"),
}


def _run(name: str, case: Case, root: Path) -> Outcome:
    cwd = root / "work"
    cwd.mkdir(parents=True)
    if case.setup:
        case.setup(root)
    start = time.perf_counter()
    proc = subprocess.run([*_script(case.script), *case.args(root)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=600)
    return Outcome(case, root, cwd, proc.returncode, proc.stdout, proc.stderr,
                   time.perf_counter() - start)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome | str]:
    """Every case that applies here, one at a time (each is timed); a skip reason for the
    others."""
    roots = {name: tmp_path_factory.mktemp(name) for name in CASES}
    skips = {name: reason for name, c in CASES.items()
             if c.needs and (reason := c.needs(roots[name]))}
    todo = [name for name in CASES if name not in skips]
    done = {name: _run(name, CASES[name], roots[name]) for name in todo}
    for root in roots.values():  # let pytest clean up
        if (root / "ro").exists():
            (root / "ro").chmod(0o755)
    return {**skips, **done}


def _files(path: Path) -> list[Path]:
    return sorted(path.rglob("*")) if path.exists() else []


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_service_is_one_line_within_seconds_and_creates_nothing(outcomes, name) -> None:
    outcome = outcomes[name]
    if isinstance(outcome, str):
        pytest.skip(outcome)
    case, err = outcome.case, outcome.stderr
    shown = f"-> {outcome.returncode} in {outcome.seconds:.1f} s\n{err[-3000:]}"
    assert outcome.returncode == case.status, shown
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {case.key}="), shown
    assert case.says in lines[0], shown
    assert "Traceback" not in err + outcome.stdout
    assert "s3cret" not in err + outcome.stdout  # the password is masked
    # Within seconds, not the minutes of a TCP or MLflow retry timeout; the bound leaves room
    # for the interpreter and libraries to load on a loaded machine (10 s failed at load 10).
    assert outcome.seconds < 30, shown
    # Nothing created: no Hydra run folder, no mlflow.db in the working directory, no output
    # folder or storage, and the corrupt files are as they were.
    assert _files(outcome.cwd) == [], _files(outcome.cwd)
    assert not (outcome.root / "out" / "sub").exists()
    if (outcome.root / "out").exists():
        assert _files(outcome.root / "out") == [outcome.root / "out" / "optuna.db"]
        assert (outcome.root / "out" / "optuna.db").read_bytes() == GARBAGE
    assert not list(outcome.root.rglob(".preflight-*"))
    print(f"{name}: exit {outcome.returncode} in {outcome.seconds:.1f} s")


# -- rejected configurations create nothing either (Hydra's run folder included) --------------

TYPO = "hydra.sweeper.params.sampler.temprature=tag(log, interval(1e-5, 1e-2))"


@pytest.fixture(scope="module")
def rejected(tmp_path_factory) -> dict[str, Outcome]:
    cases = {
        "typo": Case("mcmc-sweep", lambda r: [*SWEEP, _out(r), TYPO], 2, "", ""),
        "sweep-value": Case("mcmc-sweep",
                            lambda r: [*SWEEP, _out(r), "hydra.sweeper.n_trials=0"], 2, "", ""),
        "train-value": Case("mcmc-train", lambda r: [*TINY, "trainer.epochs=0"], 2, "", ""),
    }
    return {name: _run(name, case, tmp_path_factory.mktemp(name)) for name, case in cases.items()}


@pytest.mark.parametrize("name", ["typo", "sweep-value", "train-value"])
def test_a_rejected_command_leaves_no_hydra_run_folder(rejected, name) -> None:
    outcome = rejected[name]
    assert outcome.returncode == 2, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert _files(outcome.cwd) == []  # no .hydra/ of a run, no outputs/train
    assert not (outcome.root / "out").exists()


def test_a_search_key_typo_names_the_key_and_suggests_the_right_one(rejected) -> None:
    lines = rejected["typo"].stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(
        "error: hydra.sweeper.params.sampler.temprature.key='sampler.temprature' is not "
        "allowed: expected a key of sampler: "), line
    keys = line.split("expected a key of sampler: ")[1].split(" (")[0].split(", ")
    assert {"temperature", "flip_ratio", "proposal"} <= set(keys), keys  # the valid keys
    assert "(did you mean sampler.temperature" in line
    assert ".low" not in line and ".high" not in line
