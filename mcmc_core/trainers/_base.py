"""The epoch loop of K >= 1 chains, shared by the MCMC trainers and the gradient baseline
(:class:`BaseTrainer`), and its hooks (:class:`Callback`: the sweep layer reports to Optuna and
MLflow through them)."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mcmc_core.data import DataConfig, DataSplits, Split, load_dataset
from mcmc_core.energy import device_of, evaluate
from mcmc_core.models import fit_model
from mcmc_core.secrets import mask_config
from mcmc_core.trainers._checkpoint import CHECKPOINT_NAME, load_latest_checkpoint, save_checkpoint
from mcmc_core.trainers._config import TrainerConfig
from mcmc_core.trainers._debug import LOGGER, debug_logging
from mcmc_core.trainers._format import format_final, format_metrics
from mcmc_core.trainers._record import ChainRecord

__all__ = ["DEVICES", "BaseTrainer", "Callback", "resolve_data", "resolve_device",
           "split_metrics"]

DEVICES = ("auto", "cpu", "cuda")

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_logger = logging.getLogger(LOGGER)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """torch runs on ``n`` CPU threads inside the block, as before it after."""
    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != previous:
            torch.set_num_threads(previous)

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


def split_metrics(data: DataSplits,
                  measure: Callable[[Split], tuple[Any, Any]]) -> dict[str, Any]:
    """``{"<split>_loss": ..., "<split>_accuracy": ...}`` of train, val and test, as
    ``measure(split)`` gives them (a chain's floats, or a population's lists)."""
    metrics = {}
    for split in ("train", "val", "test"):
        metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = measure(getattr(data, split))
    return metrics


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


class _OfChain0:
    """A lone trainer's ``epoch``, ``history``, ... : those of its chain 0's record."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, trainer: Any, owner: type | None = None) -> Any:
        return self if trainer is None else getattr(trainer.records[0], self.name)

    def __set__(self, trainer: Any, value: Any) -> None:
        setattr(trainer.records[0], self.name, value)


class BaseTrainer:
    """The epoch loop for K >= 1 reported chains: runs epochs, evaluates every split, prints a
    line, keeps each chain's record (:class:`ChainRecord`), checkpoints and calls callbacks.

    A chain leaves when a callback calls :meth:`leave` (a pruned or failed trial) or at its
    last epoch; the others go on. A lone run is one chain (``epoch``, ``history``, ``best`` and
    ``best_state`` are its record's). Subclasses implement :meth:`_train_epoch` (one chain) or
    :meth:`_train_epochs` (K chains), and :meth:`_state_dict` / :meth:`_load_state_dict` for
    everything a resumed run needs; a K-chain trainer also the per-chain hooks below.
    """

    name = "base"
    epoch = _OfChain0()
    elapsed = _OfChain0()
    history = _OfChain0()
    best = _OfChain0()
    best_state = _OfChain0()

    def __init__(
        self,
        model: nn.Module | None,
        criterion: Criterion | None,
        data: DataSplits,
        *,
        trainer: TrainerConfig,
        device: str | torch.device = "auto",
        callbacks: Iterable[Callback] = (),
        config: dict[str, Any] | None = None,
        n_chains: int = 1,
        seed: int = 0,
    ) -> None:
        self.device = resolve_device(device)
        #: How ``model`` was changed to fit ``data`` (:func:`~mcmc_core.models.fit_model`,
        #: e.g. torchvision's AlexNet on 1-channel images); empty when it fitted as given.
        self.model_changes: list[str] = []
        if model is not None:
            sample = data.train.inputs[:2].to(device_of(model))
            self.model_changes = fit_model(model, sample, data.n_classes, dataset=data.name,
                                           seed=seed)
        self.model = model.to(self.device) if model is not None else None
        self.criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
        self.data = data
        self.cfg = trainer
        self.callbacks = list(callbacks)
        self.config = config or {}
        self.records = [ChainRecord() for _ in range(n_chains)]
        #: The chains still training (indices into :attr:`records`).
        self.live: list[int] = list(range(n_chains))
        #: Seconds of the last epoch's parts: ``step``, ``evaluate``, ``checkpoint``.
        self.epoch_times: dict[str, float] = {}
        self._leaving: set[int] = set()

    # -- subclass hooks -------------------------------------------------------------------------
    def _setup(self, epochs: int) -> None:
        """Build what depends on the run length (e.g. schedules); called once before training."""

    def _train_epoch(self) -> dict[str, float]:
        raise NotImplementedError

    def _train_epochs(self) -> dict[int, dict[str, float]]:
        """An epoch of every live chain: ``{chain: its epoch's own metrics}``."""
        return {0: self._train_epoch()}

    def _evaluate_chains(self) -> dict[int, dict[str, float]]:
        """Every live chain's loss and accuracy on each split."""
        return {0: self.evaluate()}

    def chain_weights(self, k: int) -> dict[str, torch.Tensor]:
        """Chain ``k``'s current weights, as a CPU copy of its model's state dict."""
        assert self.model is not None
        return {n: v.detach().cpu().clone() for n, v in self.model.state_dict().items()}

    def chain_model(self, k: int) -> nn.Module:
        """Chain ``k``'s current model."""
        assert self.model is not None
        return self.model

    def checkpoint_path_of(self, k: int) -> Path | None:
        """Where chain ``k`` is checkpointed (None: nowhere)."""
        return self.checkpoint_path

    def chain_state_dict(self, k: int,
                         weights: Callable[[], dict[str, torch.Tensor]]) -> dict[str, Any]:
        """Chain ``k``'s checkpoint (``weights()``: its :meth:`chain_weights`, read once)."""
        return self.state_dict()

    def load_chain_state_dict(self, k: int, state: dict[str, Any]) -> None:
        """Continue chain ``k`` from its checkpoint ``state``."""
        self.load_state_dict(state)

    def _leave(self, chains: list[int]) -> None:
        """``chains`` stop training (free what steps them)."""

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
        return split_metrics(self.data, lambda s: evaluate(model, self.criterion, s.inputs,
                                                           s.targets, self.cfg.eval_batch_size))

    def describe(self) -> str | None:
        """One line on how this trainer runs, printed before the first epoch when verbose."""
        return None

    def leave(self, k: int) -> None:
        """Chain ``k`` stops after this epoch (call from a callback: pruned, failed)."""
        self._leaving.add(k)

    def debug_lines(self) -> list[str]:
        """What ``train(debug=1)`` logs before the first epoch: the data, the changes made to
        the model and the settings (subclasses add theirs)."""
        d = self.data
        return [f"data: dataset={d.name} train/val/test {len(d.train)}/{len(d.val)}/"
                f"{len(d.test)} inputs {d.input_shape} {d.n_classes} classes",
                "model changes: " + ("; ".join(self.model_changes) or "none"),
                f"trainer: {self.cfg}", f"device: {self.device}"]

    def train(self, n_epoch: int | None = None, debug: int = 0, *,
              resume: bool | None = None) -> dict[str, Any]:
        """Train until epoch ``n_epoch`` and return the final metrics (chain 0's).

        Example (the original research code's call, accepted as it was written):
            >>> trainer.train(n_epoch=100, debug=0)  # doctest: +SKIP

        Args:
            n_epoch: the last epoch. (default: ``trainer.epochs``)
            debug: 0 trains as usual; 1 or more (or ``True``) also logs DEBUG records to the
                ``mcmc_core.trainers`` logger during this run, shown on stderr as
                ``debug: ...`` lines unless logging is configured: before the first epoch
                :meth:`debug_lines` (data, changes made to the model, every setting), after
                each epoch its metrics and its seconds per part (step, evaluate, checkpoint).
                It changes no result. (default: 0)
            resume: with existing checkpoints, each chain continues from its own and reaches
                the same weights as an uninterrupted run. (default: ``trainer.resume``)
        """
        epochs = n_epoch if n_epoch is not None else self.cfg.epochs
        if epochs < 1:
            raise ValueError(f"n_epoch must be >= 1, but got {n_epoch=}.")
        if not debug >= 0:
            raise ValueError(f"debug must be 0 (off) or more, but got {debug=}.")
        with debug_logging(int(debug)), cpu_threads(self.cfg.threads or self.auto_threads()):
            return self._train(epochs, self.cfg.resume if resume is None else resume)

    def auto_threads(self) -> int:
        """torch's CPU threads when ``trainer.threads`` is null: torch's current setting."""
        return torch.get_num_threads()

    def _train(self, epochs: int, resume: bool) -> dict[str, Any]:
        if not hasattr(self, "_ready"):
            self._setup(epochs)
            self._ready = True
        self.epochs = epochs
        self.live = [k for k in range(len(self.records)) if k not in self._leaving]
        self._resume(resume)
        if self.cfg.verbose and self.model_changes:
            print(f"model: adapted to dataset={self.data.name}: " + "; ".join(self.model_changes),
                  flush=True)
        if self.cfg.verbose and (line := self.describe()):
            print(line, flush=True)
        if _logger.isEnabledFor(logging.DEBUG):
            for line in self.debug_lines():
                _logger.debug(line)
        for cb in self.callbacks:
            cb.on_train_start(self)
        self._drop([k for k in self.live if self.records[k].epoch >= epochs])
        while self.live:
            self._run_epoch()
        final = self.final_metrics()
        if self.cfg.verbose:
            print(format_final(final), flush=True)
        for cb in self.callbacks:
            cb.on_train_end(self, final)
        return final

    def _resume(self, resume: bool) -> None:
        for k in range(len(self.records) if resume else 0):
            path = self.checkpoint_path_of(k)
            state = load_latest_checkpoint(path) if path is not None else None
            if state is not None:
                self.load_chain_state_dict(k, state)
                if self.cfg.verbose:
                    print(f"resumed from {path} at epoch {self.records[k].epoch}", flush=True)

    def _run_epoch(self) -> None:
        """One epoch of every live chain, then its records, checkpoints and callbacks."""
        start = time.perf_counter()
        trained = self._train_epochs()
        evaluated_at = time.perf_counter()
        scores = self._evaluate_chains()
        seconds = time.perf_counter() - start
        self.epoch_times = {"step": evaluated_at - start, "evaluate": seconds - (
            evaluated_at - start), "checkpoint": 0.0}
        ended = {}
        for k in self.live:
            weights = functools.cache(functools.partial(self.chain_weights, k))
            metrics = self.records[k].add({**trained[k], **scores[k]}, seconds, weights)
            ended[k] = metrics
            _logger.debug("chain %d epoch %d: %s", k, metrics["epoch"], metrics)
            if self.cfg.verbose:
                prefix = f"chain {k} | " if len(self.records) > 1 else ""
                print(prefix + format_metrics(metrics, self.epochs), flush=True)
            path = self.checkpoint_path_of(k)
            if path is not None:
                saved = time.perf_counter()
                save_checkpoint(self.chain_state_dict(k, weights), path)
                self.epoch_times["checkpoint"] += time.perf_counter() - saved
                for cb in self.callbacks:
                    cb.on_checkpoint(self, str(path))
        _logger.debug("epoch seconds: %s", self.epoch_times)
        for cb in self.callbacks:
            cb.on_epochs_end(self, ended)
        self._drop([k for k in self.live
                    if k in self._leaving or self.records[k].epoch >= self.epochs])

    def _drop(self, chains: list[int]) -> None:
        if chains:
            self._leave(chains)
            self.live = [k for k in self.live if k not in chains]

    def final_metrics(self, k: int = 0) -> dict[str, Any]:
        """Chain ``k``'s last epoch's metrics plus ``best_*`` (the epoch with the best
        validation accuracy)."""
        return self.records[k].final_metrics()

    def load_best(self) -> None:
        """Load the weights of the epoch with the best validation accuracy into the model."""
        if self.best_state is None:
            raise RuntimeError("no epoch has finished yet: there are no best weights")
        self.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the trainer's own state plus the subclass's."""
        return {**self._checkpoint_header(0, self.config), **self._state_dict()}

    def _checkpoint_header(self, k: int, config: dict[str, Any] | None) -> dict[str, Any]:
        """The keys of chain ``k``'s checkpoint every trainer writes: its writer, its record and
        its config."""
        return {"trainer": self.name, **self.records[k].state_dict(),
                "config": mask_config(config)}  # a copy for people: no passwords

    def _check_writer(self, state: dict[str, Any]) -> None:
        if state.get("trainer") != self.name:
            raise ValueError(
                f"checkpoint was written by trainer {state.get('trainer')!r}, not {self.name!r}"
            )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_writer(state)
        self.records[0].load_state_dict(state)
        self._load_state_dict(state)
