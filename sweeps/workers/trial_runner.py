"""The trial runner: a worker's asked trials, one or a population of them, run to their ends by
one trainer loop and reported to Optuna and MLflow, as Optuna's ``_run_trial`` runs a trial
(the ask and the heartbeat are the worker's, :mod:`sweeps.workers.worker`).

Every trial is a chain of one trainer: a :class:`~mcmc_core.trainers.TrainerPopulation` of
1..K chains when its config is one a population trains (:mod:`sweeps.workers.population_rules`), else its own
trainer (a CNN, the mini-batch energy, parallel tempering, the gradient baseline: a trainer of
one chain). :class:`TrialReporter` does the same each epoch for both: each trial's metrics into
its own MLflow child run (:class:`~sweeps.tracking.client_run.ClientRun`), a report to its Optuna trial,
and pruned, diverged or finished trials leave (the others go on). A trial resumes from its
checkpoint (a lone ``TrainerMCMC``'s ``last.pt``, whatever ran it): bit-identically to an
uninterrupted run, whatever the population sizes before and after.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from mcmc_core._validation import ConfigError
from mcmc_core.config import TrainConfig, build_trainer
from mcmc_core.trainers import BaseTrainer, Callback, TrainerPopulation
from mcmc_core.trainers import population_errors as trainer_errors
from sweeps.workers import timing as phases
from sweeps.study.batch_writes import report_values, set_user_attrs
from sweeps.tracking.client_run import ClientRun
from sweeps.workers.population_rules import CHAIN_KEYS, population_errors, shared_part
from sweeps.study.snapshot import prune_decisions
from sweeps.checks.disk import DiskFull, is_disk_full
from sweeps.tracking.outage import TrackingOutage
from sweeps.tracking.mlflow_run import OBJECTIVE, RUN_ID_FILE, closing_metrics
from sweeps.tracking.run_params import log_keys, search_widths
from sweeps.workers.trial_context import (
    ATTR_RUN_URL,
    Interrupted,
    TrialContext,
    best_value,
    check_finite,
    fail,
    interrupt,
    link_tags,
    record_final,
    record_job,
    run_tags,
    start_attempts,
    trial_config,
)

__all__ = ["TrialAttempt", "TrialReporter", "run_trials"]


@dataclass
class TrialAttempt:
    """One trial's attempt: its config, MLflow run and, once it has left, its state."""

    trial: optuna.Trial
    key: int  #: its checkpoint folder's trial (the first of its retry chain)
    previous_run: str | None  #: the MLflow run of the attempt it retries
    values: dict[str, Any] = field(default_factory=dict)  # the sampled values
    cfg: TrainConfig = field(default_factory=TrainConfig)
    resolved: dict[str, Any] = field(default_factory=dict)
    run: ClientRun | None = None
    state: TrialState | None = None  #: set when the trial has left

    def leave(self, state: TrialState, status: str, tags: dict[str, Any]) -> None:
        """The trial has been told ``state``: close its run with ``status`` and ``tags``."""
        self.state = state
        if self.run is not None:
            with phases.phase("mlflow_close"):
                self.run.set_tags(tags)
                self.run.close(status)


def run_trials(study: optuna.Study, trials: list[optuna.Trial],
               ctx: TrialContext) -> list[TrialState]:
    """Run a worker's asked ``trials`` to their ends and tell the study; returns their final
    states, in order.

    COMPLETE: the best epoch's metric is the value. PRUNED: the pruner stopped it. FAIL: it
    raised or diverged (the error is kept as the ``error`` user attribute and an MLflow tag; an
    exception of the trainer fails every trial still running), or it was interrupted (then a
    retry with the same parameters is queued; also when the MLflow server stayed unreachable
    past ``tracking.retry_seconds``, then :class:`~sweeps.tracking.outage.TrackingOutage` is
    raised on).
    """
    attempts = [TrialAttempt(t, *a) for t, a in zip(trials, start_attempts(study, trials, ctx))]
    reporter = TrialReporter(study, attempts, ctx)
    try:
        trainer = _trainer(attempts, ctx, reporter)
        trainer.train()
        for k, a in enumerate(attempts):
            if a.state is None:  # it had run its last epoch before this attempt
                reporter.complete(trainer, k)
    except (Interrupted, KeyboardInterrupt, TrackingOutage) as err:
        for a in attempts:
            if a.state is None:
                a.leave(TrialState.FAIL, *interrupt(study, a.trial))
        if isinstance(err, TrackingOutage):
            raise  # the worker stops: the next trials could not be tracked either
    except Exception as err:  # noqa: BLE001 -- the trials fail; the sweep goes on
        if is_disk_full(err):  # not the trials' fault: they resume once there is space
            for a in attempts:
                if a.state is None:
                    try:
                        a.leave(TrialState.FAIL, *interrupt(study, a.trial))
                    except Exception:  # noqa: BLE001 -- the storage's disk: recovered later
                        pass
            raise DiskFull(str(err).splitlines()[0] if str(err) else "disk full") from err
        for a in attempts:
            if a.state is None:
                a.leave(*fail(study, a.trial, err))
    return [a.state or TrialState.FAIL for a in attempts]


def _trainer(attempts: list[TrialAttempt], ctx: TrialContext,
             reporter: TrialReporter) -> BaseTrainer:
    """The trials' sampled and checked configs, and the trainer of their chains."""
    with phases.phase("config"):
        for a in attempts:
            a.values = ctx.space.suggest(a.trial)
            a.cfg, a.resolved = trial_config(ctx, a.values, a.key, a.trial.number)
            record_job(ctx, a.trial, a.values, a.resolved)
    cfg = attempts[0].cfg
    if len(attempts) == 1 and trainer_errors(cfg):  # its own trainer
        return build_trainer(cfg, callbacks=[reporter], config=attempts[0].resolved,
                             data=ctx.data(cfg))
    errors = population_errors(cfg, ctx.space.specs, len(attempts))
    if len({shared_part(a.resolved) for a in attempts}) > 1:
        errors.append(f"trials {[a.trial.number for a in attempts]} differ in more than "
                      f"{', '.join(CHAIN_KEYS)}: they cannot share a population")
    if errors:
        raise ConfigError(errors)
    return TrainerPopulation([a.cfg for a in attempts], ctx.data(cfg), callbacks=[reporter],
                             configs=[a.resolved for a in attempts])


class TrialReporter(Callback):
    """Reports every chain's epoch to its trial and MLflow run; prunes, fails and completes
    trials (chain ``k`` of the trainer is trial ``attempts[k]``)."""

    def __init__(self, study: optuna.Study, attempts: list[TrialAttempt],
                 ctx: TrialContext) -> None:
        self.study, self.attempts, self.ctx = study, attempts, ctx

    def on_train_start(self, trainer: BaseTrainer) -> None:
        """Open (or re-open) each trial's run and re-report the epochs of earlier attempts."""
        for k, a in enumerate(self.attempts):
            record = trainer.records[k]
            if a.cfg.tracking.enabled:
                with phases.phase("mlflow_open"):
                    a.run = ClientRun(a.cfg.tracking, a.resolved,
                                      parent_run_id=self.ctx.parent_run_id,
                                      tags=run_tags(self.ctx, a.trial, a.key),
                                      params=self.ctx.space.by_key(a.values),
                                      widths=search_widths(self.ctx.space.specs.values()),
                                      logs=log_keys(self.ctx.space.specs.values()),
                                      objective=self.ctx.metric)
                    path = trainer.checkpoint_path_of(k)
                    run_id = a.run.open(path.parent / RUN_ID_FILE if path else None,
                                        resume=record.epoch > 0, history=record.history)
                    a.run.set_tags(link_tags(run_id, a.previous_run))
            for m in record.history:  # for the pruner
                a.trial.report(float(m[self.ctx.metric]), int(m["epoch"]))
        set_user_attrs([(a.trial, {"mlflow_run_id": a.run.run_id, ATTR_RUN_URL: a.run.link})
                        for a in self.attempts if a.run is not None])

    def on_epochs_end(self, trainer: BaseTrainer, ended: dict[int, dict[str, float]]) -> None:
        for name, seconds in trainer.epoch_times.items():
            phases.add(name, seconds)
        live = sorted(ended, key=lambda k: self.attempts[k].trial.number)
        for k in live:
            a = self.attempts[k]
            if a.run is not None:
                with phases.phase("mlflow_log"):
                    a.run.log_epoch(ended[k])  # its objective: the value reported below
            try:  # a diverged chain fails alone
                check_finite(ended[k], self.ctx.metric, int(ended[k]["epoch"]))
            except FloatingPointError as err:
                self._leave(trainer, k, *fail(self.study, a.trial, err))
        with phases.phase("optuna_report"):
            self._report(trainer, [k for k in live if self.attempts[k].state is None], ended)
        running = [k for k in live if self.attempts[k].state is None]
        # Every pruning decision is taken before any trial is told: a trial that completes
        # now must not count against the last epoch of the others in its batch.
        with phases.phase("optuna_prune"):
            pruned = prune_decisions(self.study, [self.attempts[k].trial for k in running])
        for k in running:
            a = self.attempts[k]
            try:
                if a.trial.number in pruned:
                    with phases.phase("optuna_tell"):
                        self.study.tell(a.trial, state=TrialState.PRUNED)
                    if a.run is not None:  # its objective: its last reported value, logged
                        with phases.phase("mlflow_close"):
                            a.run.log_metrics(closing_metrics(trainer.records[k].final_metrics()))
                            a.run.log_model(trainer.chain_model(k))
                    self._leave(trainer, k, TrialState.PRUNED, "FINISHED", {
                        "optuna.state": "PRUNED",
                        "optuna.pruned": f"pruned at epoch {int(ended[k]['epoch'])}"})
                elif trainer.records[k].epoch >= trainer.epochs:
                    self.complete(trainer, k)
            except UpdateFinishedTrialError as err:  # taken over meanwhile: it leaves
                self._leave(trainer, k, *fail(self.study, a.trial, err))
        # Asked to stop: the trials that finished this epoch stay finished, the others are
        # queued to continue from this epoch's checkpoint.
        if any(self.attempts[k].state is None for k in running) and self.ctx.stop():
            raise Interrupted(f"interrupted after epoch {int(ended[live[0]]['epoch'])}")

    def _leave(self, trainer: BaseTrainer, k: int, state: TrialState, status: str,
               tags: dict[str, Any]) -> None:
        self.attempts[k].leave(state, status, tags)
        trainer.leave(k)

    def _report(self, trainer: BaseTrainer, chains: list[int],
                ended: dict[int, dict[str, float]]) -> None:
        """Report each chain's epoch to its trial, in one transaction per epoch number; a trial
        that another process has finished meanwhile (it took the trial for dead: stale
        heartbeat, and queued its retry) leaves (see :func:`~sweeps.workers.trial_context.fail`)."""
        metric = self.ctx.metric
        try:
            for epoch in sorted({int(ended[k]["epoch"]) for k in chains}):
                at = [k for k in chains if int(ended[k]["epoch"]) == epoch]
                report_values([self.attempts[k].trial for k in at],
                              [float(ended[k][metric]) for k in at], epoch)
        except UpdateFinishedTrialError:  # which one: trial by trial (reported ones are skipped)
            for k in chains:
                try:
                    self.attempts[k].trial.report(float(ended[k][metric]),
                                                  int(ended[k]["epoch"]))
                except UpdateFinishedTrialError as err:
                    self._leave(trainer, k, *fail(self.study, self.attempts[k].trial, err))

    def complete(self, trainer: BaseTrainer, k: int) -> None:
        """Log trial ``k``'s closing metrics and model, and tell it COMPLETE."""
        a, record = self.attempts[k], trainer.records[k]
        final = record.final_metrics()
        value = best_value(record.history, self.ctx.metric, self.study.direction)
        if a.run is not None:
            with phases.phase("mlflow_close"):
                a.run.log_metrics(closing_metrics(final))
                a.run.log_model(trainer.chain_model(k))
        with phases.phase("optuna_tell"):
            record_final(a.trial, final, a.resolved)
            self.study.tell(a.trial, value)
        if a.run is not None:  # supersedes the last epoch's reported value
            with phases.phase("mlflow_close"):
                a.run.log_metrics({OBJECTIVE: value}, step=int(record.history[-1]["epoch"]))
        self._leave(trainer, k, TrialState.COMPLETE, "FINISHED",
                    {"optuna.state": "COMPLETE", "optuna.value": value})
