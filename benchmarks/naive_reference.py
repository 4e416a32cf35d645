"""The original sign-flip MCMC step, literally: the reference the benchmarks measure us against.

Each step runs two full forward passes over the energy set (the current state and the candidate),
backs up every weight tensor it may flip with a whole-tensor copy before flipping, and restores
the copies when the candidate is rejected. It draws its proposals and decisions from the same
random stream as :class:`mcmc_core.SignFlipSampler` (layer choice, flat indices, one uniform), so
from the same seed both take the same steps as long as their energies agree to the rounding that
matters (this loss is ``criterion(model(x), y)``, ours a float-rounding different formula).

Lives in ``benchmarks/`` only: it is a yardstick, not part of the engine.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mcmc_core import functional as F
from mcmc_core.layers import binary_parameters

__all__ = ["NaiveSampler"]


class NaiveSampler:
    """One chain of the original algorithm on a fixed energy set ``(inputs, targets)``.

    Args:
        model: a binary model (see :func:`mcmc_core.binarize_model`).
        criterion: batch-mean loss, e.g. ``nn.CrossEntropyLoss()``.
        inputs, targets: the energy set, on the model's device.
        temperature, flip_ratio, acceptance, proposal, boltzmann, seed: as for
            :class:`mcmc_core.SignFlipSampler`.
    """

    def __init__(self, model: nn.Module, criterion: Callable[[torch.Tensor, torch.Tensor],
                 torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor, *,
                 temperature: float, flip_ratio: float, acceptance: str = "metropolis",
                 proposal: str = "layer", boltzmann: float = 1.0, seed: int = 0) -> None:
        self.model, self.criterion, self.inputs, self.targets = model, criterion, inputs, targets
        self.weights = binary_parameters(model)
        self.temperature, self.flip_ratio = temperature, flip_ratio
        self.acceptance, self.proposal, self.boltzmann = acceptance, proposal, boltzmann
        self.generator = torch.Generator().manual_seed(seed)
        self.n_steps = self.n_accepted = 0

    def energy(self) -> float:
        """Mean loss of the model as it is: one full forward pass."""
        self.model.eval()
        return float(self.criterion(self.model(self.inputs), self.targets))

    @torch.no_grad()
    def step(self) -> float:
        """One step; returns the energy of the state after it."""
        current = self.energy()  # forward 1: the current state
        if self.proposal == "all":
            chosen = self.weights
        else:
            chosen = [self.weights[int(torch.randint(len(self.weights), (1,),
                                                     generator=self.generator))]]
        backup = [w.clone() for w in chosen]  # whole-tensor backup
        for w in chosen:
            F.apply_flips(w, F.propose_flips(w.numel(), self.flip_ratio, self.generator))
        candidate = self.energy()  # forward 2: the candidate
        accepted = F.accept(candidate - current, self.temperature, self.generator,
                            self.acceptance, self.boltzmann)
        if not accepted:
            for w, b in zip(chosen, backup):
                w.copy_(b)  # whole-tensor restore
        self.n_steps += 1
        self.n_accepted += int(accepted)
        return candidate if accepted else current
