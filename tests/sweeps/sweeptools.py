"""Helpers of the ``mcmc-sweep`` end-to-end tests: the real console script in a subprocess, its
real SQLite Optuna storage and its real SQLite MLflow store, all under one temporary folder."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mlflow_server import LOCAL_HOSTS

#: Tiny trials: 3 epochs of 20 MCMC steps on the seeded 600-example ``synthetic`` set.
TINY = ["device=cpu", "dataset=synthetic", "trainer.epochs=3", "trainer.steps_per_epoch=20"]
#: Trials of a few seconds: epochs long enough that a kill lands between two checkpoints (about
#: a second each with the fused CPU kernel, which steps this net ~5x faster than tensor ops).
LONG_EPOCHS = 5
LONG = ["device=cpu", "dataset=synthetic", f"trainer.epochs={LONG_EPOCHS}",
        "trainer.steps_per_epoch=15000"]
#: The first line of every launch: ``study 'NAME': 0/4 finished trials, storage ..., output ...``.
STUDY_LINE = re.compile(r"^study '([^']+)': (\d+)/(\d+) finished trials", re.MULTILINE)


def command(program: str = "mcmc-sweep") -> list[str]:
    """The installed ``program`` (``mcmc-sweep`` or ``mcmc-train``) next to this interpreter,
    else on PATH, else the module."""
    script = Path(sys.executable).parent / program
    if script.exists():
        return [str(script)]
    found = shutil.which(program)
    return [found] if found else [sys.executable, "-m", f"sweeps.{program.split('-')[1]}"]


def env() -> dict[str, str]:
    """Offline (HTTP goes to a dead proxy, except to 127.0.0.1 and localhost: a test's own
    MLflow server), unbuffered, and without tracking settings inherited from the caller."""
    out = {k: v for k, v in os.environ.items()
           if k not in ("HYDRA_FULL_ERROR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
                        "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    out.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out.update({k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                                  "https_proxy")})
    out.update(NO_PROXY=LOCAL_HOSTS, no_proxy=LOCAL_HOSTS)
    return out


@dataclass
class Result:
    """What one ``mcmc-sweep`` process did."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    pid: int | None = None
    program: str = "mcmc-sweep"

    def ok(self) -> Result:
        """Assert exit status 0 (showing the output otherwise) and return self."""
        assert self.returncode == 0, self.describe()
        return self

    def describe(self) -> str:
        return (f"{self.program} {' '.join(self.args)} -> {self.returncode}\n--- stdout\n"
                f"{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}")

    @property
    def study_name(self) -> str:
        found = STUDY_LINE.search(self.stdout)
        assert found, f"no study line:\n{self.describe()}"
        return found.group(1)

    @property
    def finished_before(self) -> int:
        """Finished trials the study held when this launch started."""
        found = STUDY_LINE.search(self.stdout)
        assert found, f"no study line:\n{self.describe()}"
        return int(found.group(2))

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


@dataclass
class Sweep:
    """One sweep's places: ``<root>/work`` (its working directory), ``<root>/out`` (its output
    folder: storage, checkpoints, report) and ``<root>/mlflow.db`` (its MLflow store)."""

    root: Path

    @property
    def cwd(self) -> Path:
        path = self.root / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.out / 'optuna.db'}"

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def args(self, *extra: str, base: Sequence[str] = TINY) -> list[str]:
        """``base`` settings, this sweep's folders and store, then ``extra`` overrides."""
        return [*base, f"hydra.sweeper.output_dir={self.out}", f"tracking.uri={self.uri}", *extra]

    def multirun_args(self, *extra: str, base: Sequence[str] = TINY) -> list[str]:
        """``mcmc-train -m hparams_search=default`` with ``base`` settings, this sweep's
        folders and store, then ``extra`` overrides (run them with ``program="mcmc-train"``)."""
        return ["-m", "hparams_search=default", *base, f"hydra.sweeper.output_dir={self.out}",
                f"tracking.uri={self.uri}", *extra]

    def run(self, args: Sequence[str], timeout: float = 900,
            program: str = "mcmc-sweep") -> Result:
        """Run ``mcmc-sweep *args`` (or ``program``) to its end."""
        start = time.perf_counter()
        proc = subprocess.Popen([*command(program), *args], cwd=self.cwd, env=env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return Result(list(args), proc.returncode, stdout, stderr,
                      time.perf_counter() - start, proc.pid, program)

    def start(self, args: Sequence[str], program: str = "mcmc-sweep") -> Launch:
        """Start ``mcmc-sweep *args`` (or ``program``) in a new session (its own process
        group)."""
        log = self.root / f"launch-{time.monotonic_ns()}"
        stdout, stderr = open(f"{log}.out", "w"), open(f"{log}.err", "w")
        proc = subprocess.Popen([*command(program), *args], cwd=self.cwd, env=env(), stdout=stdout,
                                stderr=stderr, start_new_session=True)
        stdout.close(), stderr.close()
        return Launch(list(args), proc, Path(f"{log}.out"), Path(f"{log}.err"))

    def study(self, name: str) -> Any:
        import optuna

        return optuna.load_study(study_name=name, storage=self.storage)

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def runs(self, name: str) -> Runs:
        """The MLflow runs of study ``name`` (its experiment)."""
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None, f"no MLflow experiment {name!r}"
        return Runs(client, client.search_runs([experiment.experiment_id], max_results=1000))

    def checkpoints(self, name: str = "last.pt") -> dict[int, Path]:
        """``{key: <name>}`` of every trial checkpoint folder (key: first trial of the chain;
        ``chain.pt`` for the trials of populations)."""
        found = {}
        for path in (self.out / "checkpoints").glob(f"trial-*/{name}"):
            found[int(path.parent.name.split("-")[1])] = path
        return found

    def checkpoint_epochs(self, name: str = "last.pt") -> dict[int, int]:
        """``{key: epoch}`` of every trial checkpoint written so far."""
        from mcmc_core.trainers import load_checkpoint

        epochs = {}
        for key, path in self.checkpoints(name).items():
            try:
                epochs[key] = int(load_checkpoint(path)["epoch"])
            except (FileNotFoundError, EOFError, RuntimeError):
                continue  # replaced while reading: the next poll sees the new one
        return epochs


@dataclass
class Launch:
    """A sweep started in the background."""

    args: list[str]
    proc: subprocess.Popen
    stdout_path: Path
    stderr_path: Path

    def signal_group(self, signum: int) -> None:
        os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float = 600) -> Result:
        start = time.perf_counter()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return Result(self.args, code, self.stdout_path.read_text(), self.stderr_path.read_text(),
                      time.perf_counter() - start, self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the whole process group (no-op once it is gone)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def study_name(self) -> str:
        """The study's name, from the line the sweep prints when it starts (waits up to 90 s)."""
        return wait_for(lambda: (m := STUDY_LINE.search(self.stdout_path.read_text())) and
                        m.group(1), 600, "the study line", self)

    def kill_and_reap(self, study: Any) -> list[Any]:
        """``kill -9`` the sweep's process group and wait until its workers are gone; returns
        ``study``'s trials as the kill left them."""
        self.signal_group(signal.SIGKILL)
        self.proc.wait(timeout=120)
        trials = study.get_trials()
        workers = {t.user_attrs["pid"] for t in trials if "pid" in t.user_attrs}
        wait_for(lambda: not any(pid_alive(p) for p in workers), 300, "the workers to be gone")
        return trials


@dataclass
class Runs:
    """A study's MLflow runs: one parent, the trials' children."""

    client: Any
    all: list[Any]

    @property
    def parents(self) -> list[Any]:
        return [r for r in self.all if "mlflow.parentRunId" not in r.data.tags]

    @property
    def children(self) -> list[Any]:
        return [r for r in self.all if "mlflow.parentRunId" in r.data.tags]

    def with_status(self, status: str) -> list[Any]:
        return [r for r in self.children if r.info.status == status]

    def by_id(self, run_id: str) -> Any:
        return next(r for r in self.all if r.info.run_id == run_id)

    def steps(self, run_id: str, metric: str) -> list[tuple[int, int]]:
        """``[(step, timestamp_ms)]`` of a metric's history, by step."""
        history = self.client.get_metric_history(run_id, metric)
        return sorted((m.step, m.timestamp) for m in history)

    def artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [a.path for a in self.client.list_artifacts(run_id, path)]


def run_many(jobs: Sequence[tuple[Sweep, Sequence[str]]], workers: int = 2) -> list[Result]:
    """Run independent ``(sweep, args)`` jobs ``workers`` at a time; results in job order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: job[0].run(job[1]), jobs))


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             launch: Launch | None = None, poll: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds
    (killing ``launch`` and showing its output)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if launch is not None and launch.proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}:\n{launch.output()[-4000:]}")
        time.sleep(poll)
    if launch is not None:
        launch.kill()
        raise AssertionError(f"timeout waiting for {what}:\n{launch.output()[-4000:]}")
    raise AssertionError(f"timeout waiting for {what}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def retry_of(trials: list[Any], trial: Any) -> Any:
    """The one retry of a trial that a kill left running (Optuna's ``failed_trial``)."""
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retries) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
    return retries[0]


def running(trials: list[Any]) -> list[Any]:
    """The RUNNING trials (e.g. those a kill caught)."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.RUNNING]


def finished(trials: list[Any]) -> list[Any]:
    """COMPLETE and PRUNED trials: what counts towards ``study.n_trials``."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def states(trials: list[Any]) -> dict[str, int]:
    """Trial counts by state name."""
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


#: History entries that measure time, not the chain.
TIMING = ("epoch_time", "wall_time", "steps_per_s")


def assert_as_uninterrupted(state: dict[str, Any], folder: Path) -> None:
    """A trial's final checkpoint ``state`` (killed, resumed, maybe moved between population
    sizes) holds the weights and epochs' metrics of its config run in one go, bit for bit."""
    import torch
    from omegaconf import OmegaConf

    from mcmc_core.config import TrainConfig
    from mcmc_core.data import load_dataset
    from mcmc_core.trainers import TrainerPopulation

    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig),
                                              state["config"]))
    cfg.trainer.checkpoint_dir, cfg.tracking.enabled = str(folder), False
    whole = TrainerPopulation([cfg], load_dataset(cfg.dataset))
    whole.train()

    def untimed(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in h.items() if k not in TIMING} for h in history]

    assert untimed(state["history"]) == untimed(whole.records[0].history)
    assert all(torch.equal(a, b) for a, b in zip(state["model"].values(),
                                                  whole.chain_weights(0).values()))
def check_first_launch(launch: Result, trials: list[Any], n_trials: int) -> None:
    """Assert that ``launch``, a study's first, left exactly ``n_trials`` finished ``trials``
    and none RUNNING, ran them in one or two worker processes and printed the best trial."""
    from optuna.trial import TrialState

    assert len(finished(trials)) == n_trials, states(trials)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert launch.finished_before == 0
    # Trials ran in the worker processes (at most two), not in the sweep's own process.
    pids = {t.user_attrs["pid"] for t in finished(trials)}
    assert 1 <= len(pids) <= 2 and launch.pid not in pids
    assert "best: trial" in launch.stdout


def wait_mid_trial(s: Sweep, study: Any, launch: Launch) -> None:
    """Wait until a RUNNING trial of ``launch`` (trials of :data:`LONG`) has checkpointed an
    early epoch: a stop now lands mid-trial, with epochs left to continue."""
    from optuna.trial import TrialState

    def mid_trial() -> bool:
        running = {t.number for t in study.get_trials(states=(TrialState.RUNNING,))}
        return any(1 <= epoch <= LONG_EPOCHS - 3 and key in running
                   for key, epoch in s.checkpoint_epochs().items())

    wait_for(mid_trial, 600, "a RUNNING trial with a checkpoint", launch)


def kill_mid_trial(s: Sweep, args: Sequence[str], rerun_args: Sequence[str],
                   program: str = "mcmc-sweep") -> SimpleNamespace:
    """Start ``program *args`` (trials of :data:`LONG`), SIGKILL its process group once a
    RUNNING trial has checkpointed an early epoch, then run ``program *rerun_args`` to its end.

    Returns ``s``, ``name`` (the study's), ``killed_ms`` (when), ``before`` (the trials as the
    kill left them), ``at_kill`` (``{key: epoch}`` of the checkpoints then), ``rerun`` (its
    :class:`Result`), ``trials`` and ``runs`` after it, and ``first_output`` (the killed
    launch's output).
    """
    launch = s.start(args, program=program)
    name = launch.study_name()
    study = s.study(name)
    wait_mid_trial(s, study, launch)
    killed_ms = int(time.time() * 1000)
    before = launch.kill_and_reap(study)
    at_kill = s.checkpoint_epochs()
    rerun = s.run(rerun_args, program=program).ok()
    return SimpleNamespace(s=s, name=name, killed_ms=killed_ms, at_kill=at_kill, before=before,
                           rerun=rerun, trials=s.study(name).get_trials(), runs=s.runs(name),
                           first_output=launch.output())


def assert_continued(s: Sweep, trials: list[Any], runs: Runs, stopped: Sequence[int],
                     at_stop: dict[int, int]) -> None:
    """Each trial in ``stopped`` (numbers of trials a stop or kill caught, of :data:`LONG`)
    failed, and its one retry finished with the same values; one that had checkpointed an epoch
    (``at_stop``: ``{key: epoch}`` then) was continued from it: its checkpoint folder holds
    every epoch once, and its MLflow run logged every epoch once (a restart from epoch 0 would
    log epoch 1 again)."""
    from mcmc_core.trainers import load_checkpoint
    from optuna.trial import TrialState

    for number in stopped:
        old = trials[number]
        assert old.state == TrialState.FAIL, (number, states(trials))
        retry = retry_of(trials, old)
        assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED), retry
        assert retry.params == old.params
        if at_stop.get(number, 0) >= 1:
            state = load_checkpoint(s.checkpoints()[number])
            epochs = list(range(1, LONG_EPOCHS + 1))
            assert [h["epoch"] for h in state["history"]] == epochs
            logged = runs.steps(retry.user_attrs["mlflow_run_id"], "val_accuracy")
            assert [step for step, _ in logged] == epochs, logged
