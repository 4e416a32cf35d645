"""Start-up checks of a sweep whose workers run on a cluster engine (``hydra.sweeper.backend``):
the engine's library installed, its scheduler answering within seconds, and a storage every
worker can share. Each problem is one :class:`~sweeps.checks.services.Problem` line, raised
before anything is submitted.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
from urllib.parse import urlparse

from sweeps.checks.services import CONFIG, SERVICE, Problem
from sweeps.study.stores import sqlite_path
from sweeps.sweeper.settings import SWEEPER, McmcOptunaSweeperConf

__all__ = ["check_backend", "check_shared_storage", "is_this_machine"]

#: Seconds a scheduler has to answer.
ANSWER_SECONDS = 10.0


def is_this_machine(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine."""
    host = host.strip("[]")
    names = {"localhost", socket.gethostname(), socket.gethostname().split(".")[0],
             socket.getfqdn()}
    if host in names:
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
        return host in {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except (ValueError, OSError):
        return False


def check_backend(settings: McmcOptunaSweeperConf, storage_url: str) -> None:
    """Check the engine of ``settings.backend`` (nothing for ``local``).

    Raises:
        Problem: the first problem found.
    """
    if settings.backend == "slurm":
        hosts = _slurm_hosts(settings)
    elif settings.backend == "dask":
        hosts = _dask_hosts(settings)
    else:
        return
    check_shared_storage(storage_url, hosts)


def check_shared_storage(storage_url: str, hosts: list[str]) -> None:
    """Refuse an SQLite storage when a worker may run on a host other than this one.

    Raises:
        Problem: naming the storage and up to three of the other hosts.
    """
    remote = sorted(h for h in hosts if not is_this_machine(h))
    if remote and sqlite_path(storage_url) is not None:
        raise Problem(f"{SWEEPER}.storage", storage_url,
                      f"an SQLite file cannot be shared by workers on other machines "
                      f"({', '.join(remote[:3])})",
                      "use a database server they all reach, e.g. "
                      f"{SWEEPER}.storage=postgresql://user@host/db", CONFIG)


def _slurm_hosts(settings: McmcOptunaSweeperConf) -> list[str]:
    """The nodes of the workers' partition, after checking submitit, sbatch and the
    controller."""
    key = f"{SWEEPER}.backend"
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise Problem(key, "slurm", "submitit is not installed",
                      "pip install 'mcmc-sweeps[slurm]'", CONFIG) from None
    for command in ("sbatch", "squeue", "sinfo"):
        if shutil.which(command) is None:
            raise Problem(key, "slurm", f"{command} is not on the PATH",
                          "run the sweep where SLURM's commands are (a login node)", SERVICE)
    partition = settings.slurm.partition
    args = ["sinfo", "-h", "-o", "%N"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=ANSWER_SECONDS)
    except subprocess.TimeoutExpired:
        out = None
    if out is None or out.returncode:
        what = (f"the SLURM controller did not answer within {ANSWER_SECONDS:.0f} s"
                if out is None else (out.stderr.strip().splitlines() or ["sinfo failed"])[-1])
        raise Problem(key, "slurm", what, "check that slurmctld runs (scontrol ping)", SERVICE)
    if not out.stdout.strip():
        raise Problem(f"{SWEEPER}.slurm.partition", partition, "no such partition",
                      "name one that sinfo lists, or null for the default", CONFIG)
    names = subprocess.run(["scontrol", "show", "hostnames", ",".join(out.stdout.split())],
                           capture_output=True, text=True, timeout=ANSWER_SECONDS)
    return names.stdout.split() if names.returncode == 0 else out.stdout.split()


def _dask_hosts(settings: McmcOptunaSweeperConf) -> list[str]:
    """The hosts of the Dask workers, after checking distributed and the scheduler."""
    key = f"{SWEEPER}.dask"
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise Problem(f"{SWEEPER}.backend", "dask", "distributed is not installed",
                      "pip install 'mcmc-sweeps[dask]'", CONFIG) from None
    from sweeps.workers.dask_tasks import connect

    d = settings.dask
    where = (f"{key}.scheduler_file", d.scheduler_file) if d.scheduler_file else \
        (f"{key}.address", d.address)
    try:
        client = connect(d, timeout=ANSWER_SECONDS)
    except (OSError, TimeoutError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise Problem(*where, f"the Dask scheduler did not answer: {first}",
                      "start it (dask scheduler) or fix the address", SERVICE) from None
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    finally:
        client.close()
    if d.gpus_per_worker and not any(w.get("resources", {}).get("GPU", 0) >= d.gpus_per_worker
                                     for w in workers.values()):
        raise Problem(f"{key}.gpus_per_worker", d.gpus_per_worker,
                      f"no Dask worker offers the resource GPU={d.gpus_per_worker}",
                      "start workers with --resources GPU=1 (one per GPU), or set 0", CONFIG)
    return [urlparse(address).hostname or address for address in workers]
