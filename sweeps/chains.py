"""The chains of population trials (:mod:`sweeps.population`): each trial's bookkeeping and
checkpoint (:class:`Chain`), and the batched populations the chains are stepped in, grouped by
step and flip count (:func:`build_groups`).

A trial's checkpoint is the one a lone :class:`~mcmc_core.trainers.TrainerMCMC` writes and
resumes (``last.pt``: its chain as a population of one), whatever population it ran in: a trial
moves between ``study.population`` sizes, and to ``mcmc-train``, without a converter."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState
from torch import Tensor

from mcmc_core.config import TrainConfig
from mcmc_core.data import DataSplits
from mcmc_core.functional import flip_count
from mcmc_core.population import EnergySet, Population, StackedMLP
from mcmc_core.schedules import ChainSchedules
from mcmc_core.secrets import mask_config
from mcmc_core.trainers import (
    CHECKPOINT_NAME,
    TrainerMCMC,
    best_entry,
    child_seeds,
    final_metrics,
    improves_best,
    load_latest_checkpoint,
    resolve_device,
    run_scheduled,
    save_checkpoint,
)
from sweeps.phases import phase
from sweeps.client_run import ClientRun
from sweeps.tracking import epoch_metrics

__all__ = ["CHECKPOINT_NAME", "SCORES", "Chain", "Group", "build_groups", "flip_groups",
           "measure"]

#: Per-epoch scores of every chain, on each split.
SCORES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
          "test_accuracy")


def _mlp_weights(model_state: dict[str, Tensor]) -> list[Tensor]:
    """A binary MLP's layer weights from its state dict (``build_model``'s ``MLP``)."""
    return [w.detach().cpu().clone() for w in model_state.values()]


@dataclass
class Chain:
    """One trial of a population and its bookkeeping (what a trainer keeps for a lone trial)."""

    trial: optuna.Trial
    key: int
    previous_run: str | None
    values: dict[str, Any] = field(default_factory=dict)  # the sampled values
    cfg: TrainConfig = field(default_factory=TrainConfig)
    resolved: dict[str, Any] = field(default_factory=dict)
    run: ClientRun | None = None
    epoch: int = 0
    step: int = 0  # over all attempts
    accepted: int = 0  # over all attempts, at the last epoch's end
    elapsed: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    best_model: dict[str, Tensor] | None = None
    weights: list[Tensor] | None = None  # from the checkpoint, until the population starts
    state: TrialState | None = None  # set when the chain has left

    @property
    def folder(self) -> Path:
        return Path(str(self.cfg.trainer.checkpoint_dir))

    def load(self) -> None:
        """Continue from this trial's checkpoint (``last.pt``), if it has one."""
        state = load_latest_checkpoint(self.folder / CHECKPOINT_NAME)
        if state is None:
            return
        population = state["engine"]["population"]
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.accepted = int(population["n_accepted"][0])
        self.elapsed, self.history = state["elapsed"], state["history"]
        self.best, self.best_model = state["best_metric"], state["best_model"]
        self.weights = _mlp_weights(state["model"])

    def save(self, pop: Population, k: int, model: dict[str, Tensor]) -> None:
        """Write the trial's checkpoint from chain ``k`` of ``pop`` (``model``: its exported
        state dict): the state a lone ``TrainerMCMC`` of this trial would hold at this epoch."""
        save_checkpoint({
            "trainer": TrainerMCMC.name, "epoch": self.epoch, "elapsed": self.elapsed,
            "history": self.history, "best_metric": self.best, "best_model": self.best_model,
            "config": mask_config(self.resolved), "step": self.step, "model": model,
            "replicas": [],
            "engine": {"step": self.step, "population": pop.chain_state(k), "tempering": None},
            "rng": {"torch": torch.get_rng_state()}}, self.folder / CHECKPOINT_NAME)

    def end_epoch(self, metrics: dict[str, float], pop: Population, k: int) -> None:
        """Record an epoch of chain ``k`` of ``pop``, keep the best epoch's weights, checkpoint
        and log it."""
        self.epoch, self.step, self.elapsed = (int(metrics["epoch"]), int(metrics["step"]),
                                               metrics["wall_time"])
        self.accepted = int(pop.n_accepted[k])
        model = pop.export(k).state_dict()
        if improves_best(metrics, self.best):
            self.best, self.best_model = best_entry(metrics), model
        self.history.append(metrics)
        with phase("checkpoint"):
            self.save(pop, k, model)
        if self.run is not None:
            with phase("mlflow_log"):
                self.run.log_metrics(epoch_metrics(metrics), step=self.epoch)

    def final_metrics(self) -> dict[str, Any]:
        """The last epoch's metrics plus ``best_*`` (as ``BaseTrainer.final_metrics``)."""
        return final_metrics(self.history, self.best)

    def leave(self, state: TrialState, status: str, tags: dict[str, Any]) -> None:
        """The trial has been told ``state``: close its run with ``status`` and ``tags``."""
        self.state = state
        if self.run is not None:
            with phase("mlflow_close"):
                self.run.set_tags(tags)
                self.run.close(status)


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
class Group:
    """Chains at one step stepped as one :class:`~mcmc_core.population.Population`
    (``chains[k]`` is its chain ``k``, whose schedules are ``schedules``' chain ``k``)."""

    pop: Population
    chains: list[Chain]
    schedules: ChainSchedules

    def run(self, n_steps: int) -> None:
        """Advance every chain ``n_steps`` steps along its own schedules."""
        run_scheduled(self.pop, self.schedules, n_steps)

    def drop_finished(self) -> None:
        """The chains that have left the sweep leave the batch too."""
        kept = [k for k, c in enumerate(self.chains) if c.state is None]
        if kept and len(kept) < len(self.chains):
            self.pop.keep(kept)
            self.schedules.keep(kept)
        self.chains = [self.chains[k] for k in kept]


def build_groups(chains: list[Chain], data: DataSplits, steps_per_epoch: int) -> list[Group]:
    """The chains as populations of one step and similar flip counts (:func:`flip_groups`),
    each chain as a lone ``TrainerMCMC`` of its trial starts or resumes it: start weights and
    stream from the trial's ``seed``, or weights, step and acceptances from its checkpoint."""
    cfg = chains[0].cfg
    device = resolve_device(cfg.device)
    # The start weights do not depend on output_scale. Built at scale 1, whose logits stay
    # finite for build()'s check of the stacked layers, then stacked at the chains' own scale
    # (a huge one makes the chains diverge, as a lone trial's does: they fail with that error).
    net = StackedMLP.build(data.train.inputs.shape[1:], cfg.model.hidden, data.n_classes,
                           [c.cfg.seed for c in chains], device=device)
    for k, c in enumerate(chains):
        for layer, w in zip(net.weights, c.weights or []):
            layer[k] = w.to(device)
        c.weights = None
    # The stream and energy-subset seeds a lone trial's chain gets (TrainerMCMC's child_seeds).
    energy_set = EnergySet(data.train, samples=cfg.sampler.energy_samples,
                           seed=child_seeds(cfg.seed, 3)[-1], device=device)
    numels = [w[0].numel() for w in net.weights]
    groups = []
    for step in sorted({c.step for c in chains}):
        at_step = [k for k, c in enumerate(chains) if c.step == step]
        flips = [sum(flip_count(chains[k].cfg.sampler.flip_ratio, n) for n in numels)
                 for k in at_step]
        for part in flip_groups(flips):
            index = [at_step[i] for i in part]
            members = [chains[k] for k in index]
            groups.append(_group(members, net, torch.tensor(index, device=device), energy_set,
                                 step, steps_per_epoch))
    return groups


def _group(members: list[Chain], net: StackedMLP, index: Tensor, energy_set: EnergySet,
           step: int, steps_per_epoch: int) -> Group:
    cfg, s = members[0].cfg, members[0].cfg.sampler
    schedules = ChainSchedules([c.cfg.sampler.temperature for c in members],
                               [c.cfg.sampler.flip_ratio for c in members],
                               [c.cfg.schedule for c in members],
                               [c.cfg.flip_schedule for c in members],
                               epochs=cfg.trainer.epochs, steps_per_epoch=steps_per_epoch)
    pop = Population(
        StackedMLP([w[index] for w in net.weights], net.input_shape, cfg.model.output_scale),
        energy_set, temperature=[c.cfg.sampler.temperature for c in members],
        flip_ratio=schedules.flip_ratios(step),
        seeds=[child_seeds(c.cfg.seed, 3)[0] for c in members], acceptance=s.acceptance,
        proposal=s.proposal, boltzmann=s.boltzmann, ids=[c.trial.number for c in members],
        schedule=schedules.temperatures)
    pop.resume_at(step, [c.accepted for c in members])
    return Group(pop, members, schedules)


def measure(pop: Population, data: DataSplits, batch_size: int) -> dict[str, list[float]]:
    """Every chain's energy, acceptances, and loss and accuracy on each
    split: ``{name: one value per chain}``."""
    columns = {"energy": pop.energies.tolist(), "accepted": pop.n_accepted.tolist()}
    for split in ("train", "val", "test"):
        loss, accuracy = pop.evaluate(getattr(data, split), batch_size)
        columns[f"{split}_loss"], columns[f"{split}_accuracy"] = loss.tolist(), accuracy.tolist()
    return columns
