"""The cost of running a sweep's workers as SLURM jobs instead of local processes: the same
sweep (``mcmc-sweep``, default digits search, ``--n-trials`` trials, 2 workers, a fixed seed)
with ``hydra.sweeper.backend=local`` and with ``hydra.sweeper.backend=slurm``, alternating
``--rounds`` times in one run, each in a fresh folder; prints trials per hour of each and the
ratio slurm/local. The SLURM cluster is the one ``SLURM_CONF`` names, or else a one-node
cluster started for the run (``tests/sweeps/slurm_cluster.py``: root and Debian's SLURM
packages). What SLURM adds: job submission and start (sbatch, slurmd, a fresh Python importing
torch per worker) and the launcher's polling of ``squeue``; the trials are the same.

    python benchmarks/cluster_overhead.py [--n-trials 16] [--rounds 2] [--overrides ...]
        [--json benchmarks/results/cluster_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: A finished trial's progress line: ``[3/16 best 0.91] trial   7 COMPLETE ...``.
FINISHED = re.compile(r"\] trial +\d+ (?:COMPLETE|PRUNED) ")
sys.path.insert(0, str(HERE.parent / "tests" / "sweeps"))


def run(backend: str, n_trials: int, overrides: list[str]) -> tuple[float, int]:
    """Seconds of one sweep and its finished trials (from its study line at the end)."""
    with tempfile.TemporaryDirectory(prefix=f"cluster-{backend}-") as folder:
        args = [str(Path(sys.executable).parent / "mcmc-sweep"),
                f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.n_jobs=2",
                f"hydra.sweeper.backend={backend}", f"hydra.sweeper.output_dir={folder}/out",
                f"tracking.uri=sqlite:///{folder}/mlflow.db", *overrides]
        start = time.perf_counter()
        out = subprocess.run(args, cwd=folder, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if out.returncode:
            raise SystemExit(f"{backend} sweep failed:\n{out.stdout[-3000:]}\n"
                             f"{out.stderr[-3000:]}")
        return seconds, len(FINISHED.findall(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--overrides", nargs="*", default=[])
    parser.add_argument("--json", type=Path, default=HERE / "results" / "cluster_overhead.json")
    args = parser.parse_args()
    cluster = None
    if "SLURM_CONF" not in os.environ:
        from slurm_cluster import missing, start_slurm

        if why := missing():
            raise SystemExit(f"no SLURM cluster: {why}")
        cluster = start_slurm(Path(tempfile.mkdtemp(prefix="slurm-")))
        os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        rows = []
        for r in range(args.rounds):
            for backend in ("local", "slurm"):
                seconds, finished = run(backend, args.n_trials, args.overrides)
                rows.append((r, backend, seconds, finished))
                print(f"round {r} {backend:<5} {seconds:7.1f} s  {finished} trials  "
                      f"{3600 * finished / seconds:7.0f} trials/h", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    rate = {b: sum(3600 * f / s for _, bb, s, f in rows if bb == b) / args.rounds
            for b in ("local", "slurm")}
    ratio = rate["slurm"] / rate["local"]
    print(f"mean trials/h: local {rate['local']:.0f}, slurm {rate['slurm']:.0f}; "
          f"slurm/local = {ratio:.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "n_trials": args.n_trials, "overrides": args.overrides, "ratio_slurm_local": ratio,
        "trials_per_hour": rate, "rows": [dict(zip(("round", "backend", "seconds", "finished"), r))
                                          for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
