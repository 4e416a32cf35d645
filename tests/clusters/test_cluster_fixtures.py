"""The cluster fixtures themselves, against their real daemons."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest


def wait_file(path: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} was not written within {timeout} s"
        time.sleep(0.3)
    return path.read_text()


def sbatch(cluster, *args: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", "-p", cluster.partition, *args],
                         env=cluster.env, capture_output=True, text=True, check=True)
    return out.stdout.strip().split(";")[0]


def test_slurm_gpu_jobs_get_distinct_devices(slurm_cluster, tmp_path):
    # Each job waits for the other's file: both must run at once, so each has its own GPU.
    script = ('echo "$CUDA_VISIBLE_DEVICES" > gpu.$SLURM_JOB_ID; for i in $(seq 240); do '
              '[ "$(ls gpu.* | wc -l)" -ge 2 ] && exit 0; sleep 0.5; done; exit 1')
    jobs = [sbatch(slurm_cluster, "--gres=gpu:1", f"--chdir={tmp_path}", "-o", "/dev/null",
                   "--wrap", script) for _ in range(2)]
    for job in jobs:
        assert slurm_cluster.wait_job(job, "COMPLETED", "FAILED", "CANCELLED") == "COMPLETED"
    assert {(tmp_path / f"gpu.{job}").read_text().strip() for job in jobs} == {"0", "1"}


def test_slurm_requeue_and_cancel(slurm_cluster, tmp_path):
    job = sbatch(slurm_cluster, "-o", str(tmp_path / "out"), "--wrap", "sleep 600")
    slurm_cluster.wait_job(job, "RUNNING")
    slurm_cluster.requeue(job)
    assert slurm_cluster.wait_job(job, "RUNNING", timeout=30) == "RUNNING"
    show = subprocess.run(["scontrol", "show", "job", job], env=slurm_cluster.env,
                          capture_output=True, text=True, check=True).stdout
    assert re.search(r"\bRestarts=1\b", show), show
    slurm_cluster.cancel(job)
    assert slurm_cluster.wait_job(job, "CANCELLED") == "CANCELLED"


def test_submitit_job_runs(slurm_cluster, tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    out = tmp_path / "result"

    def square(x: int, path: str) -> int:  # local: pickled by value, the job imports no test
        Path(path).write_text(f"{x * x} {os.environ['SLURM_JOB_ID']}")
        return x * x

    executor = submitit.SlurmExecutor(folder=tmp_path / "submitit", python=sys.executable)
    executor.update_parameters(partition=slurm_cluster.partition, time=10)
    job = executor.submit(square, 7, str(out))
    assert wait_file(out) == f"49 {job.job_id}"
    assert slurm_cluster.wait_job(job.job_id, "COMPLETED", "FAILED") == "COMPLETED"


def test_dask_gpu_workers_and_restart(dask_cluster):
    from distributed import Client

    with Client(scheduler_file=str(dask_cluster.scheduler_file), timeout=60) as client:
        # Submitted together and each holding a GPU for a moment: one task per worker.
        gpu = lambda: (time.sleep(1), os.environ["CUDA_VISIBLE_DEVICES"])[1]  # noqa: E731
        futures = [client.submit(gpu, resources={"GPU": 1}, pure=False) for _ in range(2)]
        assert set(client.gather(futures)) == {"0", "1"}
        old = dask_cluster.workers()["w0"]["pid"]
        dask_cluster.kill_worker(0)
        dask_cluster.wait_workers(2)
        workers = dask_cluster.workers()
        assert set(workers) == {"w0", "w1"} and workers["w0"]["pid"] != old
        assert client.submit(gpu, resources={"GPU": 1}, pure=False).result(timeout=60)
