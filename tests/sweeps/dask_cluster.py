"""A real Dask cluster on 127.0.0.1 for the Dask backend's tests: a scheduler and two workers
(nannies), worker ``i`` named ``w<i>`` with ``CUDA_VISIBLE_DEVICES=i`` and the resource
``GPU=1``, as one starts them for GPUs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DaskCluster:
    """The cluster's scheduler file and processes."""

    folder: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def scheduler_file(self) -> Path:
        return self.folder / "scheduler.json"

    def _start(self, args: list[str], log: str, **env: str) -> None:
        out = open(self.folder / log, "w")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **env}, cwd=self.folder, start_new_session=True))
        out.close()

    def client(self) -> Any:
        from distributed import Client

        return Client(scheduler_file=str(self.scheduler_file), timeout=60)

    def workers(self) -> dict[str, dict]:
        """``{name: info}`` of the workers the scheduler knows."""
        with self.client() as client:
            return {w["name"]: w for w in client.scheduler_info(n_workers=-1)["workers"].values()}

    def wait_workers(self, n: int, timeout: float = 180) -> None:
        with self.client() as client:
            client.wait_for_workers(n, timeout=timeout)

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.wait()


def start_dask(folder: Path, workers: int = 2) -> DaskCluster:
    """Start the scheduler and ``workers`` GPU workers; return once all are connected."""
    cluster = DaskCluster(folder)
    cluster._start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                    "--dashboard-address", "127.0.0.1:0", "--scheduler-file",
                    str(cluster.scheduler_file)], "scheduler.log")
    deadline = time.monotonic() + 120
    while not cluster.scheduler_file.exists():
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError((folder / "scheduler.log").read_text()[-2000:])
        time.sleep(0.2)
    for i in range(workers):
        cluster._start(["distributed.cli.dask_worker", "--scheduler-file",
                        str(cluster.scheduler_file), "--nthreads", "1", "--resources", "GPU=1",
                        "--name", f"w{i}"], f"worker-{i}.log", CUDA_VISIBLE_DEVICES=str(i))
    cluster.wait_workers(workers)
    return cluster
