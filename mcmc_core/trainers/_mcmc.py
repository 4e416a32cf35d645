"""The MCMC trainer: sign-flip chains (optionally parallel-tempered) annealed by schedules."""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from mcmc_core._validation import ConfigError, raise_if_any, violation
from mcmc_core.data import DataConfig, DataSplits
from mcmc_core.energy import Energy, FullEnergy, MinibatchEnergy
from mcmc_core.functional import chain_flip_ratio
from mcmc_core.layers import binary_parameters
from mcmc_core.optim import INCREMENTAL_TERMS, ChainSampler, SamplerConfig
from mcmc_core.schedules import ChainSchedules, FlipRatioScheduleConfig, TemperatureScheduleConfig
from mcmc_core.tempering import ParallelTempering, geometric_ladder
from mcmc_core.trainers._base import BaseTrainer, Callback, Criterion, resolve_data
from mcmc_core.trainers._checkpoint import RunSeeds, mcmc_checkpoint
from mcmc_core.trainers._config import TrainerConfig

__all__ = ["TrainerMCMC", "describe_engine", "epoch_metrics", "steps_per_epoch"]


def steps_per_epoch(trainer: TrainerConfig, sampler: SamplerConfig, n_train: int) -> int:
    """An epoch's steps: ``trainer.steps_per_epoch``, else one pass over ``n_train`` examples
    in mini-batches of ``sampler.batch_size``."""
    return trainer.steps_per_epoch or math.ceil(n_train / sampler.batch_size)


def epoch_metrics(step: int, energy: float, accepted: int, n_steps: int, seconds: float,
                  temperature: float, flip_ratio: float) -> dict[str, float]:
    """What a chain reports of its epoch of ``n_steps`` steps (``accepted`` of them) that took
    ``seconds``, having taken ``step`` steps in all; ``temperature`` and ``flip_ratio`` are the
    next step's (per-epoch schedules: this epoch's)."""
    return {"step": float(step), "energy": energy, "acceptance_rate": accepted / n_steps,
            "temperature": temperature, "flip_ratio": flip_ratio,
            "steps_per_s": n_steps / seconds if seconds > 0 else float("inf")}


def describe_engine(n_chains: int, device: torch.device, reason: str | None) -> str:
    """Which kernel runs ``n_chains`` chains and, for the forward one, why (``reason``; None:
    the incremental one, a batched population)."""
    chains = f"{n_chains} chain{'s' if n_chains > 1 else ''}, {device}"
    if reason is None:
        return f"engine: population ({chains}): candidates evaluated from the flips"
    return f"engine: sampler ({chains}): a forward pass per candidate, because {reason}"


class TrainerMCMC(BaseTrainer):
    """Trains a binary model with forward passes only, by annealed sign-flip MCMC.

    Close to the original research API, with every part configurable::

        trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), "digits",
                              temperature=1e-3, flip_ratio=0.01)
        trainer.train(n_epoch=10)

    Each epoch runs ``steps_per_epoch`` sampler steps on every replica, then evaluates train,
    validation and test loss/accuracy and reports that epoch's acceptance rate, temperature,
    flip ratio and steps/s. Randomness comes only from the chains' own seeded streams, so the
    same seed and configuration give identical weights.

    The replicas are the param groups of one :class:`~mcmc_core.optim.ChainSampler`
    (:attr:`engine`), their schedules :class:`~mcmc_core.schedules.ChainSchedules`. A binary
    MLP on the full energy with cross-entropy (the default) runs its incremental kernel, a
    batched population (a single chain is a population of one); anything else (a CNN, the
    mini-batch energy, ``coupled``, another criterion, ``sampler.incremental=false``) a
    forward pass per candidate; :attr:`engine_reason` says why.

    Every default is that of the config dataclasses (:class:`SamplerConfig`,
    :class:`TemperatureScheduleConfig`, ...), which are also ``mcmc-train``'s defaults: the
    ``conf/`` files only select options and set what an option changes. The model is fitted to
    the data first (:func:`mcmc_core.models.fit_model`: torchvision's AlexNet or ResNet adapted
    to the channels, image size and classes, any other model checked by one forward pass).

    Args:
        model: a binarized model (see :func:`mcmc_core.binarize_model`).
        criterion: batch-mean loss (default: ``nn.CrossEntropyLoss()``).
        dataset_name: dataset to load when ``data`` is not given, case-insensitive
            (``"MNIST"``; default: ``"digits"``).
        temperature: initial temperature; overrides ``sampler.temperature`` when given.
        flip_ratio: fraction of weights flipped per proposal; overrides ``sampler.flip_ratio``.
        data: a loaded :class:`DataSplits` or a :class:`DataConfig`.
        sampler: proposal, acceptance, energy and tempering options.
        schedule: temperature schedule (default: exponential, cooling_rate 0.9995 per step).
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
                         device=device, callbacks=callbacks, config=config, seed=seed)
        n = sampler.n_replicas
        seeds = RunSeeds.of(seed, n)
        self.models = [self.model] + [copy.deepcopy(self.model) for _ in range(n - 1)]
        self._ladder = geometric_ladder(sampler.temperature, n, sampler.ladder_ratio)
        chains = [{"params": binary_parameters(m), "temperature": t, "seed": s}
                  for m, t, s in zip(self.models, self._ladder, seeds.chains)]
        #: The sampler of the replicas (param group ``k``: replica ``k``, coldest first).
        try:
            self.engine = ChainSampler(
                chains, flip_ratio=sampler.flip_ratio, models=self.models,
                energy=self._make_energy(seeds.energy), acceptance=sampler.acceptance,
                proposal=sampler.proposal, boltzmann=sampler.boltzmann, coupled=sampler.coupled,
                kernel="auto" if sampler.incremental else "forward",
                margin_weight=sampler.margin_weight, margin=sampler.margin,
                label_smoothing=sampler.label_smoothing, smooth_hidden=sampler.smooth_hidden)
        except ValueError as err:  # a term of the incremental kernel where the forward one runs
            terms = {name: getattr(sampler, name) for name in INCREMENTAL_TERMS
                     if getattr(sampler, name)}
            if not terms:
                raise
            why = ("0 (off) with sampler.incremental=false: it needs the incremental kernel"
                   if not sampler.incremental else f"0 (off): {err}")
            raise_if_any([violation(f"sampler.{name}", value, why)
                          for name, value in terms.items()])
        self.energy = self.engine.energy
        #: Why the replicas are not a batched population (None when they are).
        self.engine_reason = (self.engine.kernel_reason if sampler.incremental
                              else "sampler.incremental=false")
        #: The replica exchange rule, or None for a single chain.
        self.tempering = (ParallelTempering(n, boltzmann=sampler.boltzmann, seed=seeds.tempering)
                          if n > 1 else None)
        self.schedules: ChainSchedules | None = None  # built by _setup (the run's horizon)
        self.steps_per_epoch = steps_per_epoch(trainer, sampler, len(self.data.train))

    def auto_threads(self) -> int:
        """One thread per chain for the incremental kernel on the CPU (at most torch's setting)."""
        if self.device.type == "cpu" and self.engine_reason is None:
            return min(torch.get_num_threads(), len(self.models))
        return torch.get_num_threads()

    def describe(self) -> str:
        return describe_engine(len(self.models), self.device, self.engine_reason)

    def debug_lines(self) -> list[str]:
        return [*super().debug_lines(), self.describe(), f"sampler: {self.sampler_cfg}",
                f"schedule: {self.schedule_cfg}", f"flip_schedule: {self.flip_schedule_cfg}",
                f"steps_per_epoch: {self.steps_per_epoch}"]

    @property
    def step(self) -> int:
        """Steps taken so far (by every replica)."""
        return self.engine.n_steps

    def _make_energy(self, seed: int) -> Energy:
        s = self.sampler_cfg
        if s.energy == "full":
            return FullEnergy(self.criterion, self.data.train, samples=s.energy_samples, seed=seed,
                              batch_size=self.cfg.eval_batch_size * 2, device=self.device)
        return MinibatchEnergy(self.criterion, self.data.train, batch_size=s.batch_size,
                               seed=seed, device=self.device)

    def _setup(self, epochs: int) -> None:
        self.schedules = ChainSchedules(
            self._ladder, [self.sampler_cfg.flip_ratio] * len(self.models), self.schedule_cfg,
            self.flip_schedule_cfg, epochs=epochs, steps_per_epoch=self.steps_per_epoch)

    def _train_epoch(self) -> dict[str, float]:
        sampler, tempering = self.engine, self.tempering
        accepted0 = sampler.counts()[1]
        start = time.perf_counter()
        sampler.run(self.steps_per_epoch, self.schedules,
                    interval=self.sampler_cfg.swap_interval if tempering else None,
                    on_interval=functools.partial(sampler.exchange, tempering))
        seconds = time.perf_counter() - start
        sampler.sync()
        assert self.schedules is not None  # _setup() ran
        temperatures, flip_ratios = self.schedules.reported(sampler.n_steps)
        # A step proposes once per chain (either kernel): the epoch's proposals are its steps.
        metrics = epoch_metrics(
            sampler.n_steps, sampler.current_energy(), sampler.counts()[1] - accepted0,
            self.steps_per_epoch, seconds, temperatures[0],
            chain_flip_ratio(temperatures[0], flip_ratios[0], self.sampler_cfg.coupled))
        if tempering is not None:
            for k, rate in enumerate(tempering.swap_rates()):
                metrics[f"swap_rate_{k}_{k + 1}"] = rate
        return metrics

    def _state_dict(self) -> dict[str, Any]:
        return mcmc_checkpoint(self.step, self.model.state_dict(),
                               [m.state_dict() for m in self.models[1:]], self.engine.state_dict(),
                               self.tempering.state_dict() if self.tempering else None)

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        for m, s in zip(self.models, [state["model"], *state["replicas"]]):
            m.load_state_dict(s)
        self.engine.load_state_dict(state["engine"])
        if self.tempering is not None:
            self.tempering.load_state_dict(state["engine"]["tempering"])
        torch.set_rng_state(state["rng"]["torch"])
