"""Hooks into the training loop (the sweep layer reports to Optuna and MLflow through them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcmc_core.trainers._base import BaseTrainer

__all__ = ["Callback"]


class Callback:
    """No-op hooks; subclass and override what you need.

    A callback may raise to stop training (e.g. ``optuna.TrialPruned``): the exception propagates
    after the epoch's checkpoint has been written, so nothing is lost.
    """

    def on_train_start(self, trainer: BaseTrainer) -> None:
        """Called once before the first epoch (also when resuming)."""

    def on_epoch_end(self, trainer: BaseTrainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch with that epoch's metrics (by :meth:`on_epochs_end`)."""

    def on_epochs_end(self, trainer: BaseTrainer, ended: dict[int, dict[str, float]]) -> None:
        """Called after each epoch with every live chain's metrics, ``{chain: metrics}``; a
        chain may be made to leave here (:meth:`BaseTrainer.leave`). By default
        :meth:`on_epoch_end` of each."""
        for metrics in ended.values():
            self.on_epoch_end(trainer, int(metrics["epoch"]), metrics)

    def on_checkpoint(self, trainer: BaseTrainer, path: str) -> None:
        """Called after a checkpoint has been written to ``path``."""

    def on_train_end(self, trainer: BaseTrainer, metrics: dict[str, Any]) -> None:
        """Called once with the final metrics after the last epoch."""
