"""Pruning in a sweep built to need it: half the temperatures searched are absurd (the chain
accepts every flip and never learns), and the median pruner stops those trials early; and a sweep
with a non-default sampler and pruner (CMA-ES, successive halving) runs to its total."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from sweeptools import finished, run_many, states

N_PRUNING, EPOCHS = 8, 7
GOOD, BAD = 0.0003, 30.0
#: Good or absurd temperatures, drawn by the seeded random sampler (one worker: reproducible).
PRUNING = ["device=cpu", "dataset=synthetic", f"trainer.epochs={EPOCHS}",
           "trainer.steps_per_epoch=20", "~hydra.sweeper.params.sampler.temperature",
           (f"hydra.sweeper.params.temp={{key:sampler.temperature,type:categorical,"
            f"choices:[{GOOD},{BAD}]}}"),
           f"hydra.sweeper.n_trials={N_PRUNING}", "hydra.sweeper.n_jobs=1",
           "hydra.sweeper.sampler=random", "hydra.sweeper.pruner=median", "hydra.sweeper.seed=0"]
N_OTHER = 3


@pytest.fixture(scope="module")
def runs(new_sweep):
    pruning, other = new_sweep("median-pruner"), new_sweep("cmaes-halving")
    results = run_many([
        (pruning, pruning.args(base=PRUNING)),
        (other, other.args(f"hydra.sweeper.n_trials={N_OTHER}", "hydra.sweeper.n_jobs=1",
                           "hydra.sweeper.sampler=cmaes",
                           "hydra.sweeper.pruner=successive_halving")),
    ])
    out = {}
    for key, s, result in zip(("pruning", "other"), (pruning, other), results):
        result.ok()
        name = result.study_name
        out[key] = SimpleNamespace(s=s, result=result, trials=s.study(name).get_trials(),
                                   runs=s.runs(name), study=s.study(name))
    return SimpleNamespace(**out)


def test_median_pruner_prunes_the_hopeless_trials(runs) -> None:
    trials = runs.pruning.trials
    assert len(finished(trials)) == N_PRUNING, states(trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, states(trials)
    for t in pruned:
        assert t.params["temp"] == BAD
        assert t.last_step < EPOCHS  # stopped before its last epoch
        assert sorted(t.intermediate_values) == list(range(1, t.last_step + 1))
    # Good trials are never pruned; the startup trials (4 complete) ran to the end.
    assert all(t.state == TrialState.COMPLETE for t in trials if t.params["temp"] == GOOD)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 4
    assert all(t.last_step == EPOCHS for t in complete)
    # Pruned at a step where it was below the median of the complete trials.
    for t in pruned:
        step = t.last_step
        others = sorted(c.intermediate_values[step] for c in complete
                        if c.number < t.number)
        median = (others[(len(others) - 1) // 2] + others[len(others) // 2]) / 2
        assert t.intermediate_values[step] < median


def test_pruned_trials_are_finished_child_runs(runs) -> None:
    r = runs.pruning
    assert len(r.runs.with_status("FINISHED")) == N_PRUNING == len(r.runs.children)
    for t in r.trials:
        if t.state != TrialState.PRUNED:
            continue
        run = r.runs.by_id(t.user_attrs["mlflow_run_id"])
        assert run.data.tags["optuna.state"] == "PRUNED"
        # Visible as pruned in the runs table; MLflow has no such status: FINISHED.
        assert run.info.run_name == f"trial-{t.number:04d} (pruned)"
        assert run.info.status == "FINISHED"
        # Its objective is its last reported value, as optuna-dashboard shows it: never drawn
        # above the real best (MLflow draws a run without the metric at max + 0.01).
        last = t.intermediate_values[t.last_step]
        assert run.data.metrics["objective"] == last
        objective = r.runs.steps(run.info.run_id, "objective")
        assert [step for step, _ in objective] == sorted(t.intermediate_values)
        best = max(c.value for c in r.trials if c.state == TrialState.COMPLETE)
        assert run.data.metrics["objective"] < best
        # Its best epoch so far, as a complete run has its best epoch's.
        assert run.data.metrics["best_val_accuracy"] == max(t.intermediate_values.values())
        assert run.data.metrics["final_epoch"] == t.last_step
        assert "best" not in run.data.tags
        assert f"pruned at epoch {t.last_step}" in run.data.tags["optuna.pruned"]
        steps = [s for s, _ in r.runs.steps(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, t.last_step + 1))
        assert "model/state_dict.pt" in r.runs.artifacts(run.info.run_id, "model")
    assert "PRUNED   at epoch" in r.result.stdout
    best = r.study.best_trial
    for t in r.trials:
        if t.state == TrialState.COMPLETE:
            run = r.runs.by_id(t.user_attrs["mlflow_run_id"])
            suffix = " (best)" if t.number == best.number else ""
            assert run.info.run_name == f"trial-{t.number:04d}{suffix}"
            assert run.data.metrics["objective"] == t.value
    # Exactly one run marked best: the study's best trial's, the one the sweep printed.
    (marked,) = [run for run in r.runs.children if run.data.tags.get("best") == "true"]
    assert marked.info.run_id == best.user_attrs["mlflow_run_id"]
    assert f"best: trial {best.number} val_accuracy=" in r.result.stdout
    assert r.study.metric_names == ["val_accuracy"]


def test_cmaes_and_successive_halving_run_a_sweep(runs) -> None:
    trials = runs.other.trials
    assert len(finished(trials)) == N_OTHER, states(trials)
    # CMA-ES proposed the trials after the first one; successive halving recorded its rung.
    assert any(k.startswith("cma:") for t in trials[1:] for k in t.system_attrs), [
        t.system_attrs for t in trials]
    assert all("completed_rung_0" in t.system_attrs for t in finished(trials))
    assert len({t.params["temperature"] for t in trials}) == len(trials)
