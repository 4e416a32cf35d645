"""Real single-machine clusters, as session fixtures, for tests of the SLURM (submitit) and Dask
worker backends.

``slurm_cluster``: a private munged plus slurmctld and slurmd (Debian's packages, run as root) for
one node ``localhost`` with 4 CPUs and two fake GPUs; commands find it through ``SLURM_CONF``.
No accounting daemon: job states come from ``squeue`` (``sacct`` and submitit's
``job.result()``/``job.state`` do not work). ``dask_cluster``: a scheduler and two single-thread
workers ``w0``/``w1`` with ``GPU=1`` and ``CUDA_VISIBLE_DEVICES`` 0/1, on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

TIMEOUT = 120  # seconds to wait for a daemon or job event; generous for a loaded machine
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel",
                  "sinfo", "srun")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout: float = TIMEOUT) -> T:
    """Poll ``check`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen], sig: int = signal.SIGTERM, grace: float = 30) -> None:
    """Signal each process's group (they run in sessions of their own), newest first; kill
    what is still there after ``grace`` seconds."""
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _logs(folder: Path) -> str:
    return "".join(f"\n--- {p.name}:\n{p.read_text(errors='replace')[-1500:]}"
                   for p in sorted([*folder.glob("*.log"), *folder.glob("*.out")]))


# --------------------------------------------------------------------------------------- SLURM


@dataclass
class SlurmCluster:
    """A running one-node SLURM cluster: pass ``env`` to the commands that should use it."""

    conf_dir: Path
    partition: str = "debug"
    owned: bool = True  # False: started by someone else in this session; left running
    procs: list[subprocess.Popen] = field(default_factory=list)  # munged, slurmctld, slurmd

    @property
    def conf(self) -> Path:
        return self.conf_dir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """This process's environment plus ``SLURM_CONF``, the only variable the cluster needs
        (the munge socket is named in slurm.conf)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, check=check,
                              timeout=60)

    def jobs(self) -> dict[str, str]:
        """``{job id: state}`` of every job squeue still shows (array tasks one by one);
        finished jobs stay for MinJobAge (300 s)."""
        out = self.run("squeue", "-h", "-r", "-t", "all", "-o", "%i|%T").stdout
        return dict(line.split("|", 1) for line in out.split())

    def wait_job(self, job_id: str, *states: str, timeout: float = TIMEOUT) -> str:
        """Wait until the job is in one of ``states``; return that state."""
        return wait_for(lambda: (s := self.jobs().get(job_id)) in states and s,
                        f"job {job_id} to be {'/'.join(states)} (now {self.jobs().get(job_id)})",
                        timeout)

    def cancel(self, job_id: str) -> None:
        self.run("scancel", job_id)

    def requeue(self, job_id: str) -> None:
        """``scontrol requeue`` the job (retried while it is still starting), then, once it
        is PENDING again, ``StartTime=now``: a requeued job is otherwise held back a minute or
        two. Returns once the job runs again (or pends for another reason, e.g. resources)."""
        deadline = time.monotonic() + TIMEOUT
        while (out := self.run("scontrol", "requeue", job_id, check=False)).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"scontrol requeue {job_id}: {out.stderr.strip()}")
            time.sleep(0.3)
        pending_since = None

        def started() -> bool:
            nonlocal pending_since
            out = self.run("squeue", "-h", "-j", job_id, "-o", "%T|%r", check=False).stdout
            state, _, reason = out.strip().partition("|")
            if state == "PENDING" and reason == "BeginTime":
                # Not sooner: slurmd refuses a launch within the second it killed the job in
                # ("credential revoked"), and the update is lost while the job is COMPLETING.
                pending_since = pending_since or time.monotonic()
                if time.monotonic() - pending_since > 1.5:
                    self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now",
                             check=False)
            return state not in ("PENDING", "COMPLETING") or reason not in ("BeginTime", "None")

        wait_for(started, f"requeued job {job_id} to start again")

    def node_state(self) -> str:
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def stop(self) -> None:
        """Cancel every job, wait for them to end (their processes belong to no daemon we
        could kill), then stop slurmd, slurmctld and munged; remove the folder."""
        if not self.owned:
            return
        try:
            self.run("scancel", f"--partition={self.partition}", check=False)
            wait_for(lambda: not self.run("squeue", "-h", "-t", "R,CG,CF,S,RQ,SO",
                                          check=False).stdout.strip(), "the jobs to end", 60)
        finally:
            _stop(self.procs)
            shutil.rmtree(self.conf_dir.parent, ignore_errors=True)


def slurm_missing() -> str | None:
    """Why this machine cannot run the cluster (None: it can)."""
    if os.geteuid() != 0:
        return "the SLURM cluster fixture needs root (it runs munged, slurmctld and slurmd)"
    absent = [b for b in SLURM_BINARIES if not shutil.which(b, path=SBIN_PATH)]
    try:
        pwd.getpwnam("munge")
    except KeyError:
        absent.append("the user munge")
    if absent:
        return (f"SLURM is not installed ({', '.join(absent)} missing): apt-get install "
                "munge slurmctld slurmd slurm-client")
    return None


def _slurm_conf(folder: Path, munge_socket: Path, cpus: int, memory_mb: int) -> str:
    return "\n".join([
        "ClusterName=pytest", "SlurmctldHost=localhost", "SlurmUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge", f"AuthInfo=socket={munge_socket},cred_expire=5",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}", f"SlurmdLogFile={folder / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill", "SchedulerParameters=batch_sched_delay=0,bf_interval=1",
        "ReturnToService=2", "KillWait=5", "MinJobAge=300",
        "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
        # More CPUs than the machine may have: slurmd takes the declared ones as they are.
        "SlurmdParameters=config_overrides", "GresTypes=gpu",
        f"NodeName=localhost CPUs={cpus} RealMemory={memory_mb} Gres=gpu:2 State=UNKNOWN",
        "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""])


def start_slurm() -> SlurmCluster:
    """Start munged, slurmctld and slurmd in a new temporary folder; return once the node is
    idle. munged is a private one (own key and socket), so a system munged is left alone."""
    # Not under pytest's tmp folder: user munge must reach its socket, and that one is 0700.
    folder = Path(tempfile.mkdtemp(prefix="pytest-slurm-"))
    folder.chmod(0o755)
    etc, munge = folder / "etc", folder / "munge"
    for sub in (etc, munge, folder / "state", folder / "spool"):
        sub.mkdir()
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (munge, key):
        shutil.chown(path, "munge", "munge")
    gpus = [etc / f"gpu{i}" for i in range(2)]  # fake GPU devices
    for link in gpus:
        link.symlink_to("/dev/null")
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    cluster = SlurmCluster(etc)
    cluster.conf.write_text(_slurm_conf(folder, munge / "munge.socket",
                                        max(4, os.cpu_count() or 1), memory_mb))
    (etc / "gres.conf").write_text("AutoDetect=off\n" + "".join(
        f"NodeName=localhost Name=gpu File={link}\n" for link in gpus))

    def start(name: str, *args: str, **kwargs: Any) -> None:
        with open(folder / f"{name}.out", "w") as log:
            cluster.procs.append(subprocess.Popen(
                [shutil.which(name, path=SBIN_PATH), *args], stdout=log, stderr=log,
                env=cluster.env, start_new_session=True, **kwargs))

    try:
        start("munged", "--foreground", f"--socket={munge / 'munge.socket'}",
              f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
              f"--seed-file={munge / 'munged.seed'}", user="munge", group="munge",
              extra_groups=[])
        wait_for(lambda: (munge / "munge.socket").exists(), "munged's socket")
        start("slurmctld", "-D", "-i", "-f", str(cluster.conf))
        start("slurmd", "-D", "-N", "localhost", "-f", str(cluster.conf))

        def node_idle() -> bool:
            if dead := [p.args[0] for p in cluster.procs if p.poll() is not None]:
                raise RuntimeError(f"{', '.join(dead)} exited")
            return cluster.node_state().startswith("idle")

        wait_for(node_idle, "the SLURM node to be idle")
    except Exception as error:
        logs = _logs(folder)
        _stop(cluster.procs, grace=10)
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"the SLURM cluster did not start: {error}{logs}") from error
    return cluster


def _running_pytest_cluster() -> SlurmCluster | None:
    """A test cluster (``ClusterName=pytest``) that another fixture in this session started
    and named in ``SLURM_CONF``, when it answers."""
    conf = Path(os.environ.get("SLURM_CONF", "/nonexistent"))
    if not conf.is_file() or "ClusterName=pytest" not in conf.read_text().split():
        return None
    cluster = SlurmCluster(conf.parent, owned=False)
    if "UP" not in cluster.run("scontrol", "ping", check=False).stdout:
        return None
    partitions = cluster.run("sinfo", "-h", "-o", "%P").stdout.split()
    cluster.partition = next((p[:-1] for p in partitions if p.endswith("*")), partitions[0])
    return cluster


_slurm: SlurmCluster | None = None
_slurm_users = 0


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM cluster on localhost (node ``localhost``, partition ``debug``): 4 CPUs,
    so up to 4 one-CPU jobs run at once, and ``gpu:2`` (a job asking ``--gres=gpu:1`` gets
    ``CUDA_VISIBLE_DEVICES`` 0 or 1). Run commands with ``env=slurm_cluster.env`` (or set its
    ``SLURM_CONF`` with monkeypatch, e.g. for submitit). Reuses a cluster already started in
    this session; skips without root or SLURM's packages; stopped at the session's end."""
    global _slurm, _slurm_users
    if why := slurm_missing():
        pytest.skip(why)
    if _slurm is None:
        _slurm = _running_pytest_cluster() or start_slurm()
    _slurm_users += 1
    try:
        yield _slurm
    finally:
        _slurm_users -= 1
        if not _slurm_users:
            cluster, _slurm = _slurm, None
            cluster.stop()


# ---------------------------------------------------------------------------------------- Dask


@dataclass
class DaskCluster:
    """A running scheduler and its workers ``w0``, ``w1``, … (each under a nanny)."""

    folder: Path
    procs: list[subprocess.Popen] = field(default_factory=list)  # scheduler, then the nannies

    @property
    def scheduler_file(self) -> Path:
        return self.folder / "scheduler.json"

    @property
    def address(self) -> str:
        return json.loads(self.scheduler_file.read_text())["address"]

    def client(self) -> Any:
        from distributed import Client

        return Client(scheduler_file=str(self.scheduler_file), timeout=60, set_as_default=False)

    def workers(self) -> dict[str, dict]:
        """``{name: info}`` of the workers the scheduler knows: scheduler_info's (``resources``,
        ``nanny``, …) plus ``address`` and ``pid`` (the worker process's, not its nanny's)."""
        with self.client() as client:
            infos = client.scheduler_info(n_workers=-1)["workers"]
            pids = client.run(os.getpid, on_error="return")
            return {info["name"]: {**info, "address": address, "pid": pids.get(address)}
                    for address, info in infos.items()}

    def wait_workers(self, n: int, timeout: float = TIMEOUT) -> None:
        """Wait until the scheduler has (at least) ``n`` workers."""
        with self.client() as client:
            client.wait_for_workers(n, timeout=timeout)

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``w<i>``'s process (not its nanny, which starts a new one); return
        once the scheduler has dropped it."""
        pid = self.workers()[f"w{i}"]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: self.workers().get(f"w{i}", {}).get("pid") != pid,
                 f"the scheduler to drop worker w{i}")

    def _start(self, module: str, *args: str, log: str, **env: str) -> None:
        with open(self.folder / log, "w") as out:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", f"distributed.cli.{module}", *args], stdout=out,
                stderr=out, env={**os.environ, **env}, cwd=self.folder, start_new_session=True))

    def stop(self) -> None:
        _stop(self.procs)  # SIGTERM: nannies stop their workers


def start_dask(folder: Path, workers: int = 2) -> DaskCluster:
    """Start the scheduler and ``workers`` workers; return once all are connected."""
    cluster = DaskCluster(folder)
    try:
        cluster._start("dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                       "--dashboard-address", "127.0.0.1:0",
                       "--scheduler-file", str(cluster.scheduler_file), log="scheduler.log")
        wait_for(cluster.scheduler_file.exists, "the scheduler file")
        for i in range(workers):
            cluster._start("dask_worker", "--scheduler-file", str(cluster.scheduler_file),
                           "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                           "--resources", "GPU=1", "--name", f"w{i}", "--no-dashboard",
                           "--local-directory", str(folder / f"w{i}"), log=f"worker-{i}.log",
                           CUDA_VISIBLE_DEVICES=str(i))
        cluster.wait_workers(workers)
    except Exception as error:
        cluster.stop()
        raise RuntimeError(f"the Dask cluster did not start: {error}{_logs(folder)}") from error
    return cluster


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """A Dask scheduler on 127.0.0.1 and two workers ``w0``/``w1`` (nannies, 1 thread each,
    resource ``GPU=1``, ``CUDA_VISIBLE_DEVICES`` 0/1). Connect with
    ``Client(scheduler_file=dask_cluster.scheduler_file)`` or ``dask_cluster.address``.
    Skips without ``distributed``; stopped at the session's end."""
    pytest.importorskip("distributed", reason="dask[distributed] is not installed")
    cluster = start_dask(tmp_path_factory.mktemp("dask"))
    try:
        yield cluster
    finally:
        cluster.stop()
