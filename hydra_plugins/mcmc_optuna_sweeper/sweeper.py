"""The ``mcmc_optuna`` sweeper class Hydra instantiates from ``hydra.sweeper`` (registered in
the ConfigStore at import, as Hydra's plugin scan imports this module). Light to import: the
sweep's code loads when a sweep starts (:func:`sweeps.sweeper.run.run_sweep`)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweeps.sweeper.settings import register_sweeper_config

__all__ = ["McmcOptunaSweeper"]

register_sweeper_config()


class McmcOptunaSweeper(Sweeper):
    """An Optuna study over the composed config (:mod:`sweeps.sweeper.run`): async
    workers, pruning per epoch, populations, resume, MLflow parent and child runs.

    Args:
        **settings: the ``hydra.sweeper`` settings (:mod:`sweeps.sweeper.settings`).
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        # The trials run in our worker processes, not through Hydra's launcher and task.
        self.hydra_context, self.config = hydra_context, config

    def sweep(self, arguments: list[str]) -> None:
        """Run the study (see :func:`sweeps.sweeper.run.run_sweep`)."""
        from sweeps.sweeper.run import run_sweep

        assert self.hydra_context is not None and self.config is not None, "setup() first"
        run_sweep(self.settings, self.config, self.hydra_context.config_loader, arguments)
