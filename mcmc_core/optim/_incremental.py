"""The incremental kernel of :class:`~mcmc_core.optim.ChainSampler`: binary MLPs on a fixed
full energy as one batched :class:`~mcmc_core.population.Population` (candidates evaluated from
the flips alone, CUDA graphs on a GPU), and the loop that feeds it every chain's schedules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mcmc_core.data import Split
from mcmc_core.energy import Energy, FullEnergy
from mcmc_core.functional import flip_count
from mcmc_core.population import EnergySet, Population, StackedMLP

if TYPE_CHECKING:
    from mcmc_core.schedules import ChainSchedules

__all__ = ["build_population", "run_scheduled"]


def build_population(models: Sequence[nn.Module], energy: Energy, groups: list[dict[str, Any]],
                     *, coupled: bool, device: torch.device,
                     **options: Any) -> tuple[Population | None, str | None]:
    """The chains ``groups`` of ``models`` as a population on ``energy``'s fixed target, or
    ``(None, why not)``: the kernel needs a plain cross-entropy :class:`FullEnergy` on
    batched inputs, ``coupled=False`` and binary MLPs. ``options`` go to
    :class:`Population` (acceptance, proposal, boltzmann, graphs)."""
    if not isinstance(energy, FullEnergy):
        return None, f"sampler.energy={energy.name}"
    if coupled:
        return None, "sampler.coupled=true"
    if not energy.plain_cross_entropy:
        return None, "the criterion is not a plain nn.CrossEntropyLoss()"
    if energy.inputs.dim() < 2:
        return None, "the inputs are not batched"
    target = Split(energy.inputs, energy.targets)  # the fixed subset, as FullEnergy's
    try:
        net = StackedMLP.from_models(models, target.inputs.shape[1:], device=device)
    except ValueError as e:
        return None, str(e)
    population = Population(
        net, EnergySet(target, device=device), seeds=[g["seed"] for g in groups],
        temperature=[g["temperature"] for g in groups],
        flip_ratio=[g["flip_ratio"] for g in groups], **options)
    return population, None


def run_scheduled(population: Population, schedules: ChainSchedules | None, n_steps: int, *,
                  interval: int | None = None,
                  on_interval: Callable[[], None] | None = None) -> None:
    """Advance ``population`` by ``n_steps`` from its own step count, its chains' temperatures
    read from ``schedules`` (the population's ``schedule``) and their flip ratios given to it
    wherever they change a flip count (None: its own values); ``on_interval()`` after every
    ``interval``-th step (parallel-tempering exchanges)."""
    end = population.n_steps + n_steps
    numels = [w[0].numel() for w in population.net.weights]
    while population.n_steps < end:
        step = population.n_steps
        chunk = end - step
        if schedules is not None:
            ratios = schedules.flip_ratios(step)
            if [[flip_count(r, n) for n in numels] for r in ratios] != population.flip_counts():
                population.flip_ratio = ratios
            chunk = min(chunk, schedules.steps_with_same_flips(step))
        if interval is not None:
            chunk = min(chunk, interval - step % interval)
        population.run(int(chunk))
        if interval is not None and on_interval is not None and (
                population.n_steps % interval == 0):
            on_interval()
