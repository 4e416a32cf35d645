"""Populations: ``K`` sign-flip MCMC chains on binary MLPs, advanced together by batched tensor
operations (weights ``[K, out, in]`` per layer, one batched incremental update per layer and
step, per-chain accept/reject through masks).

A single chain is a population of one, run by the same code. It samples what
:class:`~mcmc_core.optim.SignFlipSampler` samples on a ``FullEnergy`` of a binary MLP (the same
proposals, acceptance rules and energy; temperatures constant or from every chain's own schedule
objects, :class:`~mcmc_core.schedules.ChainSchedules`), but from a counter-based random stream
per chain instead of a ``torch.Generator``: the same seed gives a different, equally distributed
trajectory than ``SignFlipSampler``, and the same trajectory alone as in any population.

Modules: :mod:`._population` (:class:`Population`: chains, their hyperparameters, the batched
step, state dict, results), :mod:`._cache` (:class:`ChainCache`, the cached pre-activations: the
energy's incremental kernel), :mod:`._fused` (the same step compiled with numba on the CPU),
:mod:`._weights` (stacked weights, export), :mod:`._random`
(per-chain streams), :mod:`._proposal` (flips and acceptance, a block of steps at a time),
:mod:`._graphs` (steps replayed as CUDA graphs), :mod:`._energy_set` (:class:`EnergySet`, the
fixed target as the batched kernel sees it), :mod:`._activation` (:class:`HiddenActivation`, how
the energy reads hidden units: ``sign`` or a smooth ``tanh`` in integers). The loss itself is
:mod:`mcmc_core.energy`'s.

Example:
    >>> from mcmc_core.data import DataConfig, load_dataset
    >>> from mcmc_core.population import Population
    >>> data = load_dataset(DataConfig(name="synthetic"))
    >>> pop = Population.build(data.train, [], data.n_classes, seeds=[0, 1],
    ...                        temperature=1e-3, flip_ratio=0.05)
    >>> pop.run(10).shape
    torch.Size([2])
"""

from mcmc_core.energy import cross_entropy_t
from mcmc_core.population._activation import HiddenActivation
from mcmc_core.population._cache import ChainCache
from mcmc_core.population._energy_set import EnergySet
from mcmc_core.population._proposal import (
    LayerFlips,
    ProposalBlock,
    acceptance_probability_t,
    acceptance_thresholds,
    distinct_indices,
    layer_schedule,
)
from mcmc_core.population._random import ChainRandom, mix64
from mcmc_core.population._population import PROPOSALS, Population
from mcmc_core.population._weights import StackedMLP, evaluate_stacked

__all__ = [
    "PROPOSALS",
    "ChainCache",
    "ChainRandom",
    "EnergySet",
    "HiddenActivation",
    "LayerFlips",
    "ProposalBlock",
    "Population",
    "StackedMLP",
    "acceptance_probability_t",
    "acceptance_thresholds",
    "cross_entropy_t",
    "distinct_indices",
    "evaluate_stacked",
    "layer_schedule",
    "mix64",
]
