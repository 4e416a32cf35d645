"""The fast engine: the replicas of a binary MLP as one incremental, batched population."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from mcmc_core.data import Split
from mcmc_core.energy import is_plain_cross_entropy
from mcmc_core.functional import flip_count
from mcmc_core.optim import SamplerConfig
from mcmc_core.population import EnergySet, Population, StackedMLP
from mcmc_core.schedules import (
    BaseSchedule,
    FlipRatioScheduleConfig,
    TemperatureScheduleConfig,
    build_schedule,
)
from mcmc_core.tempering import ParallelTempering
from mcmc_core.trainers._engine import ChainEngine, schedule_unit

__all__ = ["PopulationEngine", "population_unsupported"]


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


class PopulationEngine(ChainEngine):
    """The replicas as one :class:`~mcmc_core.population.Population`: candidates evaluated from
    the flips alone, all replicas in one batched step; a single chain is a population of one.

    Temperatures and flip ratios follow the trainer's schedule objects, evaluated in closed form
    at each step (the schedule of a replica depends on the step only), so every schedule and
    unit behaves as with :class:`~mcmc_core.trainers._sampler_engine.SamplerEngine`.

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
        # The schedules write into these groups (one per replica) as into a sampler's.
        self._groups = SimpleNamespace(param_groups=[
            {"temperature": t, "flip_ratio": cfg.flip_ratio} for t in temperatures])
        self._schedule_cfgs = (schedule, flip_schedule)
        self._schedule: BaseSchedule | None = None
        self._flip_schedule: BaseSchedule | None = None
        self._steps_per_epoch = 1
        self.step = 0

    def setup(self, epochs: int, steps_per_epoch: int) -> None:
        self._steps_per_epoch = steps_per_epoch
        made = []
        for cfg, key in zip(self._schedule_cfgs, ("temperature", "flip_ratio")):
            horizon = epochs * steps_per_epoch if cfg.unit == "steps" else epochs
            made.append(build_schedule(cfg, self._groups, key=key, horizon=horizon))
        self._schedule, self._flip_schedule = made

    def _value(self, schedule: BaseSchedule | None, step: int) -> list[float]:
        assert schedule is not None, "setup() first"
        return schedule.value_at(schedule_unit(schedule, step, self._steps_per_epoch))

    def _temperature_block(self, start: int, length: int) -> Tensor:
        rows = [self._value(self._schedule, t) for t in range(start, start + length)]
        return torch.tensor(rows, dtype=torch.float64).t()

    def _follow_flip_schedule(self) -> None:
        """Give the population this step's flip ratios where they change a flip count."""
        ratios = self._value(self._flip_schedule, self.step)
        numels = [w[0].numel() for w in self.population.net.weights]
        counts = [[flip_count(r, n) for n in numels] for r in ratios]
        if counts != self.population.flip_counts():
            self.population.flip_ratio = ratios

    def run(self, n_steps: int) -> None:
        flip, spe = self._flip_schedule, self._steps_per_epoch
        per_step_flips = flip is not None and flip.unit == "steps" and (
            self._value(flip, 0) != self._value(flip, 1 << 30))
        end = self.step + n_steps
        while self.step < end:
            self._follow_flip_schedule()
            chunk = end - self.step
            if per_step_flips:
                chunk = 1
            elif flip is not None and flip.unit == "epochs":
                chunk = min(chunk, spe - self.step % spe)
            interval = self.cfg.swap_interval
            if self.tempering is not None:
                chunk = min(chunk, interval - self.step % interval)
            self.population.run(chunk)
            self.step += chunk
            if self.tempering is not None and self.step % interval == 0:
                pop = self.population
                self.tempering.exchange(pop.energies.tolist(), pop.temperatures().tolist(),
                                        pop.exchange)

    def counts(self, replica: int = 0) -> tuple[int, int]:
        return self.population.n_steps, int(self.population.n_accepted[replica])

    def _reported_step(self, schedule: BaseSchedule) -> int:
        # Per-step schedules report the next step's value, per-epoch ones the epoch just run.
        if schedule.unit == "epochs":
            return max(self.step - 1, 0)
        return self.step

    def _reported(self, schedule: BaseSchedule | None, key: str) -> list[float]:
        if schedule is None:  # before setup(): the initial values
            return [group[key] for group in self._groups.param_groups]
        return self._value(schedule, self._reported_step(schedule))

    def temperatures(self) -> list[float]:
        return self._reported(self._schedule, "temperature")

    def flip_ratio(self) -> float:
        return self._reported(self._flip_schedule, "flip_ratio")[0]

    def current_energy(self) -> float:
        return float(self.population.energies[0])

    def sync(self) -> None:
        for k, model in enumerate(self.models):
            self.population.net.write(k, model)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "population": self.population.state_dict(),
                "tempering": self.tempering.state_dict() if self.tempering else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.population.load_state_dict(state["population"])
        if self.tempering is not None:
            self.tempering.load_state_dict(state["tempering"])
        self.sync()
