"""The start-up check of a run (:class:`Preflight`), before anything is created.

``mcmc-train`` runs :class:`Preflight` as a Hydra callback (``hydra.callbacks`` in
``conf/train.yaml``): it validates the composed config and checks the
device, the output and checkpoint folders, the Optuna storage and the MLflow tracking store
(:func:`check_services`; each service's check is in :mod:`sweeps.checks.services`), within
seconds, before Hydra makes its run folder and before any storage, store, MLflow run or worker
exists; a problem is one line on stderr, ``error: <key>=<value>: <what is wrong>; <what to
do>``, exit status 1 (a service) or 2 (a config value).
A sweep (``mcmc-train -m hparams_search=...``, or ``mcmc-sweep``) gets the same checks from its
sweeper (:func:`check_sweep`, called by :mod:`sweeps.sweeper.run`): Hydra calls no
``on_run_start`` in a multirun.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from sweeps.checks.clusters import check_backend
from sweeps.checks.services import (
    Problem,
    check_database,
    check_device,
    check_folder,
    check_tracking,
)

if TYPE_CHECKING:
    from sweeps.sweeper.config import Sweep

__all__ = ["MLFLOW_HTTP_ENV", "Preflight", "check_services", "check_sweep",
           "mlflow_http_defaults"]

#: MLflow's HTTP client retries for minutes by default; what a run uses unless the user says.
MLFLOW_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                   "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                   # no "View run ... at: URL" line per run in the sweep's progress output
                   "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


class Preflight(Callback):
    """The Hydra callback that checks a run before Hydra creates anything (``on_run_start``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)  # run_job sets it only later
        cfg = copy.deepcopy(config)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        try:
            _train_checks(cfg)
        except OmegaConfBaseException:  # the task reports it, as without this callback
            return


def check_sweep(sweep: Sweep, folders: Iterable[tuple[str, Any]] = ()) -> None:
    """The services of the checked ``sweep``, its output folder and ``folders``, then its
    dataset (unless it only reports); exits with the problem's line (see
    :func:`check_services`)."""
    from mcmc_core.data import DatasetNotFoundError, load_dataset
    from sweeps.tracking.mlflow_run import tracking_uri
    from sweeps.cli.train_app import fail

    name, train, settings = sweep.study_name(), sweep.train, sweep.settings
    on_cluster = settings.backend != "local"  # the GPUs are the cluster engine's to place
    check_services(device=None if on_cluster else train.device, gpus=settings.gpus,
                   folders=[("hydra.sweeper.output_dir", sweep.output_dir(name)), *folders],
                   storage=sweep.storage_url(name),
                   tracking=tracking_uri(train.tracking) if train.tracking.enabled else None)
    if on_cluster and not settings.report:
        try:
            check_backend(settings, sweep.storage_url(name))
        except Problem as problem:
            _exit(problem)
    if not sweep.settings.report:
        try:
            load_dataset(train.dataset)
        except DatasetNotFoundError as err:
            fail(str(err).splitlines())


def _train_checks(cfg: DictConfig) -> None:
    """``mcmc-train``'s validation, then its device, checkpoint folder and tracking store."""
    from mcmc_core._validation import ConfigError
    from sweeps.tracking.mlflow_run import tracking_uri
    from sweeps.cli.train_app import fail

    try:
        train = OmegaConf.to_object(cfg)
        train.validate()  # type: ignore[union-attr]
    except ConfigError as err:
        fail(str(err).splitlines())
    folder = train.trainer.checkpoint_dir  # type: ignore[union-attr]
    check_services(device=train.device,  # type: ignore[union-attr]
                   folders=[("trainer.checkpoint_dir", folder)] if folder else [],
                   tracking=tracking_uri(train.tracking)  # type: ignore[union-attr]
                   if train.tracking.enabled else None)  # type: ignore[union-attr]


def mlflow_http_defaults() -> None:
    """Bound MLflow's HTTP retries and timeout (:data:`MLFLOW_HTTP_ENV`) unless the user set
    them, here and in worker processes started later."""
    for name, value in MLFLOW_HTTP_ENV.items():
        os.environ.setdefault(name, value)


def check_services(*, device: str | None = None, gpus: list[int] | None = None,
                   folders: Iterable[tuple[str, Any]] = (), storage: str | None = None,
                   tracking: str | None = None) -> None:
    """Check each given service, config values first, then the servers; stop at the first
    problem with its one line on stderr and its exit status
    (:class:`~sweeps.checks.services.Problem`).

    Args:
        device: the ``device`` setting.
        gpus: the GPU indices of a sweep's workers (``hydra.sweeper.gpus``).
        folders: ``(key, path)`` of each folder the run writes to.
        storage: the Optuna storage URL (``hydra.sweeper.storage``).
        tracking: the MLflow tracking URI (``tracking.uri``), None when tracking is off.
    """
    mlflow_http_defaults()
    checks: list[Callable[[], None]] = []
    if device is not None:
        checks.append(lambda: check_device(device, gpus=gpus, gpus_key="hydra.sweeper.gpus"))
    checks += [lambda k=k, p=p: check_folder(p, k) for k, p in folders]
    if storage is not None:
        checks.append(lambda: check_database(storage, "hydra.sweeper.storage"))
    if tracking is not None:
        checks.append(lambda: check_tracking(tracking, "tracking.uri"))
    try:
        for check in checks:
            check()
    except Problem as problem:
        _exit(problem)


def _exit(problem: Problem) -> NoReturn:
    """Print ``problem``'s line on stderr and exit with its status."""
    print(f"error: {problem.line}", file=sys.stderr)
    raise SystemExit(problem.status)
