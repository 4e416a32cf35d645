"""Large populations without per-trial round trips, on real SQLite Optuna storages: pruning
decisions and asks from one read of the study (``sweeps.study.snapshot``), reports, user attributes
and heartbeats of many trials in one transaction (``sweeps.study.batch_writes``), the workers' phase
times (``sweeps.workers.timing``) and their devices (``sweeps.workers.launcher.worker_devices``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from sweeps.workers import timing as phases
from sweeps.study.batch_writes import record_heartbeats, report_values, set_user_attrs
from sweeps.sweeper.config import ParamSpec
from sweeps.sweeper.settings import McmcOptunaSweeperConf
from sweeps.workers.launcher import worker_devices
from sweeps.study.snapshot import prune_decisions, snapshot_study
from sweeps.study.space import SearchSpace
from sweeps.study.trials import open_storage, open_study
from sweeps.workers.worker import SpaceExhausted, ask_trials

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")]


def new_study(tmp_path, name: str, db: str | None = None, **settings) -> optuna.Study:
    cfg = McmcOptunaSweeperConf(sampler="random", **settings)
    return open_study(open_storage(f"sqlite:///{tmp_path / f'{db or name}.db'}", cfg), name,
                      cfg, create=True)


def running_trials(study: optuna.Study, complete: list[list[float]],
                   running: list[list[float]]) -> list[optuna.Trial]:
    """Complete trials with these per-epoch values, then running ones reported so far."""
    for values in complete:
        trial = study.ask()
        for epoch, v in enumerate(values, 1):
            trial.report(v, epoch)
        study.tell(trial, max(values))
    trials = []
    for values in running:
        trial = study.ask()
        for epoch, v in enumerate(values, 1):
            trial.report(v, epoch)
        trials.append(trial)
    return trials


# -- pruning decisions from one read ---------------------------------------------------------

@pytest.mark.parametrize("pruner", ["successive_halving", "median", "hyperband"])
def test_prune_decisions_are_the_one_by_one_decisions(tmp_path, pruner) -> None:
    complete = [[0.1 * i, 0.1 * i + 0.05, 0.1 * i + 0.1, 0.1 * i + 0.1, 0.1 * i, 0.2, 0.3]
                for i in range(5)]
    running = [[0.02 * ((7 * k) % 30)] * 7 for k in range(30)]  # in no order
    # one study name: hyperband puts a trial in a bracket by the study's name and its number
    one_by_one = new_study(tmp_path, "p", "a", pruner=pruner)
    batched = new_study(tmp_path, "p", "b", pruner=pruner)
    expected = {t.number for t in running_trials(one_by_one, complete, running)
                if t.should_prune()}
    got = prune_decisions(batched, running_trials(batched, complete, running))
    # the same trials pruned, some but not all of them
    assert got == expected and 0 < len(got) < len(running)
    # and the pruner's own records (successive halving's rung values) are the same
    assert [t.system_attrs for t in batched.get_trials()] == [
        t.system_attrs for t in one_by_one.get_trials()]


def test_a_snapshot_reads_the_storage_again_after_its_block(tmp_path) -> None:
    study = new_study(tmp_path, "s")
    with snapshot_study(study) as snap:
        trial = snap.study.ask()
        study.ask()  # not this view's: unseen while the snapshot lasts
        assert [t.number for t in snap.trials()] == [0]
    trial.report(0.5, 1)  # the trial asked through the view writes to the study
    assert len(snap.study.get_trials()) == 2
    assert study.get_trials()[0].intermediate_values == {1: 0.5}


# -- asks --------------------------------------------------------------------------------------

def test_a_batch_of_asks_sees_the_parameters_of_its_own_trials(tmp_path) -> None:
    # Two points only: the batch's third ask repeats one of its first two every time.
    space = SearchSpace({"x": ParamSpec(key="seed", type="categorical", choices=[1, 2])})
    study = new_study(tmp_path, "d")
    with pytest.raises(SpaceExhausted):
        ask_trials(study, n_trials=10, k=3, space=space)
    trials = study.get_trials()
    assert sorted(t.params["x"] for t in trials if t.state == TrialState.RUNNING) == [1, 2]
    assert all("duplicate_of" in t.user_attrs for t in trials if t.state == TrialState.FAIL)


def test_a_batch_of_asks_stops_when_another_worker_fills_the_study(tmp_path) -> None:
    study = new_study(tmp_path, "g")
    other = optuna.load_study(study_name="g", storage=study._storage)
    space = SearchSpace({"x": ParamSpec(key="seed", type="int", low=0, high=10**6)})
    asked: list[optuna.Trial] = []

    def take_two(trial: optuna.Trial) -> None:  # another worker asks during the batch
        if trial.number == 0:
            asked.extend(other.ask() for _ in range(2))
    space_suggest = space.suggest
    space.suggest = lambda trial: (take_two(trial), space_suggest(trial))[1]  # type: ignore
    mine = ask_trials(study, n_trials=4, k=4, space=space)
    # the study holds 4 running trials, the other worker's two and two of mine: the batch
    # stopped asking once the database counted 4 (no surplus trial was made and given back)
    assert [t.number for t in mine] == [0, 3] and [t.number for t in asked] == [1, 2]
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 4


# -- many trials' writes in one transaction --------------------------------------------------

def test_report_values_writes_what_report_writes(tmp_path) -> None:
    study = new_study(tmp_path, "r")
    trials = [study.ask() for _ in range(5)]
    report_values(trials, [0.1, 0.2, 0.3, 0.4, 0.5], 1)
    report_values(trials[:2], [9.0, 9.0], 1)  # a step already reported stays as it was
    assert [t.intermediate_values for t in study.get_trials()] == [
        {1: v} for v in (0.1, 0.2, 0.3, 0.4, 0.5)]
    study.tell(trials[3], 0.4)
    with pytest.raises(UpdateFinishedTrialError):
        report_values(trials, [0.6] * 5, 2)
    # nothing of the failed batch was written
    assert all(2 not in t.intermediate_values for t in study.get_trials())


def test_set_user_attrs_sets_every_trials_attributes(tmp_path) -> None:
    study = new_study(tmp_path, "u")
    trials = [study.ask() for _ in range(3)]
    set_user_attrs([(t, {"host": "h", "pid": t.number}) for t in trials])
    assert [t.user_attrs for t in study.get_trials()] == [
        {"host": "h", "pid": n} for n in range(3)]
    assert trials[2].user_attrs == {"host": "h", "pid": 2}


def test_record_heartbeats_keeps_every_trial_alive(tmp_path) -> None:
    cfg = McmcOptunaSweeperConf(sampler="random", heartbeat_interval=1, grace_period=1)
    storage = open_storage(f"sqlite:///{tmp_path / 'h.db'}", cfg)
    study = open_study(storage, "h", cfg, create=True)
    trials = [study.ask() for _ in range(3)]
    record_heartbeats(storage, [t._trial_id for t in trials])
    time.sleep(2.1)  # SQLite's now() counts whole seconds
    ids = [t._trial_id for t in trials]
    assert sorted(storage._get_stale_trial_ids(study._study_id)) == ids  # beats got old
    record_heartbeats(storage, ids)
    assert storage._get_stale_trial_ids(study._study_id) == []


# -- phases and devices ------------------------------------------------------------------------

def test_phases_add_up_per_phase_and_go_to_the_worker_file(tmp_path) -> None:
    phases.reset()
    for _ in range(3):
        with phases.phase("mlflow_log"):
            time.sleep(0.01)
    with phases.phase("ask"):
        pass
    path = phases.worker_file(tmp_path, "s1", 2)
    phases.write_worker_file(path, {"worker": 2})
    written = json.loads(path.read_text())
    assert list(written["phases"]) == ["ask", "mlflow_log"]  # in PHASES order
    assert written["phases"]["mlflow_log"]["calls"] == 3
    assert written["phases"]["mlflow_log"]["seconds"] >= 0.03 and written["worker"] == 2


def test_workers_share_gpus_round_robin() -> None:
    assert worker_devices([0], 4) == ["cuda:0"] * 4
    assert worker_devices([0, 1], 3) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices(None, 2) == ["cpu", "cpu"]


def test_several_workers_on_a_gpu_without_cuda_is_one_clear_line(tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli.sweep_app", "device=cuda",
                           "hydra.sweeper.n_jobs=4", "hydra.sweeper.gpus=[0]",
                           "hydra.sweeper.dry_run=true"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines() + proc.stderr.strip().splitlines() == [
        "error: device=cuda: no CUDA GPU is visible; use device=cpu or device=auto"]
