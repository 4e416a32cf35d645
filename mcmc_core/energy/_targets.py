"""Energy targets of a model: closures that measure the loss a sampler minimises with forward
passes only (the fixed full-split target, the original's mini-batches).

The model runs in eval mode under ``torch.no_grad()``: no dropout noise, and BatchNorm uses (and
never updates) its running statistics, so a rejected candidate leaves no trace.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mcmc_core.data import Split
from mcmc_core.energy._loss import cross_entropy_t, is_plain_cross_entropy
from mcmc_core.energy._subset import fixed_subset

__all__ = ["ENERGIES", "Energy", "FullEnergy", "MinibatchEnergy"]

ENERGIES = ("full", "minibatch")


class Energy:
    """A target for the sampler: hands out closures that measure a model's energy.

    ``fixed`` tells whether every closure measures the same target; then a sampler may cache the
    current energy (``SignFlipSampler(cache_energy=True)``).
    """

    fixed: bool
    name: str  # its ``sampler.energy`` value

    def closures(self, models: list[nn.Module]) -> list[Callable[[], float]]:
        """Closures for the next sampler step, one per model, all on the same target."""
        raise NotImplementedError

    def closure(self, model: nn.Module) -> Callable[[], float]:
        """The closure for the next sampler step of a single model."""
        return self.closures([model])[0]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class FullEnergy(Energy):
    """Mean loss on the whole training split, or on a fixed seeded subset of ``samples`` points.

    The target never changes, so the chain samples one well-defined distribution and the current
    energy can be cached: a step costs one forward pass over the target. (Binary MLPs on this
    target are sampled without any forward pass by :class:`~mcmc_core.population.Population`.)

    The loss is computed from all logits at once, in a ``(classes, N)`` layout; a plain
    ``nn.CrossEntropyLoss()`` is evaluated as ``mean(logsumexp - picked logit)`` there (PyTorch's
    CPU ``log_softmax`` over 10 classes costs ~10x more); it differs from
    ``criterion(logits, y)`` only by float rounding.

    Args:
        criterion: batch-mean loss, e.g. ``nn.CrossEntropyLoss()``.
        split: the training split.
        samples: size of the fixed subset; ``None`` uses the whole split (default: None).
        seed: seed of the subset choice (default: 0).
        batch_size: chunk size of the forward passes (default: 8192).
        device: where the target is kept (default: ``"cpu"``).
    """

    fixed, name = True, "full"

    def __init__(
        self,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        split: Split,
        *,
        samples: int | None = None,
        seed: int = 0,
        batch_size: int = 8192,
        device: torch.device | str = "cpu",
    ) -> None:
        self.criterion, self.batch_size = criterion, batch_size
        inputs, targets = fixed_subset(split, samples, seed)
        # Kept on the device once: the target is read at every step.
        self.inputs, self.targets = inputs.to(device), targets.to(device)
        #: The criterion is a plain ``nn.CrossEntropyLoss()`` (what the batched kernel computes).
        self.plain_cross_entropy = is_plain_cross_entropy(criterion, self.targets)

    @torch.no_grad()
    def logits(self, model: nn.Module) -> torch.Tensor:
        """``model``'s outputs on the target in eval mode, ``(N, classes)``, in chunks."""
        model.eval()
        n, size = len(self.targets), self.batch_size
        if n <= size:  # one chunk: the first layer sees the same tensor at every call (sign memo)
            return model(self.inputs)
        return torch.cat([model(self.inputs[s : s + size]) for s in range(0, n, size)])

    @torch.no_grad()
    def _full(self, model: nn.Module) -> float:
        logits = self.logits(model)
        if logits.dim() != 2:
            return float(self.criterion(logits, self.targets))
        return self.loss_t(logits.t().contiguous())

    def loss_t(self, logits_t: torch.Tensor) -> float:
        """The energy of contiguous ``(classes, N)`` logits: ``criterion(logits_t.t(), targets)``.

        No autograd (the sampler's hot path): pass logits that do not require grad.
        """
        if self.plain_cross_entropy:
            return float(cross_entropy_t(logits_t.unsqueeze(0).clone(), self.targets).mean())
        return float(self.criterion(logits_t.t(), self.targets))

    def closures(self, models: list[nn.Module]) -> list[Callable[[], float]]:
        return [functools.partial(self._full, m) for m in models]


class MinibatchEnergy(Energy):
    """The original's energy: each step takes the next mini-batch of a shuffled pass over the data
    and measures both the current and the candidate energy on it (a noisy, moving target).

    Args:
        criterion: batch-mean loss.
        split: the training split.
        batch_size: mini-batch size (default: 128).
        seed: seed of the shuffling generator (default: 0).
        device: where the data is kept (default: ``"cpu"``).
    """

    fixed, name = False, "minibatch"

    def __init__(
        self,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        split: Split,
        *,
        batch_size: int = 128,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, but got {batch_size=}.")
        self.criterion, self.batch_size = criterion, batch_size
        self.inputs, self.targets = split.inputs.to(device), split.targets.to(device)
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.randperm(len(self.targets), generator=self.generator)
        self._position = 0

    def _next_batch(self) -> torch.Tensor:
        if self._position >= len(self._order):
            self._order = torch.randperm(len(self.targets), generator=self.generator)
            self._position = 0
        idx = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        return idx.to(self.inputs.device)

    def closures(self, models: list[nn.Module]) -> list[Callable[[], float]]:
        idx = self._next_batch()
        x, y = self.inputs[idx], self.targets[idx]

        def closure_for(model: nn.Module) -> Callable[[], float]:
            @torch.no_grad()
            def energy() -> float:
                model.eval()
                return float(self.criterion(model(x), y))

            return energy

        return [closure_for(m) for m in models]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self._order.clone(),
                "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._order, self._position = state["order"].clone(), state["position"]
