"""``kill -9`` of a sweep whose trials run alone (``study.population=1``), then the same sweep with
``study.population=2``: the killed trials are retried as one population, each chain continuing
from its lone attempt's checkpoint (``last.pt``: weights, epoch, step, history), not from epoch
0, and each trial stays in its one MLflow run. And the reverse: a population killed, its trials
retried alone, each continuing from its chain's checkpoint (``chain.pt``)."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from sweeptools import finished, states, wait_for

from mcmc_core.trainers import load_checkpoint

N_TRIALS, EPOCHS, STEPS = 2, 5, 2500
LONG = ["device=cpu", "dataset=synthetic", f"trainer.epochs={EPOCHS}",
        f"trainer.steps_per_epoch={STEPS}"]


@pytest.fixture(scope="module")
def switched(new_sweep):
    s = new_sweep("population-switch")
    common = (f"study.n_trials={N_TRIALS}", "study.workers=2", "study.pruner=none")
    launch = s.start(s.args(*common, "study.population=1", base=LONG))
    name = launch.study_name()
    wait_for(lambda: (e := s.checkpoint_epochs()) and len(e) == N_TRIALS and
             1 <= min(e.values()) and max(e.values()) <= EPOCHS - 2, 120,
             "lone checkpoints of an early epoch", launch)
    before = launch.kill_and_reap(s.study(name))
    lone = {key: load_checkpoint(path) for key, path in s.checkpoints().items()}
    s.run(s.args(*common, "study.population=2", "study.workers=1", base=LONG)).ok()
    return s, name, lone, before


def test_the_population_continues_each_lone_trial(switched) -> None:
    s, name, lone, before = switched
    trials = s.study(name).get_trials()
    assert len(finished(trials)) == N_TRIALS, states(trials)
    chains = {key: load_checkpoint(path) for key, path in s.checkpoints("chain.pt").items()}
    assert sorted(chains) == sorted(lone) == [t.number for t in before]
    for key, state in lone.items():
        chain, epoch = chains[key], state["epoch"]
        assert 1 <= epoch < EPOCHS
        assert chain["epoch"] == EPOCHS and chain["step"] == EPOCHS * STEPS
        # The lone attempt's epochs are the chain's first ones, unchanged: it was continued.
        assert chain["history"][:epoch] == state["history"]
        assert [h["epoch"] for h in chain["history"]] == list(range(1, EPOCHS + 1))
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == key)
        assert retry.state == TrialState.COMPLETE and retry.params == before[key].params
        assert retry.user_attrs["mlflow_run_id"] == before[key].user_attrs["mlflow_run_id"]
        logged = s.runs(name).steps(retry.user_attrs["mlflow_run_id"], "val_accuracy")
        assert [step for step, _ in logged] == list(range(1, EPOCHS + 1)), logged


@pytest.fixture(scope="module")
def switched_back(new_sweep):
    s = new_sweep("population-switch-back")
    common = (f"study.n_trials={N_TRIALS}", "study.pruner=none")
    launch = s.start(s.args(*common, "study.population=2", "study.workers=1", base=LONG))
    name = launch.study_name()
    wait_for(lambda: (e := s.checkpoint_epochs("chain.pt")) and len(e) == N_TRIALS and
             1 <= min(e.values()) and max(e.values()) <= EPOCHS - 2, 120,
             "chain checkpoints of an early epoch", launch)
    before = launch.kill_and_reap(s.study(name))
    chains = {key: load_checkpoint(path) for key, path in s.checkpoints("chain.pt").items()}
    s.run(s.args(*common, "study.population=1", "study.workers=2", base=LONG)).ok()
    return s, name, chains, before


def test_a_lone_trial_continues_its_population_chain(switched_back) -> None:
    s, name, chains, before = switched_back
    trials = s.study(name).get_trials()
    assert len(finished(trials)) == N_TRIALS, states(trials)
    lone = {key: load_checkpoint(path) for key, path in s.checkpoints().items()}
    assert sorted(lone) == sorted(chains) == [t.number for t in before]
    for key, chain in chains.items():
        state, epoch = lone[key], chain["epoch"]
        assert 1 <= epoch < EPOCHS
        assert state["epoch"] == EPOCHS and state["step"] == EPOCHS * STEPS
        assert state["engine"]["population"]["n_steps"] == EPOCHS * STEPS
        # The chain's epochs are the lone trainer's first ones, unchanged: it was continued.
        assert state["history"][:epoch] == chain["history"]
        assert [h["epoch"] for h in state["history"]] == list(range(1, EPOCHS + 1))
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == key)
        assert retry.state == TrialState.COMPLETE and retry.params == before[key].params
        assert retry.user_attrs["mlflow_run_id"] == before[key].user_attrs["mlflow_run_id"]
        logged = s.runs(name).steps(retry.user_attrs["mlflow_run_id"], "val_accuracy")
        assert [step for step, _ in logged] == list(range(1, EPOCHS + 1)), logged
