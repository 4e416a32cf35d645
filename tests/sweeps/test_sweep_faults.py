"""Fault injection: a 2-worker sweep stopped at random moments -- while it creates its stores,
in the middle of trials, while it writes the report -- by ``kill -9`` of its process group, by
Ctrl-C (SIGINT), or 10 times in a row by SIGKILL or SIGTERM drawn at random (the fuzz), and
relaunched with the same command each time. It ends with exactly
``n_trials`` finished trials, nothing left RUNNING in Optuna or MLflow, no parameter set twice,
and every trial that was stopped after a checkpoint continued from it."""

from __future__ import annotations

import random
import signal
import time
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from sweeptools import finished, pid_alive, states, wait_for

N_TRIALS, EPOCHS = 3, 4
ARGS = ["device=cpu", "dataset=synthetic", f"trainer.epochs={EPOCHS}",
        "trainer.steps_per_epoch=1500", f"hydra.sweeper.n_trials={N_TRIALS}",
        "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none"]


def _stop(launch, study_of, s, moment: str, rng: random.Random, signum: int) -> dict:
    """Wait for ``moment`` of ``launch``, send ``signum`` to its process group, wait until it and
    its workers are gone; returns the checkpoint epochs at that moment and the time."""
    if moment == "store_creation":  # the parent imports (~3 s) then makes its stores
        time.sleep(rng.uniform(2.5, 5.0))
    else:
        name = launch.study_name()
        study = study_of(name)
        if moment == "mid_trial":
            wait_for(lambda: any(1 <= e < EPOCHS for e in s.checkpoint_epochs().values()) and
                     study.get_trials(states=(TrialState.RUNNING,)), 600, "a checkpoint",
                     launch)
        elif moment == "report":  # the last trial told: the parent writes the report now
            wait_for(lambda: len(finished(study.get_trials())) >= N_TRIALS
                     or launch.proc.poll() is not None, 600, "the last trial")
        else:
            time.sleep(rng.uniform(0.0, 8.0))
    at = {"epochs": s.checkpoint_epochs(), "ms": int(time.time() * 1000), "moment": moment}
    if launch.proc.poll() is None:
        launch.signal_group(signum)
        try:
            launch.proc.wait(timeout=120 if signum == signal.SIGKILL else 600)
        except Exception:  # a SIGINT'd launch that hangs fails the test below
            launch.kill()
            raise AssertionError(f"{signal.Signals(signum).name} did not stop the sweep")
    pids = set()
    try:
        pids = {t.user_attrs["pid"] for t in study_of(launch.study_name()).get_trials()
                if "pid" in t.user_attrs}
    except AssertionError:  # killed before it printed the study line
        pass
    wait_for(lambda: not any(pid_alive(p) for p in pids), 300, "the workers to be gone")
    at["output"] = launch.output()
    return at


#: The fuzz: this many stops in a row, each SIGKILL or SIGTERM at a random moment.
FUZZ_STOPS = 10


def _fuzz(s, args: list[str], rng: random.Random) -> list[dict]:
    """:data:`FUZZ_STOPS` launches, each stopped by SIGKILL or SIGTERM (drawn) at a moment drawn
    from store creation, mid-trial and any time; a launch that finishes the study first is let
    be."""
    stops = []
    for _ in range(FUZZ_STOPS):
        signum = rng.choice([signal.SIGKILL, signal.SIGTERM])
        moment = rng.choice(["store_creation", "mid_trial", "random"])
        launch = s.start(args)
        try:
            stops.append(_stop(launch, s.study, s, moment, rng, signum))
        except AssertionError:
            if launch.proc.poll() is None:
                raise
            launch.wait()  # it ended by itself: the study holds its n_trials
    return stops


@pytest.fixture(scope="module", params=[signal.SIGKILL, signal.SIGINT, "fuzz"],
                ids=["kill9", "sigint", "fuzz"])
def stopped(request, new_sweep):
    signum = request.param
    s = new_sweep(f"faults-{signum}")
    args = s.args(base=ARGS)
    if signum == "fuzz":
        stops = _fuzz(s, args, random.Random(4321))
    else:
        rng = random.Random(1234 + signum)
        stops = [_stop(s.start(args), s.study, s, moment, rng, signum)
                 for moment in ["store_creation", "mid_trial", "random", "report"]]
    final = s.run(args, timeout=900).ok()
    name = final.study_name
    return SimpleNamespace(s=s, name=name, stops=stops, final=final,
                           trials=s.study(name).get_trials(), runs=s.runs(name))


def test_exactly_n_trials_and_nothing_left_running(stopped) -> None:
    trials = stopped.trials
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not [r.info.run_id for r in stopped.runs.all if r.info.status == "RUNNING"]
    assert len(stopped.runs.parents) == 1
    for at in stopped.stops:
        assert "Traceback" not in at["output"], at["output"][-3000:]


def test_no_parameter_set_twice(stopped) -> None:
    params = [tuple(sorted(t.params.items())) for t in finished(stopped.trials)]
    assert len(set(params)) == len(params), params


def test_stopped_trials_continued_from_their_last_checkpoint(stopped) -> None:
    """Every trial that had a checkpoint at a stop kept its MLflow run and logged each epoch
    once: the epochs before the checkpoint's before the stop, the later ones after it."""
    done = {t.number: t for t in finished(stopped.trials)}
    checked = 0
    for at in stopped.stops:
        for key, epoch in at["epochs"].items():
            chain = [t for t in done.values() if t.number == key
                     or t.system_attrs.get("retry_history", [None])[0] == key]
            if epoch >= EPOCHS or not chain:
                continue
            run_id = chain[0].user_attrs["mlflow_run_id"]
            logged = stopped.runs.steps(run_id, "val_accuracy")
            steps = [step for step, _ in logged]
            assert steps == list(range(1, EPOCHS + 1)), (key, at["moment"], logged)
            # The checkpoint's own epoch was logged before the stop, or, if the stop fell
            # between its checkpoint and its metrics, by the retry (from the checkpoint).
            assert all(ts < at["ms"] for step, ts in logged if step < epoch), logged
            checked += 1
    assert checked, [at["epochs"] for at in stopped.stops]
