"""The chains of population trials (:mod:`sweeps.population`): each trial's bookkeeping and
checkpoint (:class:`Chain`), its random-stream seed, and the batched populations the chains are
stepped in, grouped by flip count (:func:`flip_groups`)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from torch import Tensor

from mcmc_core.config import TrainConfig
from mcmc_core.data import DataSplits
from mcmc_core.functional import flip_count
from mcmc_core.population import EnergySet, Population, StackedMLP
from mcmc_core.trainers import CHECKPOINT_NAME as LONE_CHECKPOINT_NAME
from mcmc_core.trainers import (
    BaseTrainer,
    TrainerMCMC,
    best_entry,
    child_seeds,
    final_metrics,
    improves_best,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from sweeps.tracking import ClientRun, epoch_metrics

__all__ = ["CHECKPOINT_NAME", "SCORES", "Chain", "Group", "build_groups", "chain_seed",
           "continue_chain_alone", "flip_groups", "measure"]

#: A population trial's checkpoint, in its checkpoint folder (a lone trial's is ``last.pt``).
CHECKPOINT_NAME = "chain.pt"
#: Per-epoch scores of every chain, on each split.
SCORES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
          "test_accuracy")


def chain_seed(seed: int, key: int, step: int = 0) -> int:
    """The random-stream seed of the chain of trial ``key`` (the first trial of its retry chain)
    starting at ``step``, derived from the trial's ``seed`` as ``child_seeds`` derives a lone
    trial's (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, key, step]).generate_state(1, np.uint64)[0]) >> 1


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
    accepted: int = 0
    elapsed: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    best_weights: list[Tensor] | None = None
    weights: list[Tensor] | None = None  # from the checkpoint, until the population starts
    counted: int = 0  # the population's acceptance count of this chain at the last epoch end
    state: TrialState | None = None  # set when the chain has left

    @property
    def folder(self) -> Path:
        return Path(str(self.cfg.trainer.checkpoint_dir))

    def load(self) -> None:
        """Continue from this trial's checkpoint, if it has one: its chain's, or that of an
        earlier attempt run alone (``study.population=1``, a trainer's ``last.pt``), whichever
        went further."""
        path, lone = self.folder / CHECKPOINT_NAME, self.folder / LONE_CHECKPOINT_NAME
        state = load_checkpoint(path) if path.exists() else None
        if lone.exists():
            lone_state = load_checkpoint(lone)
            if state is None or lone_state["step"] > state["step"]:
                self._load_lone(lone_state)
                return
        if state is None:
            return
        self.epoch, self.step, self.accepted = state["epoch"], state["step"], state["accepted"]
        self.elapsed, self.history = state["elapsed"], state["history"]
        self.best, self.best_weights = state["best_metric"], state["best_weights"]
        self.weights = state["weights"]

    def _load_lone(self, state: dict[str, Any]) -> None:
        """Continue from a lone ``TrainerMCMC``'s checkpoint of this trial: its epoch, step,
        history, best epoch and weights (a binary MLP's state dict holds its layers' weights,
        ``[out, in]``, in order); its acceptance count if its chain ran as a population."""
        population = (state.get("engine") or {}).get("population") or {}
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.accepted = int(population["n_accepted"][0]) if population else 0
        self.elapsed, self.history = state["elapsed"], state["history"]
        self.best = state["best_metric"]
        self.best_weights = None if state["best_model"] is None else _mlp_weights(
            state["best_model"])
        self.weights = _mlp_weights(state["model"])

    def save(self, weights: list[Tensor]) -> None:
        save_checkpoint({"epoch": self.epoch, "step": self.step, "accepted": self.accepted,
                         "elapsed": self.elapsed, "history": self.history,
                         "best_metric": self.best, "best_weights": self.best_weights,
                         "weights": weights, "config": self.resolved},
                        self.folder / CHECKPOINT_NAME)

    def end_epoch(self, metrics: dict[str, float], accepted: int,
                  weights: list[Tensor]) -> None:
        """Record an epoch (``accepted``: the population's count of this chain so far), keep
        the best epoch's weights, checkpoint and log it."""
        self.epoch, self.step, self.elapsed = (int(metrics["epoch"]), int(metrics["step"]),
                                               metrics["wall_time"])
        self.accepted += accepted - self.counted
        self.counted = accepted
        if improves_best(metrics, self.best):
            self.best, self.best_weights = best_entry(metrics), weights
        self.history.append(metrics)
        self.save(weights)
        if self.run is not None:
            self.run.log_metrics(epoch_metrics(metrics), step=self.epoch)

    def final_metrics(self) -> dict[str, Any]:
        """The last epoch's metrics plus ``best_*`` (as ``BaseTrainer.final_metrics``)."""
        return final_metrics(self.history, self.best)

    def leave(self, state: TrialState, status: str, tags: dict[str, Any]) -> None:
        """The trial has been told ``state``: close its run with ``status`` and ``tags``."""
        self.state = state
        if self.run is not None:
            self.run.set_tags(tags)
            self.run.close(status)


def continue_chain_alone(trainer: BaseTrainer) -> bool:
    """Let a lone trainer (``study.population=1``) continue its trial's population chain: when
    the trial's checkpoint folder holds a chain checkpoint that went further than any lone one,
    write the ``last.pt`` it resumes from (weights, epoch, step, acceptance count, history,
    best epoch; the chain's random stream goes on from the trainer's seed at that step).
    Returns whether it wrote one; False also when the trainer does not run one chain as a
    population (then it warns, and the trial starts over)."""
    path = trainer.checkpoint_path
    if path is None or not trainer.cfg.resume or not (path.parent / CHECKPOINT_NAME).exists():
        return False
    chain = load_checkpoint(path.parent / CHECKPOINT_NAME)
    if path.exists() and load_checkpoint(path)["step"] >= chain["step"]:
        return False
    # A TrainerMCMC's population engine has one; its other engines (the sampler) have none.
    engine = trainer.engine if isinstance(trainer, TrainerMCMC) else None
    population = getattr(engine, "population", None)
    if not isinstance(population, Population) or len(population) != 1:
        warnings.warn(f"{path.parent}: this trainer does not run one chain as a population, so "
                      f"it cannot continue the chain checkpoint at step {chain['step']}; the "
                      "trial starts over", stacklevel=2)
        return False
    keys = list(trainer.model.state_dict())

    def model_state(weights: list[Tensor]) -> dict[str, Tensor]:
        return {key: w.clone() for key, w in zip(keys, weights, strict=True)}

    state = trainer.state_dict()
    engine = state["engine"]
    engine["step"] = state["step"] = chain["step"]
    engine["population"].update(weights=[w.unsqueeze(0) for w in chain["weights"]],
                                n_steps=chain["step"], energies=None,  # recomputed on load
                                n_accepted=torch.tensor([chain["accepted"]]))
    state.update(epoch=chain["epoch"], elapsed=chain["elapsed"], history=chain["history"],
                 best_metric=chain["best_metric"], model=model_state(chain["weights"]),
                 best_model=None if chain["best_weights"] is None
                 else model_state(chain["best_weights"]))
    save_checkpoint(state, path)
    return True


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
    """Chains stepped as one :class:`~mcmc_core.population.Population` (``chains[k]`` is its
    chain ``k``)."""

    pop: Population
    chains: list[Chain]

    def drop_finished(self) -> None:
        """The chains that have left the sweep leave the batch too."""
        kept = [k for k, c in enumerate(self.chains) if c.state is None]
        if kept and len(kept) < len(self.chains):
            self.pop.keep(kept)
        self.chains = [self.chains[k] for k in kept]


def build_groups(chains: list[Chain], data: DataSplits) -> list[Group]:
    """The chains as populations of similar flip counts (:func:`flip_groups`): start weights and
    streams from their seeds, or from their checkpoints (elapsed steps folded into the start
    temperature)."""
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
    # The energy subset a lone trial's chain gets (FullEnergy's seed in TrainerMCMC).
    energy_set = EnergySet(data.train, samples=cfg.sampler.energy_samples,
                           seed=child_seeds(cfg.seed, 3)[-1], device=device)
    numels = [w[0].numel() for w in net.weights]
    flips = [sum(flip_count(c.cfg.sampler.flip_ratio, n) for n in numels) for c in chains]
    groups = []
    for index in flip_groups(flips):
        members = [chains[k] for k in index]
        weights = [w[torch.tensor(index, device=device)] for w in net.weights]
        s, sched = cfg.sampler, [c.cfg.schedule for c in members]
        pop = Population(
            StackedMLP(weights, net.input_shape, cfg.model.output_scale), energy_set,
            temperature=[max(sc.min_temperature, c.cfg.sampler.temperature
                             * sc.cooling_rate**c.step) for c, sc in zip(members, sched)],
            cooling_rate=[sc.cooling_rate for sc in sched],
            min_temperature=[sc.min_temperature for sc in sched],
            flip_ratio=[c.cfg.sampler.flip_ratio for c in members],
            seeds=[chain_seed(c.cfg.seed, c.key, c.step) for c in members],
            acceptance=s.acceptance, proposal=s.proposal, boltzmann=s.boltzmann,
            ids=[c.trial.number for c in members])
        groups.append(Group(pop, members))
    return groups


def measure(pop: Population, data: DataSplits, batch_size: int) -> dict[str, list[float]]:
    """Every chain's energy, acceptances, next temperature, and loss and accuracy on each
    split: ``{name: one value per chain}``."""
    columns = {"energy": pop.energies.tolist(), "accepted": pop.n_accepted.tolist(),
               "temperature": pop.temperatures().tolist()}
    for split in ("train", "val", "test"):
        loss, accuracy = pop.evaluate(getattr(data, split), batch_size)
        columns[f"{split}_loss"], columns[f"{split}_accuracy"] = loss.tolist(), accuracy.tolist()
    return columns
