"""Population trials (``study.population`` > 1): a worker's trials run as one batched
:class:`~mcmc_core.population.Population` of chains, each reported, pruned, checkpointed and
logged on its own, so that it looks the same in Optuna and MLflow as a trial run alone.

The trials of a population share their training config except a chain's own values
(:data:`CHAIN_KEYS`). Each epoch (``trainer.steps_per_epoch`` steps of every chain) all chains
are evaluated at once; then each trial, in turn, gets its epoch's metrics in its own MLflow child
run (:class:`~sweeps.tracking.ClientRun`: several are open in one process), a checkpoint, and an
Optuna report; a diverged, pruned or finished chain leaves the batch, the others go on.

Seeds: a chain starts from the weights a lone trial starts from (``build_model`` seeded with the
trial's ``seed``) and draws from a random stream keyed by :func:`chain_seed` of that seed and its
retry key: distinct for every trial, the same for its retries.

Resume: every epoch each chain writes ``chain.pt`` in its trial's checkpoint folder (atomically:
weights, step and acceptance counts, history, best epoch). The chains of a population share one
step counter, so a retried chain joins a new population at its step 0: its elapsed steps are
folded into its start temperature (``T0 * cooling_rate**steps``, floored: the same schedule from
there on) and its stream is keyed by ``(seed, key, steps)``. It continues validly (same target,
schedule and proposals) but not bit-identically to an uninterrupted run.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from torch import Tensor, nn

from mcmc_core._validation import ConfigError, check, violation
from mcmc_core.config import TrainConfig
from mcmc_core.data import DataSplits
from mcmc_core.population import EnergySet, Population, StackedMLP
from mcmc_core.trainers import load_checkpoint, resolve_device, save_checkpoint
from mcmc_core.trainers._mcmc import child_seeds
from sweeps.config import ParamSpec
from sweeps.tracking import RUN_ID_FILE, ClientRun, closing_metrics, epoch_metrics
from sweeps.trial import (
    Interrupted,
    TrialContext,
    best_value,
    check_finite,
    fail,
    interrupt,
    link_run,
    record_final,
    run_tags,
    start_attempt,
    trial_config,
)

__all__ = ["CHAIN_KEYS", "chain_seed", "population_errors", "run_population"]

#: Config keys in which the trials of one population may differ: a chain's own values.
CHAIN_KEYS = ("sampler.temperature", "schedule.cooling_rate", "sampler.flip_ratio", "seed")
#: Keys :func:`~sweeps.trial.trial_config` sets per trial (folders, names).
_PER_TRIAL = ("trainer.checkpoint_dir", "tracking.run_name")
CHECKPOINT_NAME = "chain.pt"


def population_errors(cfg: TrainConfig, search: dict[str, ParamSpec], size: int) -> list[str]:
    """Why the trials of ``cfg`` and ``search`` cannot run in populations of ``size``: one line
    per violation (empty when they can)."""
    errors: list[str] = []
    when = f"with study.population={size}"
    for key, value, allowed, shown in (
            ("trainer.name", cfg.trainer.name, "mcmc", "mcmc"),
            ("model.name", cfg.model.name, "mlp", "mlp"),
            ("model.keep_activations", cfg.model.keep_activations, False, "false"),
            ("sampler.energy", cfg.sampler.energy, "full", "full"),
            ("sampler.n_replicas", cfg.sampler.n_replicas, 1, "1 (no parallel tempering)"),
            ("sampler.coupled", cfg.sampler.coupled, False, "false"),
            ("schedule.name", cfg.schedule.name, "exponential", "exponential"),
            ("schedule.unit", cfg.schedule.unit, "steps", "steps"),
            ("flip_schedule.name", cfg.flip_schedule.name, "constant", "constant")):
        check(errors, value == allowed, key, value, f"{shown} {when}")
    for name, spec in search.items():
        check(errors, spec.key in CHAIN_KEYS, f"search.{name}.key", spec.key,
              f"one of {', '.join(CHAIN_KEYS)} {when} (the values a chain has of its own)")
    if cfg.sampler.energy_samples is not None and any(s.key == "seed" for s in search.values()):
        errors.append(violation("sampler.energy_samples", cfg.sampler.energy_samples,
                                f"null when seed is searched {when} (the chains share one "
                                "energy set)"))
    return errors


def chain_seed(seed: int, key: int, step: int = 0) -> int:
    """The random-stream seed of the chain of trial ``key`` (the first trial of its retry chain)
    starting at ``step``, derived from the trial's ``seed`` as ``child_seeds`` derives a lone
    trial's (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed, key, step]).generate_state(1, np.uint64)[0]) >> 1


def _shared_part(resolved: dict[str, Any]) -> str:
    """``resolved`` without :data:`CHAIN_KEYS` and per-trial keys: equal for trials that may
    share a population."""
    plain = copy.deepcopy(resolved)
    for dotted in (*CHAIN_KEYS, *_PER_TRIAL):
        *parents, leaf = dotted.split(".")
        node = plain
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return json.dumps(plain, sort_keys=True, default=str)


@dataclass
class _Chain:
    """One trial of a population and its bookkeeping (what a trainer keeps for a lone trial)."""

    trial: optuna.Trial
    key: int
    previous_run: str | None
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
        """Continue from this trial's checkpoint, if it has one."""
        path = self.folder / CHECKPOINT_NAME
        if not path.exists():
            return
        state = load_checkpoint(path)
        self.epoch, self.step, self.accepted = state["epoch"], state["step"], state["accepted"]
        self.elapsed, self.history = state["elapsed"], state["history"]
        self.best, self.best_weights = state["best_metric"], state["best_weights"]
        self.weights = state["weights"]

    def save(self, weights: list[Tensor]) -> None:
        save_checkpoint({"epoch": self.epoch, "step": self.step, "accepted": self.accepted,
                         "elapsed": self.elapsed, "history": self.history,
                         "best_metric": self.best, "best_weights": self.best_weights,
                         "weights": weights, "config": self.resolved},
                        self.folder / CHECKPOINT_NAME)

    def final_metrics(self) -> dict[str, Any]:
        """The last epoch's metrics plus ``best_*`` (as ``BaseTrainer.final_metrics``)."""
        return {**self.history[-1], **{f"best_{k}": v for k, v in self.best.items()}}

    def leave(self, state: TrialState, status: str, tags: dict[str, Any]) -> None:
        """The trial has been told ``state``: close its run with ``status`` and ``tags``."""
        self.state = state
        if self.run is not None:
            self.run.set_tags(tags)
            self.run.close(status)


def run_population(study: optuna.Study, trials: list[optuna.Trial],
                   ctx: TrialContext) -> list[TrialState]:
    """Run ``trials`` as one population to their ends and tell the study; returns their final
    states, in order. Each ends as :func:`~sweeps.trial.run_trial` ends a trial; an exception
    fails every trial still running (interrupted ones are queued for a retry)."""
    chains = [_Chain(t, *start_attempt(study, t, ctx)) for t in trials]
    try:
        _prepare(chains, ctx)
        _run(study, chains, ctx)
    except (Interrupted, KeyboardInterrupt):
        for c in chains:
            if c.state is None:
                c.leave(TrialState.FAIL, *interrupt(study, c.trial))
    except Exception as err:  # noqa: BLE001 -- the population fails; the sweep goes on
        for c in chains:
            if c.state is None:
                c.leave(*fail(study, c.trial, err))
    return [c.state or TrialState.FAIL for c in chains]


def _prepare(chains: list[_Chain], ctx: TrialContext) -> None:
    """Sample and check the trials' configs, load their checkpoints, open their runs and
    re-report the epochs of earlier attempts."""
    for c in chains:
        c.values = ctx.space.suggest(c.trial)
        c.cfg, c.resolved = trial_config(ctx, c.values, c.key, c.trial.number)
    errors = population_errors(chains[0].cfg, ctx.space.specs, len(chains))
    if len({_shared_part(c.resolved) for c in chains}) > 1:
        errors.append(f"trials {[c.trial.number for c in chains]} differ in more than "
                      f"{', '.join(CHAIN_KEYS)}: they cannot share a population")
    if errors:
        raise ConfigError(errors)
    for c in chains:
        c.load()
        if c.cfg.tracking.enabled:
            c.run = ClientRun(c.cfg.tracking, c.resolved, parent_run_id=ctx.parent_run_id,
                              tags=run_tags(ctx, c.trial, c.key), params=c.values)
            run_id = c.run.open(c.folder / RUN_ID_FILE, resume=c.epoch > 0)
            c.run.set_tags(link_run(c.trial, run_id, c.previous_run))
        for m in c.history:  # for the pruner, as a resumed lone trial does
            c.trial.report(float(m[ctx.metric]), int(m["epoch"]))


def _build(chains: list[_Chain], data: DataSplits) -> Population:
    """The population of ``chains``: start weights and streams from their seeds, or from their
    checkpoints (elapsed steps folded into the start temperature)."""
    cfg = chains[0].cfg
    device = resolve_device(cfg.device)
    # The start weights do not depend on output_scale. Built at scale 1, whose logits stay
    # finite for build()'s check of the stacked layers, then stacked at the chains' own scale
    # (a huge one makes the chains diverge, as a lone trial's does: they fail with that error).
    net = StackedMLP.build(data.train.inputs.shape[1:], cfg.model.hidden, data.n_classes,
                           [c.cfg.seed for c in chains], device=device)
    net = StackedMLP(net.weights, net.input_shape, cfg.model.output_scale)
    for k, c in enumerate(chains):
        for layer, w in zip(net.weights, c.weights or []):
            layer[k] = w.to(device)
        c.weights = None
    # The energy subset a lone trial's chain gets (FullEnergy's seed in TrainerMCMC).
    energy_set = EnergySet(data.train, samples=cfg.sampler.energy_samples,
                           seed=child_seeds(cfg.seed, 3)[-1], device=device)
    floors = [c.cfg.schedule.min_temperature for c in chains]
    rates = [c.cfg.schedule.cooling_rate for c in chains]
    start = [max(floor, c.cfg.sampler.temperature * rate**c.step)
             for c, rate, floor in zip(chains, rates, floors)]
    s = cfg.sampler
    return Population(net, energy_set, temperature=start, cooling_rate=rates,
                      min_temperature=floors, flip_ratio=[c.cfg.sampler.flip_ratio for c in chains],
                      seeds=[chain_seed(c.cfg.seed, c.key, c.step) for c in chains],
                      acceptance=s.acceptance, proposal=s.proposal, boltzmann=s.boltzmann,
                      ids=[c.trial.number for c in chains])


def _run(study: optuna.Study, chains: list[_Chain], ctx: TrialContext) -> None:
    """The epoch loop: step, evaluate, then log, checkpoint, report, prune or finish each chain."""
    cfg = chains[0].cfg
    data = ctx.data(cfg)
    epochs = cfg.trainer.epochs
    steps = cfg.trainer.steps_per_epoch or math.ceil(len(data.train) / cfg.sampler.batch_size)
    for c in chains:
        if c.epoch >= epochs and c.weights is not None:  # it was stopped after its last epoch
            alone = StackedMLP([w.unsqueeze(0) for w in c.weights], data.train.inputs.shape[1:],
                               c.cfg.model.output_scale)
            _complete(study, c, ctx, alone.export(0))
    live = [c for c in chains if c.state is None]
    if not live:
        return
    pop = _build(live, data)
    while live:
        start = time.perf_counter()
        pop.run(steps)
        seconds = time.perf_counter() - start
        scores = {split: [t.tolist() for t in pop.evaluate(getattr(data, split),
                                                           cfg.trainer.eval_batch_size)]
                  for split in ("train", "val", "test")}
        epoch_time = time.perf_counter() - start
        energies, accepted = pop.energies.tolist(), pop.n_accepted.tolist()
        temperatures = pop.temperatures().tolist()
        for k, c in enumerate(live):
            c.epoch, c.step, c.elapsed = c.epoch + 1, c.step + steps, c.elapsed + epoch_time
            c.accepted += accepted[k] - c.counted
            metrics = {"step": float(c.step), "energy": energies[k],
                       "acceptance_rate": (accepted[k] - c.counted) / steps,
                       "temperature": temperatures[k], "flip_ratio": c.cfg.sampler.flip_ratio,
                       "steps_per_s": steps / seconds if seconds > 0 else float("inf")}
            c.counted = accepted[k]
            for split, (loss, acc) in scores.items():
                metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = loss[k], acc[k]
            metrics.update(epoch=c.epoch, epoch_time=epoch_time, wall_time=c.elapsed)
            weights = [w[k].cpu().clone() for w in pop.net.weights]
            if not c.best or (metrics["val_accuracy"], -metrics["val_loss"]) > (
                    c.best["val_accuracy"], -c.best["val_loss"]):
                c.best = {m: metrics[m] for m in ("epoch", "val_loss", "val_accuracy",
                                                  "test_loss", "test_accuracy")}
                c.best_weights = weights
            c.history.append(metrics)
            c.save(weights)
            if c.run is not None:
                c.run.log_metrics(epoch_metrics(metrics), step=c.epoch)
        for c in live:  # as OptunaReporter, trial by trial
            try:
                check_finite(c.history[-1], ctx.metric, c.epoch)
            except FloatingPointError as err:
                c.leave(*fail(study, c.trial, err))
                continue
            c.trial.report(float(c.history[-1][ctx.metric]), c.epoch)
        if ctx.stop():
            raise Interrupted(f"interrupted after epoch {live[0].epoch}")
        for k, c in enumerate(live):
            if c.state is not None:
                continue
            if c.trial.should_prune():
                study.tell(c.trial, state=TrialState.PRUNED)
                if c.run is not None:
                    c.run.log_model(pop.export(k))
                c.leave(TrialState.PRUNED, "FINISHED", {
                    "optuna.state": "PRUNED", "optuna.pruned": f"pruned at epoch {c.epoch}"})
            elif c.epoch >= epochs:
                _complete(study, c, ctx, pop.export(k))
        kept = [k for k, c in enumerate(live) if c.state is None]
        if kept and len(kept) < len(live):
            pop.keep(kept)  # the others leave the batch
        live = [live[k] for k in kept]


def _complete(study: optuna.Study, c: _Chain, ctx: TrialContext, model: nn.Module) -> None:
    """Log the closing metrics and the model, and tell the trial COMPLETE."""
    final = c.final_metrics()
    if c.run is not None:
        c.run.log_metrics(closing_metrics(final))
        c.run.log_model(model)
    value = best_value(c.history, ctx.metric, study.direction)
    record_final(c.trial, final)
    study.tell(c.trial, value)
    c.leave(TrialState.COMPLETE, "FINISHED", {"optuna.state": "COMPLETE", "optuna.value": value})
