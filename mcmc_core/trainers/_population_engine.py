"""The fast engine: the replicas of a binary MLP as one incremental, batched population."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mcmc_core.data import Split
from mcmc_core.energy import is_plain_cross_entropy
from mcmc_core.functional import flip_count
from mcmc_core.optim import SamplerConfig
from mcmc_core.population import EnergySet, Population, StackedMLP
from mcmc_core.schedules import ChainSchedules, FlipRatioScheduleConfig, TemperatureScheduleConfig
from mcmc_core.tempering import ParallelTempering
from mcmc_core.trainers._engine import ChainEngine

__all__ = ["PopulationEngine", "population_unsupported", "run_scheduled"]


def population_unsupported(models: list[nn.Module], criterion: Any, train: Split,
                           cfg: SamplerConfig) -> str | None:
    """Why the replicas cannot run as a :class:`Population` (None: they can)."""
    if not cfg.incremental:
        return "sampler.incremental=false"
    if cfg.energy != "full":
        return f"sampler.energy={cfg.energy}"
    if cfg.coupled:
        return "sampler.coupled=true"
    if not is_plain_cross_entropy(criterion, train.targets):
        return "the criterion is not a plain nn.CrossEntropyLoss()"
    if train.inputs.dim() < 2:
        return "the inputs are not batched"
    try:
        StackedMLP.from_models(models[:1], train.inputs.shape[1:])
    except ValueError as e:
        return str(e)
    return None


def run_scheduled(population: Population, schedules: ChainSchedules, n_steps: int, *,
                  interval: int | None = None,
                  on_interval: Callable[[], None] | None = None) -> None:
    """Advance ``population`` by ``n_steps`` from its own step count, its chains' temperatures
    read from ``schedules`` (the population's ``schedule``) and their flip ratios given to it
    wherever they change a flip count; ``on_interval()`` after every ``interval``-th step
    (parallel-tempering exchanges)."""
    end = population.n_steps + n_steps
    numels = [w[0].numel() for w in population.net.weights]
    while population.n_steps < end:
        step = population.n_steps
        ratios = schedules.flip_ratios(step)
        if [[flip_count(r, n) for n in numels] for r in ratios] != population.flip_counts():
            population.flip_ratio = ratios
        chunk = min(end - step, schedules.steps_with_same_flips(step))
        if interval is not None:
            chunk = min(chunk, interval - step % interval)
        population.run(int(chunk))
        if interval is not None and on_interval is not None and (
                population.n_steps % interval == 0):
            on_interval()


class PopulationEngine(ChainEngine):
    """The replicas as one :class:`~mcmc_core.population.Population`: candidates evaluated from
    the flips alone, all replicas in one batched step; a single chain is a population of one.

    Temperatures and flip ratios follow each replica's schedule objects
    (:class:`~mcmc_core.schedules.ChainSchedules`), evaluated in closed form at the step, so
    every schedule and unit behaves as with
    :class:`~mcmc_core.trainers._sampler_engine.SamplerEngine`.

    Args:
        models: one binary MLP per replica (see :func:`population_unsupported`).
        train: the training split; the energy set is it or a seeded subset of it.
        cfg: the sampler options.
        temperatures: each replica's initial temperature.
        seeds: each replica's stream seed, then the exchange generator's, then the subset's.
        schedule, flip_schedule: the temperature and flip-ratio schedules.
        device: where the population runs.
    """

    def __init__(self, models: list[nn.Module], train: Split, cfg: SamplerConfig,
                 temperatures: list[float], seeds: list[int],
                 schedule: TemperatureScheduleConfig, flip_schedule: FlipRatioScheduleConfig,
                 device: torch.device) -> None:
        n = len(models)
        self.models, self.cfg = models, cfg
        self.acceptance, self.proposal = cfg.acceptance, cfg.proposal
        net = StackedMLP.from_models(models, train.inputs.shape[1:], device=device)
        self.energy_set = EnergySet(train, samples=cfg.energy_samples, seed=seeds[n + 1],
                                    device=device)
        self.population = Population(
            net, self.energy_set, temperature=temperatures, flip_ratio=cfg.flip_ratio,
            seeds=seeds[:n], acceptance=cfg.acceptance, proposal=cfg.proposal,
            boltzmann=cfg.boltzmann, schedule=self._temperature_block)
        self.tempering = (ParallelTempering(n, boltzmann=cfg.boltzmann, seed=seeds[n])
                          if n > 1 else None)
        self._initial = (temperatures, [cfg.flip_ratio] * n)
        self._schedule_cfgs = (schedule, flip_schedule)
        self.schedules: ChainSchedules | None = None

    @property
    def step(self) -> int:  # type: ignore[override]
        return self.population.n_steps

    def setup(self, epochs: int, steps_per_epoch: int) -> None:
        self.schedules = ChainSchedules(*self._initial, *self._schedule_cfgs, epochs=epochs,
                                        steps_per_epoch=steps_per_epoch)

    def _temperature_block(self, start: int, length: int) -> torch.Tensor:
        assert self.schedules is not None, "setup() first"
        return self.schedules.temperatures(start, length)

    def _exchange(self) -> None:
        pop = self.population
        self.tempering.exchange(  # type: ignore[union-attr]
            pop.energies.tolist(), pop.temperatures().tolist(), pop.exchange)

    def run(self, n_steps: int) -> None:
        assert self.schedules is not None, "setup() first"
        interval = self.cfg.swap_interval if self.tempering is not None else None
        run_scheduled(self.population, self.schedules, n_steps, interval=interval,
                      on_interval=self._exchange)

    def counts(self, replica: int = 0) -> tuple[int, int]:
        return self.population.n_steps, int(self.population.n_accepted[replica])

    def _reported(self) -> tuple[list[float], list[float]]:
        if self.schedules is None:  # before setup(): the initial values
            return self._initial
        return self.schedules.reported(self.step)

    def temperatures(self) -> list[float]:
        return self._reported()[0]

    def flip_ratio(self) -> float:
        return self._reported()[1][0]

    def current_energy(self) -> float:
        return float(self.population.energies[0])

    def sync(self) -> None:
        for k, model in enumerate(self.models):
            self.population.net.write(k, model)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "population": self.population.state_dict(),
                "tempering": self.tempering.state_dict() if self.tempering else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.population.load_state_dict(state["population"])
        if self.tempering is not None:
            self.tempering.load_state_dict(state["tempering"])
        self.sync()
