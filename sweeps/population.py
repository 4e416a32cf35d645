"""Population trials: a worker's trials run as one batched population of chains
(:class:`~mcmc_core.population.Population`), each reported, pruned, checkpointed and logged on
its own. With ``study.population=1`` a trial whose config a population can run (a binary MLP
on the full energy) runs here too, as a population of one: the same code for 1..K trials.

The trials of a population share their training config except a chain's own values
(:data:`CHAIN_KEYS`: its temperature, flip ratio, seed and both schedules, any of the five
schedules each). Each epoch (``trainer.steps_per_epoch`` steps of every chain) all chains are
evaluated at once; then each trial gets its epoch's metrics in its own MLflow child run
(:class:`~sweeps.client_run.ClientRun`: several are open in one process), a checkpoint, and an
Optuna report; a diverged, pruned or finished chain leaves the batch, the others go on. Chains
are stepped in groups of one step and similar flip counts (:func:`~sweeps.chains.build_groups`);
a chain's steps do not depend on the chains it is batched with.

Seeds and resume: a chain is the chain a lone ``TrainerMCMC`` of its trial runs (start weights,
stream and energy subset from the trial's ``seed``), and every epoch it writes that trainer's
checkpoint (``last.pt``) of itself. A retried trial continues at its checkpoint's step, in a
population of the chains at that step: bit-identically to an uninterrupted run, whatever the
population sizes before and after.
"""
from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from torch import nn

from mcmc_core._validation import ConfigError, check, violation
from mcmc_core.config import TrainConfig
from mcmc_core.population import StackedMLP
from sweeps.batch_writes import report_values, set_user_attrs
from sweeps.chains import SCORES, Chain, Group, build_groups, measure
from sweeps.config import ParamSpec
from sweeps.phases import phase
from sweeps.snapshot import prune_decisions
from sweeps.study import retry_key
from sweeps.client_run import ClientRun
from sweeps.tracking import OBJECTIVE, RUN_ID_FILE, closing_metrics
from sweeps.trial import (
    Interrupted,
    TrialContext,
    attempt_attrs,
    best_value,
    check_finite,
    fail,
    interrupt,
    link_tags,
    record_final,
    record_job,
    run_tags,
    run_trial,
    trial_config,
)

__all__ = ["CHAIN_KEYS", "is_chain_key", "population_errors", "run_population", "run_trials"]

#: Config keys in which the trials of one population may differ: a chain's own values (a key
#: or every key under it).
CHAIN_KEYS = ("sampler.temperature", "sampler.flip_ratio", "seed", "schedule", "flip_schedule")
#: Keys :func:`~sweeps.trial.trial_config` sets per trial (folders, names).
_PER_TRIAL = ("trainer.checkpoint_dir", "tracking.run_name")


def is_chain_key(key: str) -> bool:
    """Whether the trials of a population may differ in config ``key``."""
    return any(key == c or key.startswith(f"{c}.") for c in CHAIN_KEYS)


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
            ("sampler.incremental", cfg.sampler.incremental, True, "true"),
            ("sampler.n_replicas", cfg.sampler.n_replicas, 1, "1 (no parallel tempering)"),
            ("sampler.coupled", cfg.sampler.coupled, False, "false")):
        check(errors, value == allowed, key, value, f"{shown} {when}")
    if size == 1:
        return errors
    for name, spec in search.items():
        check(errors, is_chain_key(spec.key), f"search.{name}.key", spec.key,
              f"one of {', '.join(CHAIN_KEYS)} (or a key under one) {when} (the values a "
              "chain has of its own)")
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


def run_trials(study: optuna.Study, trials: list[optuna.Trial],
               ctx: TrialContext) -> list[TrialState]:
    """Run a worker's asked ``trials`` to their ends: as one population
    (:func:`run_population`), or, for a lone trial whose config a population cannot run (a
    CNN, the mini-batch energy, parallel tempering, ...), by its trainer
    (:func:`~sweeps.trial.run_trial`)."""
    if len(trials) == 1:
        try:
            cfg, _ = trial_config(ctx, ctx.space.suggest(trials[0]), trials[0].number,
                                  trials[0].number)
            alone = bool(population_errors(cfg, {}, 1))
        except Exception:  # noqa: BLE001 -- run_trial fails the trial with this error
            alone = True
        if alone:
            return [run_trial(study, trials[0], ctx)]
    return run_population(study, trials, ctx)


def run_population(study: optuna.Study, trials: list[optuna.Trial],
                   ctx: TrialContext) -> list[TrialState]:
    """Run ``trials`` as one population to their ends and tell the study; returns their final
    states, in order. Each ends as :func:`~sweeps.trial.run_trial` ends a trial; an exception
    fails every trial still running (interrupted ones are queued for a retry)."""
    attempts = start_attempts(study, trials, ctx)
    chains = [Chain(t, *attempt) for t, attempt in zip(trials, attempts)]
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


def start_attempts(study: optuna.Study, trials: list[optuna.Trial],
                   ctx: TrialContext) -> list[tuple[int, str | None]]:
    """:func:`~sweeps.trial.start_attempt` of every trial, from one read of the study and in
    one transaction."""
    stored = {t._trial_id: t for t in study.get_trials(deepcopy=False)}
    set_user_attrs([(t, attempt_attrs(ctx)) for t in trials])
    return [(retry_key(stored[t._trial_id]), stored[t._trial_id].user_attrs.get("mlflow_run_id"))
            for t in trials]


def _prepare(chains: list[Chain], ctx: TrialContext) -> None:
    """Sample and check the trials' configs, load their checkpoints, open their runs and
    re-report the epochs of earlier attempts."""
    with phase("config"):
        for c in chains:
            c.values = ctx.space.suggest(c.trial)
            c.cfg, c.resolved = trial_config(ctx, c.values, c.key, c.trial.number)
            record_job(ctx, c.trial, c.values, c.resolved)
    errors = population_errors(chains[0].cfg, ctx.space.specs, len(chains))
    if len({_shared_part(c.resolved) for c in chains}) > 1:
        errors.append(f"trials {[c.trial.number for c in chains]} differ in more than "
                      f"{', '.join(CHAIN_KEYS)}: they cannot share a population")
    if errors:
        raise ConfigError(errors)
    for c in chains:
        c.load()
        if c.cfg.tracking.enabled:
            with phase("mlflow_open"):
                c.run = ClientRun(c.cfg.tracking, c.resolved, parent_run_id=ctx.parent_run_id,
                                  tags=run_tags(ctx, c.trial, c.key),
                                  params=ctx.space.by_key(c.values))
                run_id = c.run.open(c.folder / RUN_ID_FILE, resume=c.epoch > 0,
                                    history=c.history)
                c.run.set_tags(link_tags(run_id, c.previous_run))
        for m in c.history:  # for the pruner, as a resumed lone trial does
            c.trial.report(float(m[ctx.metric]), int(m["epoch"]))
    set_user_attrs([(c.trial, {"mlflow_run_id": c.run.run_id}) for c in chains
                    if c.run is not None])


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
    groups = build_groups(live, data, steps) if live else []
    while groups:
        start = time.perf_counter()
        with phase("step"):
            for g in groups:
                g.run(steps)
            synchronize(groups[0].pop.net.device)
        seconds = time.perf_counter() - start
        with phase("evaluate"):
            measured = [measure(g.pop, data, cfg.trainer.eval_batch_size) for g in groups]
        epoch_time = time.perf_counter() - start
        where: dict[int, tuple[Group, int]] = {}
        for g, columns in zip(groups, measured):
            temperatures, flip_ratios = g.schedules.reported(g.pop.n_steps)
            for k, c in enumerate(g.chains):
                where[c.trial.number] = (g, k)
                metrics = {"step": float(c.step + steps), "energy": columns["energy"][k],
                           "acceptance_rate": (columns["accepted"][k] - c.accepted) / steps,
                           "temperature": temperatures[k], "flip_ratio": flip_ratios[k],
                           "steps_per_s": steps / seconds if seconds > 0 else float("inf"),
                           **{m: columns[m][k] for m in SCORES},
                           "epoch": c.epoch + 1, "epoch_time": epoch_time,
                           "wall_time": c.elapsed + epoch_time}
                c.end_epoch(metrics, g.pop, k)
        live = sorted((c for g in groups for c in g.chains), key=lambda c: c.trial.number)
        for c in live:  # a diverged chain fails alone
            try:
                check_finite(c.history[-1], ctx.metric, c.epoch)
            except FloatingPointError as err:
                c.leave(*fail(study, c.trial, err))
        with phase("optuna_report"):
            _report(study, [c for c in live if c.state is None], ctx.metric)
        running = [c for c in live if c.state is None]
        # Every pruning decision is taken before any chain is told: a chain that completes
        # now must not count against the last epoch of the others in its batch.
        with phase("optuna_prune"):
            pruned = prune_decisions(study, [c.trial for c in running])
        for c in running:
            g, k = where[c.trial.number]
            try:
                if c.trial.number in pruned:
                    with phase("optuna_tell"):
                        study.tell(c.trial, state=TrialState.PRUNED)
                    if c.run is not None:
                        with phase("mlflow_close"):
                            c.run.log_model(g.pop.export(k))
                    c.leave(TrialState.PRUNED, "FINISHED", {
                        "optuna.state": "PRUNED", "optuna.pruned": f"pruned at epoch {c.epoch}"})
                elif c.epoch >= epochs:
                    _complete(study, c, ctx, g.pop.export(k))
            except UpdateFinishedTrialError as err:  # taken over meanwhile: it leaves
                c.leave(*fail(study, c.trial, err))
        # Asked to stop: the chains that finished this epoch stay finished, the others are
        # queued to continue from this epoch's checkpoint.
        if any(c.state is None for c in running) and ctx.stop():
            raise Interrupted(f"interrupted after epoch {live[0].epoch}")
        for g in groups:
            g.drop_finished()
        groups = [g for g in groups if g.chains]


def _report(study: optuna.Study, chains: list[Chain], metric: str) -> None:
    """Report each chain's last epoch to its trial, in one transaction per epoch; a trial that
    another process has finished meanwhile (it took the trial for dead: stale heartbeat, and
    queued its retry) leaves (see :func:`~sweeps.trial.fail`)."""
    try:
        for epoch in sorted({c.epoch for c in chains}):
            at = [c for c in chains if c.epoch == epoch]
            report_values([c.trial for c in at], [float(c.history[-1][metric]) for c in at],
                          epoch)
    except UpdateFinishedTrialError:  # which one: trial by trial (reported ones are skipped)
        for c in chains:
            try:
                c.trial.report(float(c.history[-1][metric]), c.epoch)
            except UpdateFinishedTrialError as err:
                c.leave(*fail(study, c.trial, err))


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA steps are launched asynchronously), so that
    the epoch's step time is the steps'."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _complete(study: optuna.Study, c: Chain, ctx: TrialContext, model: nn.Module) -> None:
    """Log the closing metrics and the model, and tell the trial COMPLETE."""
    final = c.final_metrics()
    value = best_value(c.history, ctx.metric, study.direction)
    if c.run is not None:
        with phase("mlflow_close"):
            c.run.log_metrics(closing_metrics(final))
            c.run.log_model(model)
    with phase("optuna_tell"):
        record_final(c.trial, final, c.resolved)
        study.tell(c.trial, value)
    if c.run is not None:
        with phase("mlflow_close"):
            c.run.log_metrics({OBJECTIVE: value})
    c.leave(TrialState.COMPLETE, "FINISHED", {"optuna.state": "COMPLETE", "optuna.value": value})
