"""Energy: the loss a sampler minimises, written once for every kernel.

The model runs in eval mode under ``torch.no_grad()``: no dropout noise, and BatchNorm uses (and
never updates) its running statistics, so a rejected candidate leaves no trace.

Modules: :mod:`._subset` (the fixed target's points, :func:`fixed_subset`), :mod:`._loss`
(cross-entropy from ``[K, classes, N]`` logits), :mod:`._evaluate` (loss and accuracy of one
model on a split), :mod:`._targets` (closures over a model's energy for the sampler's forward
kernel: :class:`FullEnergy`, :class:`MinibatchEnergy`). The same fixed target as the batched
kernel sees it is :class:`mcmc_core.population.EnergySet`.
"""

from mcmc_core.energy._evaluate import device_of, evaluate, mean_loss
from mcmc_core.energy._loss import cross_entropy_t, is_plain_cross_entropy, needs_shift
from mcmc_core.energy._subset import fixed_subset
from mcmc_core.energy._targets import ENERGIES, Energy, FullEnergy, MinibatchEnergy

__all__ = [
    "ENERGIES",
    "Energy",
    "FullEnergy",
    "MinibatchEnergy",
    "cross_entropy_t",
    "device_of",
    "evaluate",
    "fixed_subset",
    "is_plain_cross_entropy",
    "mean_loss",
    "needs_shift",
]
