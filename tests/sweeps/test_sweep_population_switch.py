"""``kill -9`` of a sweep whose trials run alone (``hydra.sweeper.population=1``), then the same
sweep with ``hydra.sweeper.population=2``: the killed trials are retried as one population, each
chain continuing from its lone attempt's checkpoint (``last.pt``: weights, epoch, step, history),
not from epoch 0, and each trial stays in its one MLflow run. And the reverse: a population killed,
its trials retried alone, each continuing from its chain's checkpoint. Either way a trial's
checkpoint is the one a lone trainer writes (``last.pt``): no converter between population
sizes."""

from __future__ import annotations

from typing import Any

import pytest
from optuna.trial import TrialState
from sweeptools import assert_as_uninterrupted, finished, states, wait_for

from mcmc_core.trainers import load_checkpoint

N_TRIALS, EPOCHS, STEPS = 2, 5, 15000
LONG = ["device=cpu", "dataset=synthetic", f"trainer.epochs={EPOCHS}",
        f"trainer.steps_per_epoch={STEPS}"]
LONE = CHAIN = "last.pt"


def kill_early_and_rerun(new_sweep, folder: str, first: int, then: int) -> tuple[Any, ...]:
    """Run a sweep with ``hydra.sweeper.population=first`` until every trial has checkpointed an
    early epoch, ``kill -9`` it, then run it to its end with ``hydra.sweeper.population=then``.
    Returns the sweep, the study name, the killed attempts' checkpoints and their trials."""
    s = new_sweep(folder)
    common = (f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.pruner=none")

    def args(size: int) -> list[str]:  # populations of 2 in one worker, lone trials in two
        return s.args(*common, f"hydra.sweeper.population={size}",
                      f"hydra.sweeper.n_jobs={1 if size > 1 else 2}", base=LONG)

    saved = CHAIN if first > 1 else LONE
    launch = s.start(args(first))
    name = launch.study_name()
    wait_for(lambda: (e := s.checkpoint_epochs(saved)) and len(e) == N_TRIALS and
             1 <= min(e.values()) and max(e.values()) <= EPOCHS - 2, 120,
             f"{saved} checkpoints of an early epoch", launch)
    before = launch.kill_and_reap(s.study(name))
    killed = {key: load_checkpoint(path) for key, path in s.checkpoints(saved).items()}
    s.run(args(then)).ok()
    return s, name, killed, before


def assert_continued(s, name: str, killed: dict[int, Any], before: list[Any],
                     resumed_name: str) -> dict[int, Any]:
    """Each killed trial was retried once, continued from its checkpoint to the last epoch,
    in its one MLflow run; returns the retries' checkpoints."""
    trials = s.study(name).get_trials()
    assert len(finished(trials)) == N_TRIALS, states(trials)
    resumed = {key: load_checkpoint(path) for key, path in s.checkpoints(resumed_name).items()}
    assert sorted(resumed) == sorted(killed) == [t.number for t in before]
    for key, state in killed.items():
        new, epoch = resumed[key], state["epoch"]
        assert 1 <= epoch < EPOCHS
        assert new["epoch"] == EPOCHS and new["step"] == EPOCHS * STEPS
        # The killed attempt's epochs are the retry's first ones, unchanged: it was continued.
        assert new["history"][:epoch] == state["history"]
        assert [h["epoch"] for h in new["history"]] == list(range(1, EPOCHS + 1))
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == key)
        assert retry.state == TrialState.COMPLETE and retry.params == before[key].params
        assert retry.user_attrs["mlflow_run_id"] == before[key].user_attrs["mlflow_run_id"]
        logged = s.runs(name).steps(retry.user_attrs["mlflow_run_id"], "val_accuracy")
        assert [step for step, _ in logged] == list(range(1, EPOCHS + 1)), logged
    return resumed


@pytest.fixture(scope="module")
def switched(new_sweep):
    return kill_early_and_rerun(new_sweep, "population-switch", 1, 2)


@pytest.fixture(scope="module")
def switched_back(new_sweep):
    return kill_early_and_rerun(new_sweep, "population-switch-back", 2, 1)


def test_the_population_continues_each_lone_trial(switched, tmp_path) -> None:
    for key, state in assert_continued(*switched, CHAIN).items():
        assert_as_uninterrupted(state, tmp_path / f"trial-{key}")  # bit for bit


def test_a_lone_trial_continues_its_population_chain(switched_back, tmp_path) -> None:
    for key, state in assert_continued(*switched_back, LONE).items():
        assert state["engine"]["population"]["n_steps"] == EPOCHS * STEPS
        assert_as_uninterrupted(state, tmp_path / f"trial-{key}")  # bit for bit
