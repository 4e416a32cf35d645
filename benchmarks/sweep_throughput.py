"""Sweep throughput: trials per hour of the default digits sweep, with trials run one by one
(``study.population=1``) and as populations of 16 (``study.population=16``), in the same run.

Each sweep is the real ``mcmc-sweep`` command (its default config: digits, 2 workers, TPE,
median pruner, 20 epochs of 500 steps) with ``study.n_trials=32`` and ``device=cpu``, in its own
temporary folder (fresh Optuna storage and MLflow store, so both start from an empty study).
Wall time is the whole command (start-up, trials, report); the trials' span is from the first
trial's start to the last one's end, as stored by Optuna.

    python benchmarks/sweep_throughput.py [--n-trials 32] [--workers 2] [--populations 1 16]
        [--pruners median] [--rounds 1] [--overrides trainer.epochs=5 ...]
        [--json benchmarks/results/sweep_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "sweep_throughput.json"


def command() -> list[str]:
    """The installed ``mcmc-sweep`` next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "mcmc-sweep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sweeps.sweep"]


def sweep(population: int, n_trials: int, workers: int, pruner: str,
          overrides: list[str] | None = None) -> dict[str, Any]:
    """Run one sweep in a temporary folder (``overrides``: extra Hydra overrides for it);
    return its timings and outcome."""
    import optuna
    from optuna.trial import TrialState

    with tempfile.TemporaryDirectory(prefix=f"sweep-pop{population}-") as tmp:
        root = Path(tmp)
        args = ["device=cpu", f"study.n_trials={n_trials}", f"study.workers={workers}",
                f"study.population={population}", f"study.pruner={pruner}",
                f"study.output_dir={root / 'out'}",
                f"tracking.uri=sqlite:///{root / 'mlflow.db'}", *(overrides or [])]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        start = time.perf_counter()
        proc = subprocess.run([*command(), *args], check=False, cwd=root, env=env, text=True,
                              capture_output=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"mcmc-sweep {' '.join(args)} -> {proc.returncode}\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        storage = f"sqlite:///{root / 'out' / 'optuna.db'}"
        name = optuna.get_all_study_names(storage)[0]
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done)
            - min(t.datetime_start for t in done)).total_seconds()
    best = max(complete, key=lambda t: t.value) if complete else None
    epochs = sum(t.last_step or 0 for t in done)
    return {"population": population, "pruner": pruner, "n_trials": n_trials,
            "workers": workers,
            "finished": len(done), "complete": len(complete), "pruned": len(done) - len(complete),
            "failed": sum(t.state == TrialState.FAIL for t in trials),
            "trial_epochs": epochs, "wall_s": wall, "trials_span_s": span,
            "trials_per_hour": len(done) / wall * 3600,
            "trial_epochs_per_s": epochs / span if span > 0 else float("nan"),
            "best_value": best.value if best else None,
            "best_test_accuracy": best.user_attrs.get("test_accuracy") if best else None,
            "best_params": best.params if best else None,
            "command": " ".join(["mcmc-sweep", *args[:5], *(overrides or [])]),
            "trials": [{"number": t.number, "state": t.state.name, "last_step": t.last_step,
                        "value": t.value, "pid": t.user_attrs.get("pid"),
                        "start": str(t.datetime_start), "end": str(t.datetime_complete),
                        **t.params} for t in trials]}


def torch_version() -> str:
    import torch

    return torch.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--pruners", nargs="+", default=["median"],
                        help="study.pruner values; median is the default sweep's")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--overrides", nargs="*", default=[],
                        help="extra mcmc-sweep overrides, e.g. trainer.epochs=5")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    started = datetime.now(timezone.utc)
    load = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for pruner in args.pruners:
            for population in args.populations:
                result = sweep(population, args.n_trials, args.workers, pruner, args.overrides)
                result["round"] = round_
                runs.append(result)
                print(f"pruner {pruner}, population {population:>2}, round {round_}: "
                      f"{result['wall_s']:.1f} s, {result['pruned']} pruned, "
                      f"best {result['best_value']:.4f}", flush=True)

    def median(pruner: str, population: int, key: str) -> float:
        values = sorted(r[key] for r in runs
                        if r["pruner"] == pruner and r["population"] == population)
        return values[len(values) // 2]

    base = args.populations[0]
    print(f"\n{args.n_trials}-trial digits sweep, {args.workers} workers, "
          f"{os.cpu_count()} CPUs, {args.rounds} round(s) (median of rounds):")
    header = ("| pruner | population | wall s | trials span s | trials/hour | trial-epochs/s "
              "| pruned | best val_accuracy | its test_accuracy "
              f"| trials/hour vs population {base} |")
    print(header)
    print("|---" * 1 + "|---:" * (header.count("|") - 2) + "|")
    ratios: dict[str, dict[str, float]] = {}
    for pruner in args.pruners:
        for population in args.populations:
            rows = [r for r in runs if r["pruner"] == pruner and r["population"] == population]
            best = max(rows, key=lambda r: r["best_value"] or 0)
            ratio = (median(pruner, population, "trials_per_hour")
                     / median(pruner, base, "trials_per_hour"))
            ratios.setdefault(pruner, {})[str(population)] = ratio
            print(f"| {pruner} | {population} | {median(pruner, population, 'wall_s'):.1f} "
                  f"| {median(pruner, population, 'trials_span_s'):.1f} "
                  f"| {median(pruner, population, 'trials_per_hour'):.0f} "
                  f"| {median(pruner, population, 'trial_epochs_per_s'):.1f} "
                  f"| {median(pruner, population, 'pruned'):.0f} | {best['best_value']:.4f} "
                  f"| {best['best_test_accuracy']:.4f} | {ratio:.2f}x |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "sweep_throughput", "started_utc": started.isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch_version(), "load_average_at_start": load},
        "settings": {"n_trials": args.n_trials, "workers": args.workers,
                     "populations": args.populations, "pruners": args.pruners,
                     "rounds": args.rounds, "overrides": args.overrides,
                     "mcmc_sweep": shutil.which("mcmc-sweep") or command()[0]},
        "ratio_trials_per_hour": ratios,
        "runs": runs,
    }, indent=2, default=str))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
