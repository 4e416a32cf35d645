"""A real one-node SLURM cluster on localhost for the SLURM backend's tests: munged, slurmctld
and slurmd (Debian's packages, run as root) with two fake GPUs (``gres.conf`` entries that are
links to /dev/null), so a job asking ``--gres=gpu:1`` gets ``CUDA_VISIBLE_DEVICES`` 0 or 1. No
accounting database: job states come from ``squeue``. Its ``slurm.conf`` lives in a temporary
folder and reaches the commands through ``SLURM_CONF``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def missing() -> str | None:
    """Why this machine cannot run the cluster (None: it can)."""
    if os.geteuid() != 0:
        return "the SLURM daemons need root"
    absent = [d for d in DAEMONS if not shutil.which(d) and not Path(f"/usr/sbin/{d}").exists()]
    if absent:
        return (f"SLURM is not installed ({', '.join(absent)} missing; apt-get install munge "
                "slurmctld slurmd slurm-client)")
    return None


def _running(name: str) -> bool:
    """Whether a process named ``name`` runs, not a zombie (read from /proc: no procps
    needed, and PID 1 here may not reap)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, state = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        if comm.split("(", 1)[1] == name and state.split()[0] != "Z":
            return True
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    """The cluster's folder, partition and daemons."""

    folder: Path
    partition: str = "debug"
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60,
                              env={**os.environ, "SLURM_CONF": str(self.conf)})

    def jobs(self) -> dict[str, str]:
        """``{job id: state}`` of every job squeue still shows (array tasks one by one)."""
        out = self.run("squeue", "-h", "-r", "-t", "all", "-o", "%i|%T").stdout
        return dict(line.split("|", 1) for line in out.split())

    def cancel(self, job: str) -> None:
        self.run("scancel", job)

    def requeue(self, job: str) -> None:
        """``scontrol requeue`` the job (retried while it is still starting), then, once it
        has pended on its begin time for 1.5 s, ``StartTime=now`` (a requeued job otherwise
        waits a minute or two; sooner, slurmd refuses a launch within the second it killed the
        job in, "credential revoked", and the update is lost while the job is COMPLETING).
        Returns once the job runs again (or pends for another reason, e.g. resources)."""
        deadline = time.monotonic() + 120
        while (out := self.run("scontrol", "requeue", job, check=False)).returncode:
            if time.monotonic() > deadline:
                raise AssertionError(f"scontrol requeue {job}: {out.stderr.strip()}")
            time.sleep(0.3)
        pending_since = None
        while True:
            out = self.run("squeue", "-h", "-j", job, "-o", "%T|%r", check=False).stdout
            state, _, reason = out.strip().partition("|")
            if state not in ("PENDING", "COMPLETING") or reason not in ("BeginTime", "None"):
                return
            if state == "PENDING" and reason == "BeginTime":
                pending_since = pending_since or time.monotonic()
                if time.monotonic() - pending_since > 1.5:
                    self.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
            if time.monotonic() > deadline:
                raise AssertionError(f"requeued job {job} did not start again: {out!r}")
            time.sleep(0.3)

    def node_state(self) -> str:
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def stop(self) -> None:
        """Cancel every job and wait for them to end (their processes belong to no daemon we
        could kill), then stop slurmd and slurmctld."""
        self.run("scancel", f"--partition={self.partition}", check=False)
        deadline = time.monotonic() + 60
        while self.run("squeue", "-h", "-t", "R,CG,CF,S,RQ,SO", check=False).stdout.strip():
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_slurm(folder: Path) -> SlurmCluster:
    """Start munged (when not running), slurmctld and slurmd; return once the node is idle."""
    cluster = SlurmCluster(folder)
    for sub in ("state", "spool", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    gpus = [folder / f"gpu{i}" for i in range(2)]
    for link in gpus:
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    cpus = max(4, os.cpu_count() or 1)
    cluster.conf.write_text("\n".join([
        "ClusterName=pytest", "SlurmctldHost=localhost", "SlurmUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge", "AuthInfo=cred_expire=5", "CryptoType=crypto/munge",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "ReturnToService=2", "SchedulerParameters=batch_sched_delay=0,bf_interval=1",
        "SchedulerType=sched/backfill", "KillWait=5", "MinJobAge=600",
        "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none", "GresTypes=gpu", "SlurmdParameters=config_overrides",
        f"NodeName=localhost CPUs={cpus} RealMemory=4000 Gres=gpu:2 State=UNKNOWN",
        f"PartitionName={cluster.partition} Nodes=localhost Default=YES MaxTime=INFINITE "
        "State=UP OverSubscribe=YES", ""]))
    (folder / "gres.conf").write_text("AutoDetect=off\n" + "".join(
        f"NodeName=localhost Name=gpu File={link}\n" for link in gpus))
    env = {**os.environ, "SLURM_CONF": str(cluster.conf)}
    if not _running("munged"):
        key = Path("/etc/munge/munge.key")
        if not key.exists():  # Debian's package makes one; a slimmed image may not
            subprocess.run(["/usr/sbin/mungekey", "--create"], check=True)
            shutil.chown(key, "munge", "munge")
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True)
    for daemon in (["slurmctld", "-D", "-i"], ["slurmd", "-D", "-N", "localhost"]):
        log = open(folder / "log" / f"{daemon[0]}.out", "w")
        cluster.procs.append(subprocess.Popen(
            [f"/usr/sbin/{daemon[0]}", *daemon[1:], "-f", str(cluster.conf)], env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        log.close()
    deadline = time.monotonic() + 180
    while not cluster.node_state().startswith("idle"):  # 4 CPUs declared: config_overrides
        if time.monotonic() > deadline or any(p.poll() is not None for p in cluster.procs):
            cluster.stop()
            logs = "".join(p.read_text()[-1500:] for p in (folder / "log").glob("*"))
            raise RuntimeError(f"the SLURM node did not come up ({cluster.node_state()!r}):\n"
                               f"{logs}")
        time.sleep(0.5)
    return cluster
