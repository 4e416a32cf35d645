"""K binary-MLP chains of their own configs trained as batched populations:
:class:`TrainerPopulation` (a sweep's 1..K trials on one worker).

Each chain is the chain a lone :class:`~mcmc_core.trainers.TrainerMCMC` of its config runs
(start weights, stream and energy subset from its ``seed``) and is checkpointed in that
trainer's format (``last.pt``), whatever population it runs in: a chain moves between
population sizes, and to ``mcmc-train``, without a converter, and resumes bit-identically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from mcmc_core._validation import ConfigError, check
from mcmc_core.data import DataSplits
from mcmc_core.functional import flip_count
from mcmc_core.optim import run_scheduled
from mcmc_core.population import EnergySet, Population, StackedMLP
from mcmc_core.schedules import ChainSchedules
from mcmc_core.trainers._base import BaseTrainer, Callback, split_metrics
from mcmc_core.trainers._checkpoint import CHECKPOINT_NAME, RunSeeds, mcmc_checkpoint
from mcmc_core.trainers._mcmc import TrainerMCMC, describe_engine, epoch_metrics, steps_per_epoch

if TYPE_CHECKING:
    from mcmc_core.config import TrainConfig

__all__ = ["GROUP_OVERHEAD", "TrainerPopulation", "flip_groups", "population_errors"]


def population_errors(cfg: TrainConfig, when: str = "in a population") -> list[str]:
    """Why chains of config ``cfg`` cannot be trained by :class:`TrainerPopulation`: one line
    per bad value, naming what is allowed ``when`` (empty when they can)."""
    errors: list[str] = []
    for key, value, allowed, shown in (
            ("trainer.name", cfg.trainer.name, "mcmc", "mcmc"),
            ("model.name", cfg.model.name, "mlp", "mlp"),
            ("model.keep_activations", cfg.model.keep_activations, False, "false"),
            ("sampler.energy", cfg.sampler.energy, "full", "full"),
            ("sampler.incremental", cfg.sampler.incremental, True, "true"),
            ("sampler.n_replicas", cfg.sampler.n_replicas, 1, "1 (no parallel tempering)"),
            ("sampler.coupled", cfg.sampler.coupled, False, "false")):
        check(errors, value == allowed, key, value, f"{shown} {when}")
    return errors


#: The cost of one more batched step, in chain-flips: a step of a group costs about
#: ``GROUP_OVERHEAD + len(group) * max(flips)`` chain-flips (every chain padded to its group's
#: largest flip count) plus a per-chain constant. Fitted on digits 192-10 populations (2-core
#: x86 CPU, one thread): ~210 us per step and group, ~6 us per chain-flip.
GROUP_OVERHEAD = 35.0


def flip_groups(flips: list[int], overhead: float = GROUP_OVERHEAD) -> list[list[int]]:
    """Split chains into groups of similar flip counts, at the least total step cost.

    A population pads every chain's proposal to its largest flip count, so one chain with many
    flips makes the step of all the others as slow. Groups are runs of the chains sorted by
    flip count, chosen by dynamic programming to minimise the sum over groups of
    ``overhead + len(group) * max(flips in group)``.

    Returns:
        The chains' indices, group by group (ascending flip counts).
    """
    order = sorted(range(len(flips)), key=lambda i: flips[i])
    cost, cut = [0.0] + [math.inf] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):
            c = cost[i] + overhead + (j - i) * flips[order[j - 1]]
            if c < cost[j]:
                cost[j], cut[j] = c, i
    groups, j = [], len(order)
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


@dataclass
class _Group:
    """Chains at one step stepped as one population (``chains[i]`` is its chain ``i``, whose
    schedules are ``schedules``' chain ``i``)."""

    pop: Population
    chains: list[int]
    schedules: ChainSchedules

    def keep(self, chains: set[int]) -> None:
        """Only ``chains`` go on (the others' steps are left off)."""
        kept = [i for i, k in enumerate(self.chains) if k in chains]
        if kept and len(kept) < len(self.chains):
            self.pop.keep(kept)
            self.schedules.keep(kept)
        self.chains = [self.chains[i] for i in kept]


class TrainerPopulation(BaseTrainer):
    """Trains K binary MLPs, each by the MCMC chain of its own config, as batched populations.

    The configs share everything but a chain's own values (temperature, flip ratio, seed, both
    schedules, checkpoint folder). Chains are stepped in groups of one step and similar flip
    counts (:func:`flip_groups`); a chain's steps do not depend on the chains it is batched
    with, nor on which chains left. Each epoch every live chain is evaluated at once; its
    record, checkpoint and callbacks are as a lone trainer's (see :class:`BaseTrainer`).

    Args:
        cfgs: one validated training config per chain (see :func:`population_errors`).
        data: the dataset they share.
        callbacks: :class:`Callback` objects (``on_epochs_end`` gets every chain's epoch).
        configs: each chain's resolved configuration, stored in its checkpoints.
    """

    name = TrainerMCMC.name  # each chain's checkpoint is a lone TrainerMCMC's

    def __init__(self, cfgs: Sequence[TrainConfig], data: DataSplits, *,
                 callbacks: Sequence[Callback] = (),
                 configs: Sequence[dict[str, Any]] | None = None) -> None:
        if not cfgs:
            raise ValueError("a population needs at least one chain's config.")
        errors = list(dict.fromkeys(e for c in cfgs for e in population_errors(c)))
        if len({(tuple(c.model.hidden), c.model.output_scale, c.model.init) for c in cfgs}) > 1:
            errors.append("model.hidden, model.output_scale and model.init must be equal for "
                          "every chain of a population")
        if cfgs[0].sampler.energy_samples is not None and len({c.seed for c in cfgs}) > 1:
            errors.append("sampler.energy_samples must be null when the chains' seeds differ: "
                          "they share the energy subset of the first chain's seed")
        if errors:
            raise ConfigError(errors)
        cfg = cfgs[0]
        super().__init__(None, None, data, trainer=cfg.trainer, device=cfg.device,
                         callbacks=callbacks, n_chains=len(cfgs))
        self.cfgs, self.configs = list(cfgs), list(configs or [{}] * len(cfgs))
        self.steps_per_epoch = steps_per_epoch(cfg.trainer, cfg.sampler, len(data.train))
        # The start weights do not depend on output_scale. Built at scale 1, whose logits stay
        # finite for build()'s check of the stacked layers, then stacked at the chains' own
        # scale (a huge one makes the chains diverge, as a lone trainer's does).
        self.net = StackedMLP.build(data.train.inputs.shape[1:], cfg.model.hidden,
                                    data.n_classes, [c.seed for c in cfgs], device=self.device,
                                    init=cfg.model.init, inputs=data.train.inputs)
        # The energy subset a lone trainer's chain gets.
        self.energy_set = EnergySet(data.train, samples=cfg.sampler.energy_samples,
                                    seed=RunSeeds.of(cfg.seed).energy, device=self.device,
                                    label_smoothing=cfg.sampler.label_smoothing)
        self.steps, self.accepted = [0] * len(cfgs), [0] * len(cfgs)
        self.groups: list[_Group] | None = None  # built at the first epoch (after a resume)
        self._at: dict[int, tuple[_Group, int]] = {}

    def describe(self) -> str:
        return describe_engine(len(self.cfgs), self.device, None)

    # -- per chain ----------------------------------------------------------------------------
    def checkpoint_path_of(self, k: int) -> Path | None:
        folder = self.cfgs[k].trainer.checkpoint_dir
        return Path(folder) / CHECKPOINT_NAME if folder else None

    def load_chain_state_dict(self, k: int, state: dict[str, Any]) -> None:
        self._check_writer(state)
        self.records[k].load_state_dict(state)
        self.steps[k] = int(state["step"])
        self.accepted[k] = int(state["engine"]["population"]["n_accepted"][0])
        for layer, w in zip(self.net.weights, state["model"].values()):
            layer[k] = w.to(self.device)

    def _set_groups(self, groups: list[_Group]) -> None:
        self.groups = [g for g in groups if g.chains]
        self._at = {k: (g, i) for g in self.groups for i, k in enumerate(g.chains)}

    def chain_model(self, k: int) -> nn.Module:
        at = self._at.get(k)
        if at is not None:
            return at[0].pop.export(at[1])
        return StackedMLP([w[k:k + 1] for w in self.net.weights], self.net.input_shape,
                          self.cfgs[k].model.output_scale).export(0)

    def chain_weights(self, k: int) -> dict[str, Tensor]:
        return self.chain_model(k).state_dict()

    def chain_state_dict(self, k: int,
                         weights: Callable[[], dict[str, Tensor]]) -> dict[str, Any]:
        """Chain ``k``'s checkpoint: what a lone ``TrainerMCMC`` of its config holds now."""
        g, i = self._at[k]
        return {**self._checkpoint_header(k, self.configs[k]),
                **mcmc_checkpoint(self.steps[k], weights(), [],
                                  {"population": g.pop.chain_state(i)}, None)}

    # -- the epoch ----------------------------------------------------------------------------
    def _build_groups(self) -> list[_Group]:
        numels = [w[0].numel() for w in self.net.weights]
        groups = []
        for step in sorted({self.steps[k] for k in self.live}):
            at_step = [k for k in self.live if self.steps[k] == step]
            flips = [sum(flip_count(self.cfgs[k].sampler.flip_ratio, n) for n in numels)
                     for k in at_step]
            for part in flip_groups(flips):
                groups.append(self._group([at_step[i] for i in part], step))
        return groups

    def _group(self, chains: list[int], step: int) -> _Group:
        cfgs = [self.cfgs[k] for k in chains]
        s, index = cfgs[0].sampler, torch.tensor(chains, device=self.device)
        schedules = ChainSchedules([c.sampler.temperature for c in cfgs],
                                   [c.sampler.flip_ratio for c in cfgs],
                                   [c.schedule for c in cfgs], [c.flip_schedule for c in cfgs],
                                   epochs=self.epochs, steps_per_epoch=self.steps_per_epoch)
        pop = Population(
            StackedMLP([w[index] for w in self.net.weights], self.net.input_shape,
                       cfgs[0].model.output_scale),
            self.energy_set, temperature=[c.sampler.temperature for c in cfgs],
            flip_ratio=schedules.flip_ratios(step),
            seeds=[RunSeeds.of(c.seed).chains[0] for c in cfgs], acceptance=s.acceptance,
            proposal=s.proposal, boltzmann=s.boltzmann, ids=chains,
            schedule=schedules.temperatures, margin_weight=s.margin_weight, margin=s.margin,
            smooth_hidden=s.smooth_hidden)
        pop.resume_at(step, [self.accepted[k] for k in chains])
        return _Group(pop, chains, schedules)

    def _train_epochs(self) -> dict[int, dict[str, float]]:
        if self.groups is None or len(self._at) != len(self.live):  # first (or another) train()
            self._set_groups(self._build_groups())
        n = self.steps_per_epoch
        began = time.perf_counter()
        for g in self.groups:
            run_scheduled(g.pop, g.schedules, n)
        if self.device.type == "cuda":  # the steps are launched asynchronously
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - began
        metrics = {}
        for g in self.groups:
            temperatures, flip_ratios = g.schedules.reported(g.pop.n_steps)
            energies, accepted = g.pop.energies.tolist(), g.pop.n_accepted.tolist()
            for i, k in enumerate(g.chains):
                metrics[k] = epoch_metrics(g.pop.n_steps, energies[i],
                                           accepted[i] - self.accepted[k], n, seconds,
                                           temperatures[i], flip_ratios[i])
                self.steps[k], self.accepted[k] = g.pop.n_steps, int(accepted[i])
        return metrics

    def _evaluate_chains(self) -> dict[int, dict[str, float]]:
        scores: dict[int, dict[str, float]] = {}
        for g in self.groups or []:
            columns = split_metrics(self.data, lambda s, pop=g.pop: [
                t.tolist() for t in pop.evaluate(s, self.cfg.eval_batch_size)])
            for i, k in enumerate(g.chains):
                scores[k] = {name: values[i] for name, values in columns.items()}
        return scores

    def _leave(self, chains: list[int]) -> None:
        leaving = set(chains)
        for g in self.groups or []:
            for i, k in enumerate(g.chains):  # the stacked weights keep the last ones
                if k in leaving:
                    for layer, w in zip(self.net.weights, g.pop.net.weights):
                        layer[k] = w[i]
            g.keep({k for k in g.chains if k not in leaving})
        if self.groups is not None:
            self._set_groups(self.groups)
