"""What a trainer keeps of each chain it reports: epochs, history, best epoch and its weights."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["ChainRecord", "best_entry", "final_metrics", "improves_best"]


def improves_best(metrics: dict[str, float], best: dict[str, float]) -> bool:
    """Whether an epoch's ``metrics`` beat the ``best`` epoch so far (higher validation accuracy,
    then lower validation loss); always true before any best."""
    return not best or ((metrics["val_accuracy"], -metrics["val_loss"])
                        > (best["val_accuracy"], -best["val_loss"]))


def best_entry(metrics: dict[str, float]) -> dict[str, float]:
    """What is kept of the best epoch: its number, validation and test loss and accuracy."""
    return {k: metrics[k] for k in ("epoch", "val_loss", "val_accuracy", "test_loss",
                                    "test_accuracy")}


def final_metrics(history: list[dict[str, float]], best: dict[str, float]) -> dict[str, Any]:
    """The last epoch's metrics plus ``best_<k>`` of the best epoch."""
    final: dict[str, Any] = dict(history[-1]) if history else {}
    final.update({f"best_{k}": v for k, v in best.items()})
    return final


@dataclass
class ChainRecord:
    """One reported chain's bookkeeping, kept in its checkpoint.

    Attributes:
        epoch: epochs finished.
        elapsed: seconds spent in them (over every attempt).
        history: each epoch's metrics.
        best: :func:`best_entry` of the best epoch (:func:`improves_best`).
        best_state: the best epoch's weights (a CPU state dict).
    """

    epoch: int = 0
    elapsed: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, Tensor] | None = None

    def add(self, metrics: dict[str, float], seconds: float,
            weights: Callable[[], dict[str, Tensor]]) -> dict[str, float]:
        """Record the next epoch (``metrics`` of its training and evaluation, ``seconds`` it
        took; ``weights()``: the chain's weights at its end, read if it is the best so far);
        returns the metrics with ``epoch``, ``epoch_time`` and ``wall_time``."""
        self.epoch += 1
        self.elapsed += seconds
        metrics = {**metrics, "epoch": self.epoch, "epoch_time": seconds,
                   "wall_time": self.elapsed}
        if improves_best(metrics, self.best):
            self.best, self.best_state = best_entry(metrics), weights()
        self.history.append(metrics)
        return metrics

    def final_metrics(self) -> dict[str, Any]:
        """The last epoch's metrics plus ``best_*`` (the epoch with the best validation
        accuracy)."""
        return final_metrics(self.history, self.best)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's record keys (``epoch``, ``elapsed``, ``history``, ``best_metric``,
        ``best_model``)."""
        return {"epoch": self.epoch, "elapsed": self.elapsed,
                "history": copy.deepcopy(self.history), "best_metric": dict(self.best),
                "best_model": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.elapsed = int(state["epoch"]), state["elapsed"]
        self.history = copy.deepcopy(state["history"])
        self.best, self.best_state = dict(state["best_metric"]), state["best_model"]
