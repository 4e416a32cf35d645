"""Fixtures of the ``mcmc-sweep`` end-to-end tests (helpers live in ``sweeptools.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sweeptools import Sweep


@pytest.fixture(scope="module")
def new_sweep(tmp_path_factory) -> Callable[[str], Sweep]:
    """``new_sweep("name")``: the places of a fresh sweep under a new temporary folder."""
    return lambda name: Sweep(tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The URL of a real ``mlflow server`` on 127.0.0.1 (SQLite store under a temp folder)."""
    from mlflow_server import mlflow_server as serve

    with serve(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url
