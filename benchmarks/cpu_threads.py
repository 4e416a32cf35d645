"""``mcmc-train`` on the CPU with one torch thread (``trainer.threads`` null: the default for the
incremental kernel) against two (torch's default on this machine, what it ran before), on an idle
machine and beside ``--load`` busy processes (another job, a sweep's workers), all in one run.

MLP 784->10 on MNIST t10k (``dataset=idx``; without the folder, synthetic data of the same shape,
and it says so), one chain, ``--steps`` Metropolis steps; each configuration is the real command in
a subprocess, timed by its wall clock and CPU seconds, ``--repeats`` times (the table shows the
best wall time). The test accuracies must be equal: the thread count changes no result.

    python benchmarks/cpu_threads.py [--threads 1 2] [--load 2] [--steps 20000] [--repeats 2]
        [--mnist ../shared/data/mnist-t10k] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "cpu_threads.json"
FINAL = re.compile(r"^final: epoch \d+ test_accuracy=([0-9.]+)", re.M)


def _busy() -> None:
    while True:
        pass


def command(threads: int, steps: int, mnist: Path) -> list[str]:
    """The ``mcmc-train`` command of one configuration (10 epochs of ``steps / 10``)."""
    data = (["dataset=idx", f"dataset.root={mnist}"] if mnist.exists() else
            ["dataset=synthetic", "dataset.synthetic_samples=10000",
             "dataset.synthetic_shape=[1,28,28]", "dataset.synthetic_classes=10"])
    return [str(Path(sys.executable).parent / "mcmc-train"), "tracking=none", "device=cpu", *data,
            "model.hidden=[]", "trainer.epochs=10", f"trainer.steps_per_epoch={steps // 10}",
            "sampler.flip_ratio=0.0001", "schedule.cooling_rate=0.9999",
            f"trainer.threads={threads}", "hydra.run.dir=.", "hydra.output_subdir=null"]


def run_once(cmd: list[str]) -> dict[str, float]:
    """Wall and CPU seconds and the test accuracy of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    found = FINAL.search(proc.stdout)
    if found is None:
        raise SystemExit(f"error: no final line in the output of {' '.join(cmd)}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "test_accuracy": float(found.group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2,
                        help="busy processes beside the loaded runs (default: one per CPU)")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if not args.mnist.exists():
        print(f"note: {args.mnist} not found; using synthetic data of the same shape")
    data = "MNIST t10k" if args.mnist.exists() else "synthetic 1x28x28, 10 classes"
    rows = []
    for load in (0, args.load):
        busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(load)]
        for p in busy:
            p.start()
        try:
            for threads in args.threads:
                runs = [run_once(command(threads, args.steps, args.mnist))
                        for _ in range(args.repeats)]
                rows.append({"load": load, "threads": threads, "runs": runs,
                             "best_wall_s": min(r["wall_s"] for r in runs)})
        finally:
            for p in busy:
                p.terminate()
    accuracies = {r["test_accuracy"] for row in rows for r in row["runs"]}
    base = args.threads[0]
    print(f"\nmcmc-train, MLP 784->10 on {data}, {args.steps} steps, 1 chain; {platform.machine()}, "
          f"{os.cpu_count()} CPUs; test accuracy {sorted(accuracies)}"
          f" ({'the same in every run' if len(accuracies) == 1 else 'DIFFERS'})")
    print(f"| busy processes | threads | best wall s | CPU s | wall / {base} thread(s) |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        ref = next(r for r in rows if r["load"] == row["load"] and r["threads"] == base)
        row["wall_ratio"] = row["best_wall_s"] / ref["best_wall_s"]
        cpu = min(r["cpu_s"] for r in row["runs"])
        print(f"| {row['load']} | {row['threads']} | {row['best_wall_s']:.1f} | {cpu:.1f} | "
              f"{row['wall_ratio']:.2f}x |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": data, "steps": args.steps, "rows": rows,
                                     "same_accuracy": len(accuracies) == 1}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
