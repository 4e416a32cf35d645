"""The two kernels of :class:`~mcmc_core.optim.ChainSampler`, with the same methods, picked
once by :func:`make_kernel` (as ``torch.optim``'s ``sgd()`` picks ``_single_tensor_sgd`` or
``_multi_tensor_sgd``): :class:`ForwardKernel` (a :class:`SignFlipSampler` per chain, a forward
pass per candidate) and :class:`IncrementalKernel` (binary MLPs on a fixed full energy as one
batched :class:`~mcmc_core.population.Population`, candidates evaluated from the flips alone,
CUDA graphs on a GPU), with the loop that feeds a population every chain's schedules
(:func:`run_scheduled`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mcmc_core.data import Split
from mcmc_core.energy import Energy, FullEnergy, device_of
from mcmc_core.functional import flip_count
from mcmc_core.optim._sign_flip import SignFlipSampler
from mcmc_core.population import EnergySet, Population, StackedMLP
from mcmc_core.schedules import ChainSchedules
from mcmc_core.tempering import ParallelTempering

__all__ = ["INCREMENTAL_TERMS", "KERNELS", "ForwardKernel", "IncrementalKernel", "build_population", "make_kernel",
           "run_scheduled", "set_groups"]

KERNELS = ("auto", "forward", "incremental")
#: Energy terms only the incremental kernel has (config keys under ``sampler``; 0 = off).
INCREMENTAL_TERMS = ("margin_weight", "label_smoothing", "smooth_hidden")


def make_kernel(groups: list[dict[str, Any]], models: Sequence[nn.Module], energy: Energy, *,
                kernel: str, coupled: bool, graphs: bool | None,
                terms: dict[str, Any] | None = None,
                **options: Any) -> tuple[ForwardKernel | IncrementalKernel, str | None]:
    """The kernel that steps the chains ``groups`` of ``models``, and why the incremental one
    does not (None when it does): ``kernel="incremental"`` or ``"auto"`` where it applies
    (:func:`build_population`), else ``"forward"``. ``options`` are both kernels'
    (acceptance, proposal, boltzmann), ``terms`` the incremental one's energy terms
    (``margin_weight``, ``margin``, ``label_smoothing``, ``smooth_hidden``).

    Raises:
        ValueError: for ``kernel="incremental"`` where it does not apply (or a term that
            needs it without it), or another name.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, but got {kernel=}.")
    reason: str | None = "kernel='forward'"
    if kernel != "forward":
        population, reason = build_population(models, energy, groups, coupled=coupled,
                                              device=device_of(models[0]), graphs=graphs,
                                              **(terms or {}), **options)
        if population is not None:
            return IncrementalKernel(population, models), None
        if kernel == "incremental":
            raise ValueError(f"kernel='incremental' does not apply: {reason}.")
    used = [name for name in INCREMENTAL_TERMS if (terms or {}).get(name)]
    if used:
        raise ValueError(f"{' and '.join(used)} {'need' if len(used) > 1 else 'needs'} the "
                         f"incremental kernel, which does not run because {reason}.")
    return ForwardKernel(groups, models, energy, coupled=coupled, **options), reason


def build_population(models: Sequence[nn.Module], energy: Energy, groups: list[dict[str, Any]],
                     *, coupled: bool, device: torch.device, label_smoothing: float = 0.0,
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
        net, EnergySet(target, device=device, label_smoothing=label_smoothing),
        seeds=[g["seed"] for g in groups],
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


def set_groups(groups: list[dict[str, Any]], temperatures: list[float],
               flip_ratios: list[float]) -> None:
    """Write every chain's temperature and flip ratio into its param group."""
    for group, t, f in zip(groups, temperatures, flip_ratios):
        group["temperature"], group["flip_ratio"] = t, f


class ForwardKernel:
    """Chain after chain, a forward pass per candidate through ``energy``'s closures: a
    :class:`SignFlipSampler` over each group dict (any model and energy).

    Args:
        groups: the chains' param groups (each sampler steps its own dict).
        models: each chain's model.
        energy: what a chain's energy is measured on.
        options: :class:`SignFlipSampler`'s (acceptance, proposal, boltzmann, coupled).
    """

    name = "forward"

    def __init__(self, groups: list[dict[str, Any]], models: Sequence[nn.Module], energy: Energy,
                 **options: Any) -> None:
        self.models, self.energy = list(models), energy
        self.samplers = [SignFlipSampler([g], cache_energy=energy.fixed, seed=g["seed"], **options)
                         for g in groups]
        self.population: Population | None = None

    @property
    def n_steps(self) -> int:
        return self.samplers[0].n_steps

    def step(self, groups: list[dict[str, Any]],
             closures: Sequence[Callable[[], float]] | None) -> list[float]:
        return [s.step(c) for s, c in zip(self.samplers,
                                           closures or self.energy.closures(self.models))]

    def run(self, groups: list[dict[str, Any]], n_steps: int, schedules: ChainSchedules | None,
            interval: int | None, on_interval: Callable[[], None] | None) -> None:
        for _ in range(n_steps):
            if schedules is not None:
                set_groups(groups, *schedules.at(self.n_steps))
            for sampler, closure in zip(self.samplers, self.energy.closures(self.models)):
                sampler.step(closure)
            if interval is not None and on_interval is not None and (
                    self.n_steps % interval == 0):
                on_interval()

    def exchange(self, tempering: ParallelTempering, temperatures: list[float]) -> None:
        samplers, fixed = self.samplers, self.energy.fixed
        # A moving target: measure every chain on this exchange's batch.
        energies = ([s.energy for s in samplers] if fixed
                    else [c() for c in self.energy.closures(self.models)])

        def swap(i: int, j: int) -> None:
            samplers[i].swap_weights(samplers[j])
            samplers[i].energy, samplers[j].energy = samplers[j].energy, samplers[i].energy

        after = tempering.exchange(energies, temperatures, swap)
        if not fixed:
            for sampler, energy in zip(samplers, after):
                sampler.energy = energy

    def counts(self, k: int) -> tuple[int, int]:
        return self.samplers[k].counts()

    def current_energy(self, k: int) -> float:
        return float(self.samplers[k].energy)  # type: ignore[arg-type]

    def sync(self) -> None:
        """Nothing to write: the samplers step the params themselves."""

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": [s.state_dict() for s in self.samplers],
                "energy": self.energy.state_dict()}

    def load_state_dict(self, groups: list[dict[str, Any]],
                        state: dict[str, Any]) -> list[dict[str, Any]]:
        """Restore ``state``; returns the chains' param groups (the samplers' new dicts)."""
        for sampler, one in zip(self.samplers, state["sampler"], strict=True):
            sampler.load_state_dict(one)
        self.energy.load_state_dict(state["energy"])
        return [s.param_groups[0] for s in self.samplers]


class IncrementalKernel:
    """All chains in one batched :class:`~mcmc_core.population.Population` (built by
    :func:`build_population`): candidates evaluated from the flips alone, steps replayed as CUDA
    graphs on a GPU. It steps a stacked copy of the weights; :meth:`sync` writes them into the
    models' params."""

    name = "incremental"

    def __init__(self, population: Population, models: Sequence[nn.Module]) -> None:
        self.population, self.models = population, list(models)
        self.energy = population.energy_set
        self.samplers: list[SignFlipSampler] = []
        self._schedules: ChainSchedules | None = None

    @property
    def n_steps(self) -> int:
        return self.population.n_steps

    def step(self, groups: list[dict[str, Any]],
             closures: Sequence[Callable[[], float]] | None) -> list[float]:
        self.run(groups, 1, None, None, None)
        return self.population.energies.tolist()

    def run(self, groups: list[dict[str, Any]], n_steps: int, schedules: ChainSchedules | None,
            interval: int | None, on_interval: Callable[[], None] | None) -> None:
        pop = self.population
        if schedules is not self._schedules:
            pop.schedule = None if schedules is None else schedules.temperatures
            self._schedules = schedules
        if schedules is None:  # the groups' values, wherever they changed
            for name in ("temperature", "flip_ratio"):
                values = [g[name] for g in groups]
                if values != getattr(pop, name).tolist():
                    setattr(pop, name, values)
        run_scheduled(pop, schedules, n_steps, interval=interval, on_interval=on_interval)

    def exchange(self, tempering: ParallelTempering, temperatures: list[float]) -> None:
        pop = self.population
        tempering.exchange(pop.energies.tolist(), pop.temperatures().tolist(), pop.exchange)

    def counts(self, k: int) -> tuple[int, int]:
        return self.population.n_steps, int(self.population.n_accepted[k])

    def current_energy(self, k: int) -> float:
        return float(self.population.energies[k])

    def sync(self) -> None:
        for k, model in enumerate(self.models):
            self.population.net.write(k, model)

    def state_dict(self) -> dict[str, Any]:
        return {"population": self.population.state_dict()}

    def load_state_dict(self, groups: list[dict[str, Any]],
                        state: dict[str, Any]) -> list[dict[str, Any]]:
        """Restore ``state`` and write the weights into the params; returns ``groups``."""
        self.population.load_state_dict(state["population"])
        self.sync()
        return groups
