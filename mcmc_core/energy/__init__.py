"""Energy: the loss a sampler minimises, written once for every kernel.

The model runs in eval mode under ``torch.no_grad()``: no dropout noise, and BatchNorm uses (and
never updates) its running statistics, so a rejected candidate leaves no trace.

Modules: :mod:`._subset` (the fixed target's points, :func:`fixed_subset`), :mod:`._loss`
(cross-entropy from ``[K, classes, N]`` logits), :mod:`._evaluate` (loss and accuracy on a
split: one model, or ``K`` stacked MLPs at once), :mod:`._targets` (closures over a model's
energy for the sampler's forward kernel: :class:`FullEnergy`,
:class:`MinibatchEnergy`), :mod:`._set` (the same fixed target for the batched kernel,
:class:`EnergySet`; :class:`~mcmc_core.population.ChainCache` is its incremental fast path).
"""

from mcmc_core.energy._evaluate import device_of, evaluate, evaluate_stacked, mean_loss
from mcmc_core.energy._loss import cross_entropy_t, is_plain_cross_entropy, needs_shift
from mcmc_core.energy._set import EnergySet
from mcmc_core.energy._subset import fixed_subset
from mcmc_core.energy._targets import ENERGIES, Energy, FullEnergy, MinibatchEnergy

__all__ = [
    "ENERGIES",
    "Energy",
    "EnergySet",
    "FullEnergy",
    "MinibatchEnergy",
    "cross_entropy_t",
    "device_of",
    "evaluate",
    "evaluate_stacked",
    "fixed_subset",
    "is_plain_cross_entropy",
    "mean_loss",
    "needs_shift",
]
