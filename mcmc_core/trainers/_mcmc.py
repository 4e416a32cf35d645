"""The MCMC trainer: sign-flip chains (optionally parallel-tempered) annealed by schedules."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from mcmc_core._validation import ConfigError
from mcmc_core.data import DataConfig, DataSplits
from mcmc_core.energy import Energy, FullEnergy, MinibatchEnergy
from mcmc_core.layers import binary_parameters
from mcmc_core.optim import SamplerConfig, SignFlipSampler
from mcmc_core.schedules import (
    BaseSchedule,
    FlipRatioScheduleConfig,
    TemperatureScheduleConfig,
    build_schedule,
)
from mcmc_core.tempering import ParallelTempering, geometric_ladder
from mcmc_core.trainers._base import BaseTrainer, Criterion, resolve_data
from mcmc_core.trainers._callbacks import Callback
from mcmc_core.trainers._config import TrainerConfig

__all__ = ["TrainerMCMC", "child_seeds"]


def child_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit seeds derived from ``seed`` (numpy's SeedSequence)."""
    states = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64)
    return [int(s) >> 1 for s in states]


class TrainerMCMC(BaseTrainer):
    """Trains a binary model with forward passes only, by annealed sign-flip MCMC.

    Close to the original research API, with every part configurable::

        trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), "digits",
                              temperature=1e-3, flip_ratio=0.01)
        trainer.train(n_epoch=10)

    Each epoch runs ``steps_per_epoch`` sampler steps on every replica, then evaluates train,
    validation and test loss/accuracy and reports that epoch's acceptance rate, temperature,
    flip ratio and steps/s. Randomness comes only from the chains' own seeded generators, so the
    same seed and configuration give identical weights.

    Args:
        model: a binarized model (see :func:`mcmc_core.binarize_model`).
        criterion: batch-mean loss (default: ``nn.CrossEntropyLoss()``).
        dataset_name: dataset to load when ``data`` is not given (default: ``"digits"``).
        temperature: initial temperature; overrides ``sampler.temperature`` when given.
        flip_ratio: fraction of weights flipped per proposal; overrides ``sampler.flip_ratio``.
        data: a loaded :class:`DataSplits` or a :class:`DataConfig`.
        sampler: proposal, acceptance, energy and tempering options.
        schedule: temperature schedule (default: exponential, cooling_rate 0.999 per step).
        flip_schedule: flip-ratio schedule (default: constant).
        trainer: epochs, steps per epoch, checkpoints.
        seed: seed of every chain generator (default: 0).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (default: ``"auto"``).
        callbacks: :class:`Callback` objects called each epoch.
        config: the resolved run configuration, stored in checkpoints.
    """

    name = "mcmc"

    def __init__(
        self,
        model: nn.Module,
        criterion: Criterion | None = None,
        dataset_name: str = "digits",
        temperature: float | None = None,
        flip_ratio: float | None = None,
        *,
        data: DataSplits | DataConfig | None = None,
        sampler: SamplerConfig | None = None,
        schedule: TemperatureScheduleConfig | None = None,
        flip_schedule: FlipRatioScheduleConfig | None = None,
        trainer: TrainerConfig | None = None,
        seed: int = 0,
        device: str | torch.device = "auto",
        callbacks: Iterable[Callback] = (),
        config: dict[str, Any] | None = None,
    ) -> None:
        sampler = sampler or SamplerConfig()
        if temperature is not None:
            sampler = replace(sampler, temperature=temperature)
        if flip_ratio is not None:
            sampler = replace(sampler, flip_ratio=flip_ratio)
        self.sampler_cfg = sampler
        self.schedule_cfg = schedule or TemperatureScheduleConfig()
        self.flip_schedule_cfg = flip_schedule or FlipRatioScheduleConfig()
        trainer = trainer or TrainerConfig()
        errors = (sampler.errors() + self.schedule_cfg.errors() + self.flip_schedule_cfg.errors()
                  + trainer.errors())
        if errors:
            raise ConfigError(errors)
        super().__init__(model, criterion, resolve_data(data, dataset_name), trainer=trainer,
                         device=device, callbacks=callbacks, config=config)
        n = sampler.n_replicas
        seeds = child_seeds(seed, n + 2)
        self.models = [self.model] + [copy.deepcopy(self.model) for _ in range(n - 1)]
        self.energy = self._make_energy(seeds[-1])
        temperatures = geometric_ladder(sampler.temperature, n, sampler.ladder_ratio)
        self.samplers = [
            SignFlipSampler(
                binary_parameters(m),
                temperature=t,
                flip_ratio=sampler.flip_ratio,
                acceptance=sampler.acceptance,
                proposal=sampler.proposal,
                boltzmann=sampler.boltzmann,
                coupled=sampler.coupled,
                cache_energy=self.energy.fixed,
                incremental=sampler.incremental,
                seed=s,
            )
            for m, t, s in zip(self.models, temperatures, seeds)
        ]
        self.tempering = ParallelTempering(self.samplers, seed=seeds[-2]) if n > 1 else None
        n_train = len(self.data.train)
        self.steps_per_epoch = trainer.steps_per_epoch or math.ceil(n_train / sampler.batch_size)
        self.step = 0
        self.schedules: list[BaseSchedule] = []

    def _make_energy(self, seed: int) -> Energy:
        s = self.sampler_cfg
        if s.energy == "full":
            return FullEnergy(self.criterion, self.data.train, samples=s.energy_samples, seed=seed,
                              batch_size=self.cfg.eval_batch_size * 2, device=self.device)
        return MinibatchEnergy(self.criterion, self.data.train, batch_size=s.batch_size,
                               seed=seed, device=self.device)

    def _setup(self, epochs: int) -> None:
        for cfg, key in ((self.schedule_cfg, "temperature"), (self.flip_schedule_cfg, "flip_ratio")):
            horizon = epochs * self.steps_per_epoch if cfg.unit == "steps" else epochs
            self.schedules += [build_schedule(cfg, s, key=key, horizon=horizon)
                               for s in self.samplers]

    def _train_epoch(self) -> dict[str, float]:
        proposed0, accepted0 = self.samplers[0].counts()
        per_step = [s for s in self.schedules if s.unit == "steps"]
        interval = self.sampler_cfg.swap_interval
        start = time.perf_counter()
        for _ in range(self.steps_per_epoch):
            for sampler, closure in zip(self.samplers, self.energy.closures(self.models)):
                sampler.step(closure)
            self.step += 1
            if self.tempering is not None and self.step % interval == 0:
                energies = None
                if not self.energy.fixed:
                    energies = [c() for c in self.energy.closures(self.models)]
                self.tempering.exchange(energies)
            for schedule in per_step:
                schedule.step()
        seconds = time.perf_counter() - start
        group = self.samplers[0].param_groups[0]
        proposed, accepted = self.samplers[0].counts()
        metrics = {
            "step": float(self.step),
            "energy": float(self.samplers[0].energy),
            "acceptance_rate": (accepted - accepted0) / max(1, proposed - proposed0),
            "temperature": group["temperature"],
            "flip_ratio": min(1.0, group["temperature"]) if self.sampler_cfg.coupled
            else group["flip_ratio"],
            "steps_per_s": self.steps_per_epoch / seconds if seconds > 0 else float("inf"),
        }
        if self.tempering is not None:
            for k, rate in enumerate(self.tempering.swap_rates()):
                metrics[f"swap_rate_{k}_{k + 1}"] = rate
        for schedule in self.schedules:
            if schedule.unit == "epochs":
                schedule.step()
        return metrics

    def _state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "replicas": [m.state_dict() for m in self.models[1:]],
            "sampler": [s.state_dict() for s in self.samplers],
            "schedule": [s.state_dict() for s in self.schedules],
            "energy": self.energy.state_dict(),
            "tempering": self.tempering.state_dict() if self.tempering else None,
            "rng": {"torch": torch.get_rng_state()},
        }

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        for m, s in zip(self.models, [state["model"], *state["replicas"]]):
            m.load_state_dict(s)
        for sampler, s in zip(self.samplers, state["sampler"]):
            sampler.load_state_dict(s)
        for schedule, s in zip(self.schedules, state["schedule"]):
            schedule.load_state_dict(s)
        self.energy.load_state_dict(state["energy"])
        if self.tempering is not None:
            self.tempering.load_state_dict(state["tempering"])
        torch.set_rng_state(state["rng"]["torch"])
