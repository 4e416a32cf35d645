"""A ``mcmc-train -m`` multirun in MLflow: one parent run per multirun, a child run per job.

Each job of a multirun (Hydra's BasicSweeper runs them one after another in this process) finds
or creates the multirun's parent run in its experiment, keyed by the multirun's folder
(``hydra.sweep.dir``), and logs its own run as a child of it, named from the overrides that
vary between the jobs (``sampler.flip_ratio=0.001``). When a job ends it ends the parent too,
FAILED if any job failed so far, else FINISHED; the next job opens it again. So the parent is
RUNNING while a job runs and ends with the last one, whatever stops the multirun. Outside a
multirun nothing changes: a run has no parent.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.tracking.parent_run import end_run, open_parent_run
from sweeps.tracking.mlflow_run import mlflow_client, tracking_uri
from sweeps.tracking.shield import shielded

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mcmc_core.config import TrackingConfig

__all__ = ["TAG_FAILED", "TAG_MULTIRUN_DIR", "Parent", "close_parent", "job_run_name",
           "job_parent", "swept_keys"]

#: Tags of a multirun's parent run: its folder, and that one of its jobs failed.
TAG_MULTIRUN_DIR = "mcmc_sweeps.multirun_dir"
TAG_FAILED = "mcmc_sweeps.job_failed"


@dataclasses.dataclass(frozen=True)
class Parent:
    """A multirun's parent run, as one of its jobs sees it.

    Args:
        uri: the tracking URI.
        run_id: the parent run's id.
        tracking: the job's tracking settings, ``run_name`` set from its overrides (unless the
            config names the run).
        params: the job's swept values by key (``{"sampler.flip_ratio": 0.001}``).
    """

    uri: str
    run_id: str
    tracking: TrackingConfig
    #: The job's values of the keys the multirun sweeps (params and metrics of its run).
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def _hydra_job() -> DictConfig | None:
    """The Hydra config of the running job when it is a job of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc if hc.mode == RunMode.MULTIRUN else None


def swept_keys(args: list[str]) -> set[str]:
    """The keys of the sweep overrides (``key=a,b``, ``key=range(...)``) among the command-line
    ``args``."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    known, _ = get_args_parser().parse_known_args(args)
    try:
        overrides = OverridesParser.create().parse_overrides(known.overrides)
    except HydraException:
        return set()
    return {o.key_or_group for o in overrides if o.is_sweep_override()}


def _swept_overrides(hc: DictConfig, args: list[str]) -> list[Any]:
    """The job's overrides of the keys the multirun sweeps (``args`` are the multirun's command
    line; ``hydra.sweeper.params`` count too)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept = swept_keys(args) | set((hc.sweeper.get("params") or {}).keys())
    overrides = OverridesParser.create().parse_overrides(list(hc.overrides.task))
    return [o for o in overrides if o.key_or_group in swept]


def job_run_name(hc: DictConfig, args: list[str]) -> str:
    """The run name of a multirun's job: its overrides of the keys the multirun sweeps, sorted
    and joined as in ``hydra.job.override_dirname``; else that name, else ``job <num>``."""
    lines = sorted(str(o.input_line) for o in _swept_overrides(hc, args))
    return ",".join(lines) or hc.job.override_dirname or f"job {hc.job.num}"


@shielded
def job_parent(tracking: TrackingConfig, args: list[str] | None = None) -> Parent | None:
    """In a job of a multirun: the multirun's parent run (keyed by its folder; found or created
    by :func:`sweeps.tracking.parent_run.open_parent_run`, the opener of a sweep's parent run too),
    RUNNING, and the job's tracking settings. None outside one."""
    hc = _hydra_job()
    if hc is None:
        return None
    args = sys.argv[1:] if args is None else args
    folder = Path(hc.sweep.dir).resolve()
    uri = tracking_uri(tracking)
    run_id = open_parent_run(uri, tracking.experiment, key=f"multirun:{folder}",
                             run_name=f"multirun {folder.name}",
                             tags={TAG_MULTIRUN_DIR: str(folder),
                                   "mcmc_sweeps.command": " ".join(["mcmc-train", *args])})
    name = tracking.run_name or job_run_name(hc, args)
    params = {o.key_or_group: o.value() for o in _swept_overrides(hc, args)}
    return Parent(uri, run_id, dataclasses.replace(tracking, run_name=name), params)


@shielded
def close_parent(parent: Parent, failed: bool) -> str:
    """End the parent run after a job (``failed``: that job failed): FAILED when this or an
    earlier job failed (a child run FAILED or KILLED), FINISHED otherwise; left RUNNING while a
    child still runs (a launcher running jobs in parallel). Returns the status."""
    client = mlflow_client(parent.uri)
    run = client.get_run(parent.run_id)
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.run_id}'",
                                  max_results=10_000)
    statuses = {child.info.status for child in children}
    failed = failed or TAG_FAILED in run.data.tags or bool(statuses & {"FAILED", "KILLED"})
    if "RUNNING" in statuses:
        status = "RUNNING"
        if failed:
            client.set_tag(parent.run_id, TAG_FAILED, "true")
    else:
        status = "FAILED" if failed else "FINISHED"
        end_run(parent.uri, parent.run_id, status, {TAG_FAILED: "true"} if failed else None)
    return status
