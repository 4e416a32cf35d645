"""The general engine: one :class:`~mcmc_core.optim.SignFlipSampler` per replica."""

from __future__ import annotations

from typing import Any

from torch import nn

from mcmc_core.energy import Energy
from mcmc_core.layers import binary_parameters
from mcmc_core.optim import SamplerConfig, SignFlipSampler
from mcmc_core.schedules import (
    BaseSchedule,
    FlipRatioScheduleConfig,
    TemperatureScheduleConfig,
    build_schedule,
)
from mcmc_core.tempering import ParallelTempering
from mcmc_core.trainers._engine import ChainEngine

__all__ = ["SamplerEngine"]


class SamplerEngine(ChainEngine):
    """Replicas sampled one after another, each candidate evaluated by the energy's closure (a
    full forward pass, or the original's mini-batch): any model, any energy, ``coupled``.

    Args:
        models: one model per replica.
        energy: the target (``FullEnergy`` or ``MinibatchEnergy``).
        cfg: the sampler options.
        temperatures: each replica's initial temperature.
        seeds: each replica's generator seed, then the exchange generator's.
        schedule, flip_schedule: the temperature and flip-ratio schedules.
    """

    def __init__(self, models: list[nn.Module], energy: Energy, cfg: SamplerConfig,
                 temperatures: list[float], seeds: list[int],
                 schedule: TemperatureScheduleConfig,
                 flip_schedule: FlipRatioScheduleConfig) -> None:
        self.models, self.energy, self.cfg = models, energy, cfg
        self.acceptance, self.proposal = cfg.acceptance, cfg.proposal
        self.samplers = [
            SignFlipSampler(binary_parameters(m), temperature=t, flip_ratio=cfg.flip_ratio,
                            acceptance=cfg.acceptance, proposal=cfg.proposal,
                            boltzmann=cfg.boltzmann, coupled=cfg.coupled,
                            cache_energy=energy.fixed, seed=s)
            for m, t, s in zip(models, temperatures, seeds)
        ]
        n = len(models)
        self.tempering = (ParallelTempering(n, boltzmann=cfg.boltzmann, seed=seeds[n])
                          if n > 1 else None)
        self._schedule_cfgs = (schedule, flip_schedule)
        self.schedules: list[BaseSchedule] = []
        self.step = 0

    def setup(self, epochs: int, steps_per_epoch: int) -> None:
        for cfg, key in zip(self._schedule_cfgs, ("temperature", "flip_ratio")):
            horizon = epochs * steps_per_epoch if cfg.unit == "steps" else epochs
            self.schedules += [build_schedule(cfg, s, key=key, horizon=horizon)
                               for s in self.samplers]

    def run(self, n_steps: int) -> None:
        per_step = [s for s in self.schedules if s.unit == "steps"]
        for _ in range(n_steps):
            for sampler, closure in zip(self.samplers, self.energy.closures(self.models)):
                sampler.step(closure)
            self.step += 1
            if self.tempering is not None and self.step % self.cfg.swap_interval == 0:
                self._exchange()
            for schedule in per_step:
                schedule.step()

    def _exchange(self) -> None:
        samplers = self.samplers
        if self.energy.fixed:
            energies = [s.energy for s in samplers]
        else:  # a moving target: measure every replica on this exchange's batch
            energies = [c() for c in self.energy.closures(self.models)]

        def swap(i: int, j: int) -> None:
            samplers[i].swap_weights(samplers[j])
            samplers[i].energy, samplers[j].energy = samplers[j].energy, samplers[i].energy

        after = self.tempering.exchange(  # type: ignore[union-attr]
            energies, [s.param_groups[0]["temperature"] for s in samplers], swap)
        if not self.energy.fixed:
            for sampler, energy in zip(samplers, after):
                sampler.energy = energy

    def end_epoch(self) -> None:
        for schedule in self.schedules:
            if schedule.unit == "epochs":
                schedule.step()

    def counts(self, replica: int = 0) -> tuple[int, int]:
        return self.samplers[replica].counts()

    def temperatures(self) -> list[float]:
        return [s.param_groups[0]["temperature"] for s in self.samplers]

    def flip_ratio(self) -> float:
        group = self.samplers[0].param_groups[0]
        return min(1.0, group["temperature"]) if self.cfg.coupled else group["flip_ratio"]

    def current_energy(self) -> float:
        return float(self.samplers[0].energy)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "sampler": [s.state_dict() for s in self.samplers],
            "schedule": [s.state_dict() for s in self.schedules],
            "energy": self.energy.state_dict(),
            "tempering": self.tempering.state_dict() if self.tempering else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        for sampler, s in zip(self.samplers, state["sampler"]):
            sampler.load_state_dict(s)
        for schedule, s in zip(self.schedules, state["schedule"]):
            schedule.load_state_dict(s)
        self.energy.load_state_dict(state["energy"])
        if self.tempering is not None:
            self.tempering.load_state_dict(state["tempering"])
