"""Population trials (``study.population`` > 1): a worker's trials run as one batched
population of chains (:class:`~mcmc_core.population.Population`), each reported, pruned,
checkpointed and logged on its own, so that it looks the same in Optuna and MLflow as a trial
run alone (:func:`~sweeps.trial.run_trial`).

The trials of a population share their training config except a chain's own values
(:data:`CHAIN_KEYS`). Each epoch (``trainer.steps_per_epoch`` steps of every chain) all chains
are evaluated at once; then each trial gets its epoch's metrics in its own MLflow child run
(:class:`~sweeps.tracking.ClientRun`: several are open in one process), a checkpoint, and an
Optuna report; a diverged, pruned or finished chain leaves the batch, the others go on. Chains
are stepped in groups of similar flip counts (:func:`~sweeps.chains.flip_groups`); a chain's
steps do not depend on the chains it is batched with.

Seeds: a chain starts from the weights a lone trial starts from (``build_model`` seeded with the
trial's ``seed``) and draws from a random stream keyed by :func:`~sweeps.chains.chain_seed` of
that seed and its retry key: distinct for every trial, the same for its retries.

Resume: every epoch each chain writes ``chain.pt`` in its trial's checkpoint folder (atomically:
weights, step and acceptance counts, history, best epoch); a trial whose earlier attempt ran
alone continues from that attempt's ``last.pt`` instead when it went further (and a trial
retried alone continues its ``chain.pt``: :func:`~sweeps.chains.continue_chain_alone`). The
chains of a population share one step counter, so a retried chain joins a new population at
its step 0: its elapsed steps are folded into its start temperature (``T0 * cooling_rate**steps``,
floored: the same schedule from there on) and its stream is keyed by ``(seed, key, steps)``. It
continues validly (same target, schedule and proposals) but not bit-identically to an
uninterrupted run.
"""
from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from torch import nn

from mcmc_core._validation import ConfigError, check, violation
from mcmc_core.config import TrainConfig
from mcmc_core.population import StackedMLP
from sweeps.chains import SCORES, Chain, Group, build_groups, measure
from sweeps.config import ParamSpec
from sweeps.tracking import RUN_ID_FILE, ClientRun, closing_metrics
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

__all__ = ["CHAIN_KEYS", "population_errors", "run_population"]

#: Config keys in which the trials of one population may differ: a chain's own values.
CHAIN_KEYS = ("sampler.temperature", "schedule.cooling_rate", "sampler.flip_ratio", "seed")
#: Keys :func:`~sweeps.trial.trial_config` sets per trial (folders, names).
_PER_TRIAL = ("trainer.checkpoint_dir", "tracking.run_name")


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


def run_population(study: optuna.Study, trials: list[optuna.Trial],
                   ctx: TrialContext) -> list[TrialState]:
    """Run ``trials`` as one population to their ends and tell the study; returns their final
    states, in order. Each ends as :func:`~sweeps.trial.run_trial` ends a trial; an exception
    fails every trial still running (interrupted ones are queued for a retry)."""
    chains = [Chain(t, *start_attempt(study, t, ctx)) for t in trials]
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


def _prepare(chains: list[Chain], ctx: TrialContext) -> None:
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


def _run(study: optuna.Study, chains: list[Chain], ctx: TrialContext) -> None:
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
    groups = build_groups(live, data) if live else []
    while groups:
        start = time.perf_counter()
        for g in groups:
            g.pop.run(steps)
        seconds = time.perf_counter() - start
        measured = [measure(g.pop, data, cfg.trainer.eval_batch_size) for g in groups]
        epoch_time = time.perf_counter() - start
        where: dict[int, tuple[Group, int]] = {}
        for g, columns in zip(groups, measured):
            for k, c in enumerate(g.chains):
                where[c.trial.number] = (g, k)
                metrics = {"step": float(c.step + steps), "energy": columns["energy"][k],
                           "acceptance_rate": (columns["accepted"][k] - c.counted) / steps,
                           "temperature": columns["temperature"][k],
                           "flip_ratio": c.cfg.sampler.flip_ratio,
                           "steps_per_s": steps / seconds if seconds > 0 else float("inf"),
                           **{m: columns[m][k] for m in SCORES},
                           "epoch": c.epoch + 1, "epoch_time": epoch_time,
                           "wall_time": c.elapsed + epoch_time}
                c.end_epoch(metrics, int(columns["accepted"][k]),
                            [w[k].cpu().clone() for w in g.pop.net.weights])
        live = sorted((c for g in groups for c in g.chains), key=lambda c: c.trial.number)
        for c in live:  # as OptunaReporter, trial by trial
            try:
                check_finite(c.history[-1], ctx.metric, c.epoch)
                c.trial.report(float(c.history[-1][ctx.metric]), c.epoch)
            except (FloatingPointError, UpdateFinishedTrialError) as err:
                # Diverged: it fails alone. Already finished: another process took it for dead
                # (stale heartbeat) and queued its retry; it just leaves (see fail()).
                c.leave(*fail(study, c.trial, err))
        if ctx.stop():
            raise Interrupted(f"interrupted after epoch {live[0].epoch}")
        running = [c for c in live if c.state is None]
        # Every pruning decision is taken before any chain is told: a chain that completes
        # now must not count against the last epoch of the others in its batch.
        pruned = {c.trial.number for c in running if c.trial.should_prune()}
        for c in running:
            g, k = where[c.trial.number]
            try:
                if c.trial.number in pruned:
                    study.tell(c.trial, state=TrialState.PRUNED)
                    if c.run is not None:
                        c.run.log_model(g.pop.export(k))
                    c.leave(TrialState.PRUNED, "FINISHED", {
                        "optuna.state": "PRUNED", "optuna.pruned": f"pruned at epoch {c.epoch}"})
                elif c.epoch >= epochs:
                    _complete(study, c, ctx, g.pop.export(k))
            except UpdateFinishedTrialError as err:  # taken over meanwhile: it leaves
                c.leave(*fail(study, c.trial, err))
        for g in groups:
            g.drop_finished()
        groups = [g for g in groups if g.chains]


def _complete(study: optuna.Study, c: Chain, ctx: TrialContext, model: nn.Module) -> None:
    """Log the closing metrics and the model, and tell the trial COMPLETE."""
    final = c.final_metrics()
    if c.run is not None:
        c.run.log_metrics(closing_metrics(final))
        c.run.log_model(model)
    value = best_value(c.history, ctx.metric, study.direction)
    record_final(c.trial, final)
    study.tell(c.trial, value)
    c.leave(TrialState.COMPLETE, "FINISHED", {"optuna.state": "COMPLETE", "optuna.value": value})
