"""``mcmc-train -m`` (Hydra's multirun) logs one MLflow parent run per multirun with one child
run per job, named from the overrides the multirun sweeps; the parent ends with the last job,
FAILED once any job failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.tracking.multirun import TAG_FAILED, TAG_MULTIRUN_DIR, Parent, close_parent, swept_keys
from sweeps.tracking.mlflow_run import TAG_STUDY_KEY, mlflow_client

TINY = ["device=cpu", "dataset=synthetic", "trainer.epochs=1", "trainer.steps_per_epoch=5",
        "tracking.log_model=false"]


@pytest.fixture(scope="module")
def multirun(tmp_path_factory, cli):
    return cli(["-m", *TINY, "sampler.flip_ratio=0.001,0.01"],
               tmp_path_factory.mktemp("multirun")).ok()


@pytest.fixture(scope="module")
def runs(multirun):
    client = mlflow_client(f"sqlite:///{multirun.cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mcmc-train")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_one_parent_run_with_a_child_per_job(multirun, runs) -> None:
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["sampler.flip_ratio=0.001",
                                                         "sampler.flip_ratio=0.01"]
    assert sorted(r.data.params["sampler.flip_ratio"] for r in children) == ["0.001", "0.01"]
    # The swept key also as a metric: sorted and plotted as a number.
    assert sorted(r.data.metrics["sampler.flip_ratio"] for r in children) == [0.001, 0.01]
    assert parent.info.status == "FINISHED"
    assert all(r.info.status == "FINISHED" for r in children)
    assert parent.info.end_time >= max(r.info.end_time for r in children)
    folder = Path(parent.data.tags[TAG_MULTIRUN_DIR])
    assert folder.is_relative_to(multirun.cwd / "outputs" / "train" / "multirun")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1"]
    assert parent.data.tags[TAG_STUDY_KEY] == f"multirun:{folder}"
    assert parent.info.run_name == f"multirun {folder.name}"


def test_swept_keys_are_the_sweep_overrides() -> None:
    args = ["-m", "device=cpu", "sampler.flip_ratio=0.001,0.01", "seed=range(3)", "+x=1"]
    assert swept_keys(args) == {"sampler.flip_ratio", "seed"}
    assert swept_keys(["trainer.epochs=2"]) == set()


def test_parent_stays_failed_once_a_job_failed(tmp_path) -> None:
    from mcmc_core.config import TrackingConfig

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    exp = client.create_experiment("e")
    parent = Parent(uri, client.create_run(exp).info.run_id, TrackingConfig())

    def child(status: str) -> None:
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent.run_id})
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status=status)

    child("FINISHED")
    assert close_parent(parent, failed=False) == "FINISHED"
    child("RUNNING")  # a job of a parallel launcher still runs
    assert close_parent(parent, failed=True) == "RUNNING"
    assert client.get_run(parent.run_id).data.tags[TAG_FAILED] == "true"
    client.update_run(parent.run_id, status="RUNNING")
    for run in client.search_runs([exp], "attributes.status = 'RUNNING'"):
        if run.info.run_id != parent.run_id:
            client.set_terminated(run.info.run_id, status="FINISHED")
    assert close_parent(parent, failed=False) == "FAILED"  # the earlier job's failure counts
    assert client.get_run(parent.run_id).info.status == "FAILED"
