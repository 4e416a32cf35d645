"""Live console progress of a sweep, read from the study's storage.

A tqdm bar shows finished/total with running, pruned and failed counts and the best value so far;
every trial that finishes during this launch gets one line above the bar. When stdout is not a
terminal (a log file, a pipe, a SLURM job), there is no bar: a status line every
``hydra.sweeper.status_interval`` seconds says the same, with the time elapsed and an ETA.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from sweeps.study.space import format_value
from sweeps.study.trials import ATTR_DUPLICATE, ATTR_ERROR, count_trials

__all__ = ["SweepProgress", "format_duration", "format_trial"]

#: States that count towards ``n_trials``.
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def format_trial(t: FrozenTrial, metric: str) -> str:
    """``trial 7 COMPLETE val_accuracy=0.9167 test_accuracy=0.9100 at epoch 3 (temperature=...)``:
    the value and the test accuracy of one epoch, the best (by validation accuracy, whose
    weights the trainer keeps)."""
    params = ", ".join(f"{k}={format_value(v)}" for k, v in t.params.items())
    if t.state == TrialState.COMPLETE:
        result = f"{metric}={t.value:.4f}"
        attrs = t.user_attrs
        if "best_test_accuracy" in attrs:
            at = f"epoch {int(attrs['best_epoch'])}" if "best_epoch" in attrs else "best epoch"
            test = f"test_accuracy={attrs['best_test_accuracy']:.4f}"
            result += (f" {test} at {at}" if metric == "val_accuracy"
                       else f" (best val_accuracy at {at}: {test})")
    elif t.state == TrialState.PRUNED:
        step = t.last_step
        result = f"at epoch {step}" + (f" {metric}={t.intermediate_values[step]:.4f}"
                                       if step is not None else "")
    elif ATTR_DUPLICATE in t.user_attrs:
        result = f"not run: repeats trial {t.user_attrs[ATTR_DUPLICATE]}'s parameters"
    elif t.user_attrs.get("interrupted"):
        result = "interrupted (queued to resume)"
    else:
        result = t.user_attrs.get(ATTR_ERROR, "process died (queued to retry)")
    return f"trial {t.number:>3} {t.state.name:<8} {result} ({params})"


def _shown(value: float) -> str:
    """A best value as the lines show it: ``0.9167``, or ``-`` before any result."""
    return "-" if math.isnan(value) else f"{value:.4f}"


def format_duration(seconds: float) -> str:
    """``45s``, ``3m12s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class SweepProgress:
    """Polls the study and renders the bar; call :meth:`update` periodically, :meth:`close` once.

    Args:
        study: the study being swept.
        n_trials: the finished-trial target.
        metric: the optimised metric's name, for the lines.
        enabled: draw the bar (lines are printed either way).
        status_every: without the bar, seconds between status lines (0: none).
    """

    def __init__(self, study: optuna.Study, n_trials: int, metric: str,
                 enabled: bool = True, status_every: float = 0) -> None:
        self.study, self.n_trials, self.metric = study, n_trials, metric
        trials = study.get_trials(deepcopy=False)
        self._seen = {t.number for t in trials if t.state.is_finished()}
        self._finished_before = count_trials(trials).finished
        self.status_every = 0 if enabled else status_every
        self._started = self._last_status = time.monotonic()
        self.bar = tqdm(total=n_trials, desc="trials", unit="trial", disable=not enabled,
                        file=sys.stdout, dynamic_ncols=True, leave=True)

    def update(self) -> dict[str, Any]:
        """Refresh from storage; print newly finished trials; return the counts."""
        trials = self.study.get_trials(deepcopy=False)
        counts = count_trials(trials)
        best = self._best([t.value for t in trials
                           if t.state == TrialState.COMPLETE and t.value is not None])
        # Each line shows the count and the best value as of its trial: the trials that
        # finished since the last poll are numbered on from those seen before.
        new = [t for t in trials if t.state.is_finished() and t.number not in self._seen]
        done = counts.finished - sum(t.state in _COUNTED for t in new)
        seen_values = [t.value for t in trials if t.state == TrialState.COMPLETE
                       and t.value is not None and t.number in self._seen]
        running_best = self._best(seen_values)
        for t in sorted(new, key=lambda t: t.datetime_complete or t.datetime_start
                        or datetime.min):
            self._seen.add(t.number)
            done += t.state in _COUNTED
            if t.state == TrialState.COMPLETE and t.value is not None:
                running_best = self._best([running_best, t.value])
            self.bar.write(f"[{done}/{self.n_trials} best {_shown(running_best)}] "
                           + format_trial(t, self.metric), file=sys.stdout)
        self.bar.n = min(counts.finished, self.n_trials)
        self.bar.set_postfix(running=counts.running, pruned=counts.pruned, failed=counts.failed,
                             best=_shown(best), refresh=False)
        self.bar.refresh()
        now = time.monotonic()
        if self.status_every and now - self._last_status >= self.status_every:
            self._last_status = now
            print(self.status_line(counts, best, now - self._started), flush=True)
        return {"counts": counts, "best": best}

    def status_line(self, counts: Any, best: float, elapsed: float) -> str:
        """``status: 3m12s elapsed, 7/24 finished (2 pruned, 0 failed), 2 running, best
        val_accuracy=0.9167, ETA 8m05s`` (the ETA from this launch's pace so far)."""
        done_here = counts.finished - self._finished_before
        left = self.n_trials - counts.finished
        eta = (f", ETA {format_duration(elapsed / done_here * left)}"
               if done_here > 0 and left > 0 else "")
        result = "no result yet" if math.isnan(best) else f"best {self.metric}={best:.4f}"
        return (f"status: {format_duration(elapsed)} elapsed, {counts.finished}/{self.n_trials} "
                f"finished ({counts.pruned} pruned, {counts.failed} failed), {counts.running} "
                f"running, {result}{eta}")

    def _best(self, values: list[float]) -> float:
        """The best of ``values`` in the study's direction (NaN, meaning none, is ignored)."""
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return math.nan
        return max(values) if self.study.direction.name == "MAXIMIZE" else min(values)

    def close(self) -> None:
        self.update()
        self.bar.close()
