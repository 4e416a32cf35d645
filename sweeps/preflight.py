"""The start-up check of a run (:class:`Preflight`), before anything is created.

``mcmc-sweep`` and ``mcmc-train`` run :class:`Preflight` as a Hydra callback (``hydra.callbacks``
in ``conf/sweep.yaml`` and ``conf/train.yaml``): it validates the composed config and checks the
device, the output and checkpoint folders, the Optuna storage and the MLflow tracking store
(:mod:`sweeps.service_checks`), each within seconds, before Hydra makes its run folder and before
any storage, store, MLflow run or worker exists; a problem is one line on stderr, ``error:
<key>=<value>: <what is wrong>; <what to do>``, exit status 1 (a service) or 2 (a config value).
A sweep of ``mcmc-train -m hparams_search=...`` gets the same checks from its sweeper
(:func:`check_sweep`, called by :mod:`sweeps.hydra_sweeper`): Hydra calls no ``on_run_start``
in a multirun.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from sweeps.service_checks import check_services

__all__ = ["Preflight", "check_sweep"]


class Preflight(Callback):
    """The Hydra callback that checks a run before Hydra creates anything (``on_run_start``).

    Args:
        app: ``sweep`` (``mcmc-sweep``) or ``train`` (``mcmc-train``).
    """

    def __init__(self, app: str) -> None:
        self.app = app

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)  # run_job sets it only later
        cfg = copy.deepcopy(config)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        try:
            (_sweep_checks if self.app == "sweep" else _train_checks)(cfg)
        except OmegaConfBaseException:  # the task reports it, as without this callback
            return


def _sweep_checks(cfg: DictConfig) -> None:
    """The sweep's own validation (as in its task), then its services and its dataset."""
    from mcmc_core._validation import ConfigError
    from sweeps.sweep import prepare
    from sweeps.train import fail

    try:
        sweep, resolved, _, _ = prepare(cfg)
    except ConfigError as err:
        fail(str(err).splitlines())
    check_sweep(sweep, resolved)


def check_sweep(sweep: Any, resolved: dict[str, Any], folders: Iterable[tuple[str, Any]] = (),
                study_key: Callable[[str], str] = "study.{}".format) -> None:
    """The services of the validated sweep ``sweep`` (a :class:`~sweeps.config.SweepConfig`
    and its ``resolved`` form), its output folder and ``folders``, then its dataset (unless it
    only reports); exits with the problem's line (see :func:`check_services`)."""
    from mcmc_core.data import DatasetNotFoundError, load_dataset
    from sweeps.tracking import tracking_uri
    from sweeps.train import fail

    name = sweep.study_name(resolved)
    check_services(device=sweep.device, gpus=sweep.study.gpus,
                   folders=[(study_key("output_dir"), sweep.output_dir(name)), *folders],
                   storage=sweep.storage_url(name), study_key=study_key,
                   tracking=tracking_uri(sweep.tracking) if sweep.tracking.enabled else None)
    if not sweep.report:
        try:
            load_dataset(sweep.dataset)
        except DatasetNotFoundError as err:
            fail(str(err).splitlines())


def _train_checks(cfg: DictConfig) -> None:
    """``mcmc-train``'s validation, then its device, checkpoint folder and tracking store."""
    from mcmc_core._validation import ConfigError
    from sweeps.tracking import tracking_uri
    from sweeps.train import fail

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
