"""Fixtures of the ``mcmc-sweep`` end-to-end tests (helpers live in ``sweeptools.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from mlflow_server import MlflowServer, start_server
from sweeptools import Sweep


@pytest.fixture(scope="module")
def new_sweep(tmp_path_factory) -> Callable[[str], Sweep]:
    """``new_sweep("name")``: the places of a fresh sweep under a new temporary folder."""
    return lambda name: Sweep(tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on 127.0.0.1 (see ``mlflow_server.py``), shared by the session's
    tests and terminated at its end."""
    server = start_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """A scheduler and two GPU workers on 127.0.0.1 (see ``dask_cluster.py``)."""
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    from dask_cluster import start_dask

    cluster = start_dask(tmp_path_factory.mktemp("dask"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster with two fake GPUs (see ``slurm_cluster.py``); its
    ``SLURM_CONF`` is set in this process's environment, which the sweeps started by the tests
    inherit."""
    from slurm_cluster import missing, start_slurm

    if why := missing():
        pytest.skip(why)
    cluster = start_slurm(tmp_path_factory.mktemp("slurm"))
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
