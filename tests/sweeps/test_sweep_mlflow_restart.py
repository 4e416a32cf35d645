"""The MLflow tracking server restarted in the middle of a 2-worker sweep (killed, back ~15 s
later on the same port and store): the sweep waits it out -- training goes on, the writes made
meanwhile are sent once it is back, in order -- and ends as if nothing had happened: exit 0, no
failed trial, every trial's metric history whole, each epoch once."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from mlflow_server import start_server
from sweeptools import LONG, LONG_EPOCHS, finished, states, wait_for

N_TRIALS = 6
OUTAGE_SECONDS = 15


@pytest.fixture(scope="module")
def restarted(new_sweep, tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("mlflow-restart")
    server = start_server(root)
    s = new_sweep("mlflow-restart")
    args = ["-m", "hparams_search=default", *LONG, f"hydra.sweeper.output_dir={s.out}",
            f"tracking.uri={server.url}", f"hydra.sweeper.n_trials={N_TRIALS}",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none"]
    launch = s.start(args, program="mcmc-train")
    try:
        study = s.study(launch.study_name())
        wait_for(lambda: finished(study.get_trials()), 600, "a finished trial", launch)
        server.stop()  # the server goes away while trials run
        down_at = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        server = start_server(root, port=server.port)
        result = launch.wait(timeout=600)
        return SimpleNamespace(result=result, trials=study.get_trials(), server=server,
                               name=study.study_name, down_at=down_at)
    finally:
        launch.kill()
        server.stop()


def test_the_sweep_waits_out_the_restart(restarted) -> None:
    result = restarted.result.ok()
    output = result.stdout + result.stderr
    assert "unreachable" in output and "back after" in output, result.describe()
    assert "Traceback" not in output and "View run" not in output


def test_no_trial_failed(restarted) -> None:
    trials = restarted.trials
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not [t for t in trials if t.state == TrialState.FAIL], states(trials)


def test_every_trials_history_is_whole_and_once(restarted) -> None:
    server = start_server(restarted.server.root, port=restarted.server.port)
    try:
        client = server.client()
        for t in finished(restarted.trials):
            run = client.get_run(t.user_attrs["mlflow_run_id"])
            assert run.info.status == "FINISHED"
            history = client.get_metric_history(run.info.run_id, "val_accuracy")
            assert sorted(m.step for m in history) == list(range(1, LONG_EPOCHS + 1)), history
    finally:
        server.stop()
