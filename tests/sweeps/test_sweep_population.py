"""``hydra.sweeper.population=4``: one worker runs its trials four at a time as one batched
population; the sweep still ends with exactly ``n_trials`` finished trials, one finished MLflow
child run each with its per-epoch metrics, and the median pruner stops hopeless chains early (they
leave the batch). A config that cannot run as populations fails at startup, one line per bad
value."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from optuna.trial import TrialState
from sweeptools import finished, run_many, states

N_TRIALS, EPOCHS, POPULATION = 8, 7, 4
GOOD, BAD = 0.0003, 30.0
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_loss", "test_accuracy", "current_temperature",
                 "acceptance_rate", "energy", "steps_per_s", "wall_time")
#: test_sweep_pruning's sweep, in populations: the first four trials (no complete trial yet) run
#: to the end; the median pruner then stops the absurd temperatures of the next four.
PRUNING = ["device=cpu", "dataset=synthetic", f"trainer.epochs={EPOCHS}",
           "trainer.steps_per_epoch=20", "~hydra.sweeper.params.sampler.temperature",
           (f"hydra.sweeper.params.temp={{key:sampler.temperature,type:categorical,"
            f"choices:[{GOOD},{BAD}]}}"),
           f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.n_jobs=1",
           "hydra.sweeper.sampler=random", "hydra.sweeper.pruner=median", "hydra.sweeper.seed=0",
           f"hydra.sweeper.population={POPULATION}"]
#: Not population-compatible: replicas (tempering) and a searched architecture.
INCOMPATIBLE = ["hydra.sweeper.population=4", "sampler=tempering",
                "hydra.sweeper.params.model.hidden=choice([], [64])"]


@pytest.fixture(scope="module")
def sweeps(new_sweep):
    pruning, bad = new_sweep("population"), new_sweep("population-bad")
    ran, refused = run_many([(pruning, pruning.args(base=PRUNING)), (bad, bad.args(*INCOMPATIBLE))])
    name = ran.ok().study_name
    return SimpleNamespace(s=pruning, result=ran, trials=pruning.study(name).get_trials(),
                           study=pruning.study(name), runs=pruning.runs(name), bad=bad,
                           refused=refused)


def populations(trials) -> list[list]:
    """The trials in the order they were asked, in groups of ``POPULATION`` (one worker)."""
    ordered = sorted(trials, key=lambda t: t.number)
    return [ordered[i:i + POPULATION] for i in range(0, len(ordered), POPULATION)]


def test_population_sweep_reaches_exactly_n_trials(sweeps) -> None:
    trials = sweeps.trials
    assert len(finished(trials)) == N_TRIALS == len(trials), states(trials)
    # One worker ran the trials four at a time: each population's trials overlap in time.
    assert len({t.user_attrs["pid"] for t in trials}) == 1
    for group in populations(trials):
        assert max(t.datetime_start for t in group) < min(t.datetime_complete for t in group)
    first, second = populations(trials)
    assert max(t.datetime_complete for t in first) <= min(t.datetime_start for t in second)


def test_the_sweep_says_its_first_population_runs_unpruned(sweeps) -> None:
    assert ("note: hydra.sweeper.pruner=median compares a trial with complete trials only "
            "(4 needed, 0 so far)") in sweeps.result.stdout


def test_pruned_chains_stop_early_and_leave_the_batch(sweeps) -> None:
    trials, runs = sweeps.trials, sweeps.runs
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, states(trials)
    # Nothing to compare with while the first population runs: it completes.
    assert all(t.state == TrialState.COMPLETE for t in populations(trials)[0])
    assert all(t.params["temp"] == BAD for t in pruned)
    assert any(t.last_step < EPOCHS for t in pruned)
    for t in pruned:
        assert sorted(t.intermediate_values) == list(range(1, t.last_step + 1))
        run = runs.by_id(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.state"] == "PRUNED"
        assert run.data.tags["optuna.pruned"] == f"pruned at epoch {t.last_step}"
        assert [s for s, _ in runs.steps(run.info.run_id, "val_accuracy")] == list(
            range(1, t.last_step + 1))
        assert "model/state_dict.pt" in runs.artifacts(run.info.run_id, "model")
    # A chain that left the batch ended before the chains of its population that went on.
    for group in populations(trials):
        for a in group:
            for b in group:
                if a.state == TrialState.PRUNED and a.last_step < b.last_step:
                    assert a.datetime_complete < b.datetime_complete
    assert all(t.state == TrialState.COMPLETE and t.last_step == EPOCHS
               for t in trials if t.params["temp"] == GOOD)
    assert "PRUNED   at epoch" in sweeps.result.stdout


def test_one_finished_child_run_per_trial_with_per_epoch_metrics(sweeps) -> None:
    runs = sweeps.runs
    assert len(runs.parents) == 1 and runs.parents[0].info.status == "FINISHED"
    assert len(runs.children) == N_TRIALS == len(runs.with_status("FINISHED"))
    parent = runs.parents[0].info.run_id
    for t in sweeps.trials:
        run = runs.by_id(t.user_attrs["mlflow_run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["optuna.trial_number"] == str(t.number)
        assert run.data.tags["optuna.state"] == t.state.name
        suffix = {TrialState.PRUNED: " (pruned)"}.get(t.state, "")
        if run.data.tags.get("best") == "true":
            suffix = " (best)"
        assert run.info.run_name == f"trial-{t.number:04d}{suffix}"
        assert "temp" not in run.data.params  # the sampled value once, by its config key
        assert float(run.data.params["sampler.temperature"]) == t.params["temp"]
        assert float(run.data.params["sampler.flip_ratio"]) == pytest.approx(
            t.params["flip_ratio"], rel=5e-3)  # 3 significant digits; exact as a metric:
        assert run.data.metrics["sampler.flip_ratio"] == t.params["flip_ratio"]
        assert "config.yaml" in runs.artifacts(run.info.run_id)
        for metric in EPOCH_METRICS:
            assert [s for s, _ in runs.steps(run.info.run_id, metric)] == list(
                range(1, t.last_step + 1)), metric
        history = sorted((m.step, m.value) for m in
                         runs.client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert [v for _, v in history] == pytest.approx(
            [v for _, v in sorted(t.intermediate_values.items())])
        if t.state == TrialState.COMPLETE:
            assert run.data.metrics["final_epoch"] == EPOCHS
            assert t.value == pytest.approx(run.data.metrics["best_val_accuracy"])
            assert t.value == max(t.intermediate_values.values())
            assert run.data.metrics["objective"] == t.value
            assert "test_accuracy" in t.user_attrs
            assert {"model/state_dict.pt", "model/model.txt"} <= set(
                runs.artifacts(run.info.run_id, "model"))
        else:  # pruned: its last reported value, as optuna-dashboard shows
            assert run.data.metrics["objective"] == t.intermediate_values[t.last_step]
    best = [r for r in runs.children if r.data.tags.get("best") == "true"]
    assert [r.info.run_id for r in best] == [sweeps.study.best_trial.user_attrs["mlflow_run_id"]]


def test_incompatible_config_fails_at_startup_with_one_line_each(sweeps) -> None:
    result = sweeps.refused
    assert result.returncode == 2, result.describe()
    assert result.error_lines == [
        ("error: sampler.n_replicas=4 is not allowed: expected 1 (no parallel tempering) with "
         "hydra.sweeper.population=4"),
        ("error: hydra.sweeper.params.model.hidden.key='model.hidden' is not allowed: expected "
         "one of "
         "sampler.temperature, sampler.flip_ratio, seed, schedule, flip_schedule (or a key "
         "under one) with hydra.sweeper.population=4 (the values a chain has of its own)"),
    ]
    assert result.stdout == ""
    # Nothing was created: no storage, no tracking store.
    assert not sweeps.bad.out.exists()
    assert not (sweeps.bad.root / "mlflow.db").exists()
