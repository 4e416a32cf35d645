"""A trial asked and killed before its first heartbeat (a SIGKILL, SIGTERM or out-of-memory kill
between Optuna's ask and the worker's claim): the next launch retries it after the grace period
instead of waiting forever at ``n_trials - 1``, and ends with ``n_trials`` finished, none
RUNNING."""

from __future__ import annotations

import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from sweeptools import TINY, env, finished, running, states

N_TRIALS = 3
#: Short heartbeats, so that the killed trial is recovered seconds after the relaunch.
HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3",
             "hydra.sweeper.n_jobs=1", "hydra.sweeper.pruner=none"]

#: Ask one trial of the stored study, then die at once by SIGKILL: no heartbeat, no owner.
ASK_AND_DIE = """
import os, signal, sys, optuna
study = optuna.load_study(study_name=sys.argv[1], storage=sys.argv[2])
trial = study.ask()
print(trial.number, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def relaunched(new_sweep) -> SimpleNamespace:
    s = new_sweep("unowned")
    first = s.run(s.multirun_args(f"hydra.sweeper.n_trials={N_TRIALS - 1}", *HEARTBEAT,
                                  base=TINY), program="mcmc-train").ok()
    name = first.study_name
    died = subprocess.run([sys.executable, "-c", ASK_AND_DIE, name, s.storage], env=env(),
                          capture_output=True, text=True)
    assert died.returncode == -signal.SIGKILL, died.stderr
    orphan = int(died.stdout.split()[0])
    before = s.study(name).get_trials()
    # Without the recovery this launch waits forever on the orphan: the timeout fails the test.
    rerun = s.run(s.multirun_args(f"hydra.sweeper.n_trials={N_TRIALS}", *HEARTBEAT, base=TINY),
                  program="mcmc-train", timeout=600)
    return SimpleNamespace(orphan=orphan, before=before, rerun=rerun,
                           trials=s.study(name).get_trials())


def test_the_kill_left_a_trial_running_without_owner(relaunched) -> None:
    orphan = relaunched.before[relaunched.orphan]
    assert orphan.state == TrialState.RUNNING
    assert "pid" not in orphan.user_attrs and "host" not in orphan.user_attrs


def test_the_relaunch_ends_with_n_trials_and_nothing_running(relaunched) -> None:
    relaunched.rerun.ok()
    trials = relaunched.trials
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not running(trials), states(trials)
    assert trials[relaunched.orphan].state == TrialState.FAIL


def test_the_orphan_was_retried(relaunched) -> None:
    """The orphan had no sampled values yet: its retry (same, empty, fixed parameters) is asked
    like a new trial and sampled then."""
    retries = [t for t in relaunched.trials
               if t.system_attrs.get("failed_trial") == relaunched.orphan]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE, states(
        relaunched.trials)
