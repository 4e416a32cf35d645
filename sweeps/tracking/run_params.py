"""What a run's params and its searched values look like in MLflow: a few params a user filters
by (:data:`KEY_PARAMS`) plus the searched keys, as short numbers (``7.68e-05``, not
``7.679700455376728e-05``: MLflow shows params cut and sorts them as text), and the searched
numbers again as metrics of the same names (exact, sorted and plotted as numbers); a key
searched on a log scale also as ``log10 <key>``, the axis MLflow's parallel coordinates draw it
on (they have no log axes).

Every other config key is in the run's ``config.yaml`` artifact (secrets masked).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sweeps.tracking.mlflow_run import flatten, masked_tags

if TYPE_CHECKING:
    from sweeps.sweeper.config import ParamSpec

__all__ = ["KEY_PARAMS", "log_keys", "log_metric_name", "run_params", "search_widths",
           "searched_metrics", "short_number"]

#: Config keys every run logs as params: what a user filters runs by (``params.model.name =
#: 'cnn'``) and what makes a run (its trainer, data, initial temperature and flip ratio).
KEY_PARAMS = ("model.name", "dataset.name", "dataset.binarize", "trainer.name", "trainer.epochs",
              "trainer.steps_per_epoch", "sampler.temperature", "sampler.flip_ratio",
              "sampler.acceptance", "sampler.proposal", "sampler.energy", "schedule.name",
              "flip_schedule.name", "seed")


def short_number(value: Any, width: float | None = None) -> str:
    """``value`` as a param: a float with 3 significant digits (``7.68e-05``, ``0.002``,
    ``30``), or with 3 significant digits of ``width`` (a linear search range's
    ``high - low``: ``0.99953`` in ``[0.999, 0.99995]``, not ``1``); anything else as ``str``."""
    if not isinstance(value, float) or not math.isfinite(value) or value == 0:
        return str(value)
    digits = 3
    if width:
        digits = max(3, math.floor(math.log10(abs(value))) - math.floor(math.log10(width)) + 3)
    return f"{value:.{digits}g}"


def run_params(config: dict[str, Any], searched: dict[str, Any],
               widths: dict[str, float] | None = None) -> dict[str, str]:
    """The params of a new run: the :data:`KEY_PARAMS` of its resolved ``config``, then its
    ``searched`` values by config key (:meth:`~sweeps.study.space.SearchSpace.by_key`), as
    :func:`short_number` (``widths``: the linear float ranges by key); secrets masked."""
    flat = flatten(config)
    params = {k: flat[k] for k in KEY_PARAMS if k in flat}
    params.update(searched)
    return masked_tags({k: short_number(v, (widths or {}).get(k)) for k, v in params.items()})


def search_widths(specs: Iterable[ParamSpec]) -> dict[str, float]:
    """``high - low`` of each linear float search entry, by config key (see
    :func:`short_number`)."""
    return {s.key: float(s.high) - float(s.low) for s in specs
            if s.type == "float" and not s.log and s.low is not None and s.high is not None
            and s.high > s.low}


def log_keys(specs: Iterable[ParamSpec]) -> frozenset[str]:
    """The config keys of the numeric search entries sampled on a log scale."""
    return frozenset(s.key for s in specs if s.type in ("float", "int") and s.log)


def log_metric_name(key: str) -> str:
    """The metric holding ``log10`` of a log-searched key's value (``log10 sampler.temperature``)."""
    return f"log10 {key}"


def searched_metrics(searched: dict[str, Any],
                     logs: Iterable[str] = ()) -> dict[str, float]:
    """The numeric ``searched`` values as metrics of the same names (exact values), and for the
    keys in ``logs`` (:func:`log_keys`) their positive values' ``log10`` too."""
    metrics = {k: float(v) for k, v in searched.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics.update({log_metric_name(k): math.log10(metrics[k]) for k in logs
                    if metrics.get(k, 0) > 0})
    return metrics
