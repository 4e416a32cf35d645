"""The gradient baseline: straight-through-estimator training of the same binary models."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from mcmc_core._validation import ConfigError
from mcmc_core.data import DataConfig, DataSplits
from mcmc_core.layers import binary_parameters, sign
from mcmc_core.trainers._base import BaseTrainer, Callback, Criterion, resolve_data
from mcmc_core.trainers._config import TrainerConfig

__all__ = ["TrainerSTE"]

# Latent weights start at this magnitude with the binary weight's sign: small enough that Adam
# (steps of about ``lr``) can flip a sign within a few updates.
LATENT_INIT = 0.1


class TrainerSTE(BaseTrainer):
    """Trains a binary model by backpropagation with the straight-through estimator.

    Each binary weight has a real latent weight clipped to [-1, 1]; the forward pass uses its
    sign, and the gradient of the sign is passed straight through where ``|latent| <= 1``
    (activations likewise, see :func:`mcmc_core.layers.sign`). Adam updates the latent weights
    and any real parameters (e.g. BatchNorm). Evaluation, metrics, callbacks and checkpoints are
    those of :class:`TrainerMCMC`, so both can be compared side by side.

    Args:
        model: a binarized model.
        criterion: batch-mean loss (default: ``nn.CrossEntropyLoss()``).
        dataset_name: dataset to load when ``data`` is not given (default: ``"digits"``).
        data: a loaded :class:`DataSplits` or a :class:`DataConfig`.
        trainer: epochs, ``lr``, ``batch_size``, checkpoints.
        seed: seed of the shuffling generator (default: 0).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (default: ``"auto"``).
        callbacks: :class:`Callback` objects called each epoch.
        config: the resolved run configuration, stored in checkpoints.
    """

    name = "ste"

    def __init__(
        self,
        model: nn.Module,
        criterion: Criterion | None = None,
        dataset_name: str = "digits",
        *,
        data: DataSplits | DataConfig | None = None,
        trainer: TrainerConfig | None = None,
        seed: int = 0,
        device: str | torch.device = "auto",
        callbacks: Iterable[Callback] = (),
        config: dict[str, Any] | None = None,
    ) -> None:
        trainer = trainer or TrainerConfig(name="ste")
        if trainer.errors():
            raise ConfigError(trainer.errors())
        super().__init__(model, criterion, resolve_data(data, dataset_name), trainer=trainer,
                         device=device, callbacks=callbacks, config=config, seed=seed)
        self.binary = binary_parameters(self.model)
        binary_ids = {id(p) for p in self.binary}
        self.latent = [(LATENT_INIT * p.detach()).requires_grad_(True) for p in self.binary]
        others = [p for p in self.model.parameters() if id(p) not in binary_ids and p.requires_grad]
        self.optimizer = torch.optim.Adam(self.latent + others, lr=trainer.lr)
        for p in self.binary:
            p.requires_grad_(True)
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0

    @torch.no_grad()
    def _sync_weights(self) -> None:
        for p, latent in zip(self.binary, self.latent):
            p.copy_(sign(latent))

    def _train_epoch(self) -> dict[str, float]:
        train = self.data.train
        order = torch.randperm(len(train), generator=self.generator)
        bs = self.cfg.batch_size
        self.model.train()
        start = time.perf_counter()
        n_batches = 0
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            x, y = train.inputs[idx].to(self.device), train.targets[idx].to(self.device)
            self._sync_weights()
            self.optimizer.zero_grad(set_to_none=True)
            for p in self.binary:
                p.grad = None
            loss = self.criterion(self.model(x), y)
            loss.backward()
            with torch.no_grad():
                for p, latent in zip(self.binary, self.latent):
                    # Straight-through: d sign(w) / dw = 1 inside [-1, 1].
                    latent.grad = p.grad * (latent.abs() <= 1)
            self.optimizer.step()
            with torch.no_grad():
                for latent in self.latent:
                    latent.clamp_(-1.0, 1.0)
            n_batches += 1
            self.step += 1
        self._sync_weights()
        seconds = time.perf_counter() - start
        return {"step": float(self.step),
                "steps_per_s": n_batches / seconds if seconds > 0 else float("inf")}

    def _state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.model.state_dict(),
                "latent": [t.detach().clone() for t in self.latent],
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "rng": self._rng_state()}

    def _rng_state(self) -> dict[str, Any]:
        # Dropout and other random layers draw from the global generators in training mode.
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            for latent, saved in zip(self.latent, state["latent"]):
                latent.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
