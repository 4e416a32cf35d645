"""The epoch loop shared by the MCMC chain and the gradient baseline."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mcmc_core.data import DataConfig, DataSplits, load_dataset
from mcmc_core.energy import evaluate
from mcmc_core.secrets import mask_config
from mcmc_core.trainers._callbacks import Callback
from mcmc_core.trainers._checkpoint import CHECKPOINT_NAME, load_latest_checkpoint, save_checkpoint
from mcmc_core.trainers._config import TrainerConfig

__all__ = ["DEVICES", "BaseTrainer", "best_entry", "final_metrics", "improves_best",
           "resolve_data", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} is not available: no CUDA GPU found; use cpu or auto")
    return device


def resolve_data(data: DataSplits | DataConfig | None, dataset_name: str) -> DataSplits:
    """Load ``data`` unless it already is a :class:`DataSplits`."""
    if isinstance(data, DataSplits):
        return data
    return load_dataset(data if data is not None else DataConfig(name=dataset_name))


class BaseTrainer:
    """Runs epochs, evaluates every split, prints a line, calls callbacks and checkpoints.

    Subclasses implement :meth:`_train_epoch` (returning the epoch's own metrics), and
    :meth:`_state_dict` / :meth:`_load_state_dict` for everything a resumed run needs.
    """

    name = "base"

    def __init__(
        self,
        model: nn.Module,
        criterion: Criterion | None,
        data: DataSplits,
        *,
        trainer: TrainerConfig,
        device: str | torch.device = "auto",
        callbacks: Iterable[Callback] = (),
        config: dict[str, Any] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
        self.data = data
        self.cfg = trainer
        self.callbacks = list(callbacks)
        self.config = config or {}
        self.epoch = 0
        self.elapsed = 0.0
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] | None = None

    # -- subclass hooks -------------------------------------------------------------------------
    def _setup(self, epochs: int) -> None:
        """Build what depends on the run length (e.g. schedules); called once before training."""

    def _train_epoch(self) -> dict[str, float]:
        raise NotImplementedError

    def _state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- the loop -------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        """``<checkpoint_dir>/last.pt``, or None when checkpoints are off."""
        return Path(self.cfg.checkpoint_dir) / CHECKPOINT_NAME if self.cfg.checkpoint_dir else None

    def evaluate(self, model: nn.Module | None = None) -> dict[str, float]:
        """Loss and accuracy of ``model`` (default: the trained one) on train, val and test."""
        model = model if model is not None else self.model
        metrics = {}
        for split in ("train", "val", "test"):
            s = getattr(self.data, split)
            loss, acc = evaluate(model, self.criterion, s.inputs, s.targets, self.cfg.eval_batch_size)
            metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = loss, acc
        return metrics

    def describe(self) -> str | None:
        """One line on how this trainer runs, printed before the first epoch when verbose."""
        return None

    def train(self, n_epoch: int | None = None, *, resume: bool | None = None) -> dict[str, Any]:
        """Train until epoch ``n_epoch`` (default: ``trainer.epochs``) and return the final metrics.

        With ``resume`` (default: ``trainer.resume``) and an existing checkpoint, the run continues
        from it and reaches the same weights as an uninterrupted run.
        """
        epochs = n_epoch if n_epoch is not None else self.cfg.epochs
        if epochs < 1:
            raise ValueError(f"n_epoch must be >= 1, but got {n_epoch=}.")
        if not hasattr(self, "_ready"):
            self._setup(epochs)
            self._ready = True
        resume = self.cfg.resume if resume is None else resume
        path = self.checkpoint_path
        state = load_latest_checkpoint(path) if resume and path is not None else None
        if state is not None:
            self.load_state_dict(state)
            if self.cfg.verbose:
                print(f"resumed from {path} at epoch {self.epoch}", flush=True)
        if self.cfg.verbose and (line := self.describe()):
            print(line, flush=True)
        for cb in self.callbacks:
            cb.on_train_start(self)
        while self.epoch < epochs:
            start = time.perf_counter()
            metrics = self._train_epoch()
            self.epoch += 1
            metrics.update(self.evaluate())
            metrics["epoch"] = self.epoch
            metrics["epoch_time"] = time.perf_counter() - start
            self.elapsed += metrics["epoch_time"]
            metrics["wall_time"] = self.elapsed
            self._update_best(metrics)
            self.history.append(metrics)
            if self.cfg.verbose:
                print(format_metrics(metrics, epochs), flush=True)
            if path is not None:
                save_checkpoint(self.state_dict(), path)
                for cb in self.callbacks:
                    cb.on_checkpoint(self, str(path))
            for cb in self.callbacks:
                cb.on_epoch_end(self, self.epoch, metrics)
        final = self.final_metrics()
        if self.cfg.verbose:
            print(format_final(final), flush=True)
        for cb in self.callbacks:
            cb.on_train_end(self, final)
        return final

    def _update_best(self, metrics: dict[str, float]) -> None:
        if improves_best(metrics, self.best):
            self.best = best_entry(metrics)
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def final_metrics(self) -> dict[str, Any]:
        """The last epoch's metrics plus ``best_*`` (the epoch with the best validation accuracy)."""
        return final_metrics(self.history, self.best)

    def load_best(self) -> None:
        """Load the weights of the epoch with the best validation accuracy into the model."""
        if self.best_state is None:
            raise RuntimeError("no epoch has finished yet: there are no best weights")
        self.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the trainer's own state plus the subclass's."""
        return {
            "trainer": self.name,
            "epoch": self.epoch,
            "elapsed": self.elapsed,
            "history": copy.deepcopy(self.history),
            "best_metric": dict(self.best),
            "best_model": self.best_state,
            "config": mask_config(self.config),  # a copy for people: no passwords
            **self._state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("trainer") != self.name:
            raise ValueError(
                f"checkpoint was written by trainer {state.get('trainer')!r}, not {self.name!r}"
            )
        self.epoch, self.elapsed = state["epoch"], state["elapsed"]
        self.history = copy.deepcopy(state["history"])
        self.best, self.best_state = dict(state["best_metric"]), state["best_model"]
        self._load_state_dict(state)


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


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def format_metrics(m: dict[str, float], epochs: int) -> str:
    """One compact line per epoch, each field named: ``epoch 3/20 | loss train .. val .. test ..
    | accuracy train ..% val ..% test ..% | accept ..% | T .. | flip_ratio .. | .. steps/s |
    ..s`` (``accept``: the epoch's acceptance rate; the MCMC fields only where measured)."""
    width = len(str(epochs))
    splits = ("train", "val", "test")
    parts = [f"epoch {m['epoch']:>{width}}/{epochs}",
             "loss " + " ".join(f"{s} {_fmt(m[f'{s}_loss'])}" for s in splits),
             "accuracy " + " ".join(f"{s} {100 * m[f'{s}_accuracy']:5.1f}%" for s in splits)]
    if "acceptance_rate" in m:
        parts.append(f"accept {100 * m['acceptance_rate']:5.1f}%")
    if "temperature" in m:
        parts.append(f"T {m['temperature']:.2e}")
    if "flip_ratio" in m:
        parts.append(f"flip_ratio {m['flip_ratio']:.2e}")
    swaps = [f"{m[k]:.2f}" for k in sorted(m) if k.startswith("swap_rate_")]
    if swaps:
        parts.append("swap_rate " + ",".join(swaps))
    parts.append(f"{m['steps_per_s']:.0f} steps/s")
    parts.append(f"{m['wall_time']:.1f}s")
    return " | ".join(parts)


def format_final(m: dict[str, Any]) -> str:
    """The closing lines: final and best-by-validation test accuracy."""
    if not m:
        return "no epochs were run"
    return (
        f"final: epoch {m['epoch']} test_accuracy={m['test_accuracy']:.4f} "
        f"test_loss={_fmt(m['test_loss'])} val_accuracy={m['val_accuracy']:.4f}\n"
        f"best (by val_accuracy): epoch {m['best_epoch']} "
        f"test_accuracy={m['best_test_accuracy']:.4f} val_accuracy={m['best_val_accuracy']:.4f}"
    )
