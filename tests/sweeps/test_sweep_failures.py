"""A trial that raises fails alone: it is FAIL with its error recorded (Optuna user attribute and
MLflow tag, its child run FAILED) and the sweep goes on to ``n_trials``;
``hydra.sweeper.max_failures`` ends a sweep whose trials keep failing early, with exit status 1 and
a clear message.

The failure is real: ``model.output_scale=1e300`` overflows the logits, the loss and the energy
are NaN, and the trial stops with the chain diverged."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from sweeptools import finished, run_many, states

N_TRIALS = 3
#: Half the values of an added search entry make the chain diverge. With the TPE sampler's seed
#: 5, the third trial of a one-worker sweep draws the bad one (a sweep's trials are seeded).
DIVERGING = "hydra.sweeper.params.model.output_scale=choice(4.0, 1e300)"


@pytest.fixture(scope="module")
def runs(new_sweep):
    going_on, stopping = new_sweep("fail-goes-on"), new_sweep("max-failures")
    results = run_many([
        (going_on, going_on.args(DIVERGING, f"hydra.sweeper.n_trials={N_TRIALS}",
                                 "hydra.sweeper.n_jobs=1", "hydra.sweeper.seed=5",
                                 "hydra.sweeper.max_failures=10")),
        (stopping, stopping.args("model.output_scale=1e300", f"hydra.sweeper.n_trials={N_TRIALS}",
                                 "hydra.sweeper.n_jobs=1", "hydra.sweeper.max_failures=1")),
    ])
    out = {}
    for key, s, result in zip(("going_on", "stopping"), (going_on, stopping), results):
        name = result.study_name
        out[key] = SimpleNamespace(s=s, result=result, trials=s.study(name).get_trials(),
                                   runs=s.runs(name))
    return SimpleNamespace(**out)


def test_a_failing_trial_does_not_stop_the_sweep(runs) -> None:
    r = runs.going_on
    r.result.ok()
    failed = [t for t in r.trials if t.state == TrialState.FAIL]
    assert failed, states(r.trials)
    assert len(finished(r.trials)) == N_TRIALS
    assert not [t for t in r.trials if t.state == TrialState.RUNNING]
    for t in failed:
        assert t.params["output_scale"] == 1e300
        assert t.user_attrs["error"].startswith("FloatingPointError: ")
        assert "the chain diverged" in t.user_attrs["error"]
        assert "Traceback" in t.user_attrs["traceback"]
    assert all(t.params["output_scale"] == 4.0 for t in finished(r.trials))
    # The failed trial is reported on the console, and the sweep still ended normally.
    assert any(f"trial {failed[0].number:>3} FAIL" in line and "FloatingPointError" in line
               for line in r.result.stdout.splitlines())


def test_failed_trial_has_a_failed_child_run_with_the_error(runs) -> None:
    r = runs.going_on
    for t in r.trials:
        if t.state != TrialState.FAIL:
            continue
        run = r.runs.by_id(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED"
        assert run.data.tags["error"] == t.user_attrs["error"]
        assert run.data.tags["optuna.state"] == "FAIL"
        assert run.data.tags["optuna.trial_number"] == str(t.number)
    assert len(r.runs.with_status("FINISHED")) == N_TRIALS
    assert len(r.runs.with_status("FAILED")) == states(r.trials)["FAIL"]
    assert r.runs.parents[0].info.status == "FINISHED"


def test_max_failures_ends_the_sweep_early(runs) -> None:
    r = runs.stopping
    assert r.result.returncode == 1, r.result.describe()
    assert ("stopped: 1 trials failed in this launch (hydra.sweeper.max_failures); see the "
            "'error' of each failed trial in trials.csv") in r.result.stdout
    assert "Traceback" not in r.result.stderr, r.result.stderr
    assert [t.state for t in r.trials] == [TrialState.FAIL]  # no trial after the limit
    assert "the chain diverged" in r.trials[0].user_attrs["error"]
    assert r.runs.parents[0].info.status == "FAILED"
    assert [c.info.status for c in r.runs.children] == ["FAILED"]
    report = (r.s.out / "report" / "trials.csv").read_text()
    assert "the chain diverged" in report
