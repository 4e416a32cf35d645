"""Sweep throughput: trials per hour of real ``mcmc-sweep`` commands, each
``hydra.sweeper.population`` against ``hydra.sweeper.population=1`` in the same run, and where
the workers' time goes.

Nets: ``digits`` is the default sweep (MLP 192->10 on thermometer-encoded digits, TPE, 20
epochs of 500 steps; temperature, cooling rate and flip ratio searched); ``mnist`` is MLP
784-100-10 on MNIST t10k (``dataset=idx``, mean-threshold inputs, 8,550 training images of
which ``sampler.energy_samples=8000`` are the energy, flip ratio searched in [5e-5, 2e-3]: 4 to
157 flips of the hidden layer), or, without the folder, synthetic data of the same shape (said
so). Every sweep of the grid --nets x --pruners x --workers x --populations (x --rounds) runs
in its own temporary folder (fresh Optuna storage and MLflow store). After each one the script
reads the study (finished, pruned, failed trials), the MLflow store (one child run per trial
that ran, none left RUNNING: ``mlflow_ok``) and the workers' phase files
(:mod:`sweeps.workers.timing`: seconds per Optuna ask / report / prune / tell, MLflow open / log /
close, checkpoint, step, evaluate; peak CUDA memory per worker). The table names the per-trial
cost that takes most of the workers' time, and how much.

    python benchmarks/sweep_throughput.py [--nets digits mnist] [--n-trials 32]
        [--base-trials N] [--workers 2] [--populations 1 16] [--pruners median]
        [--device cpu] [--rounds 1] [--overrides trainer.epochs=5 ...] [--check]
        [--mnist ../shared/data/mnist-t10k] [--json benchmarks/results/sweep_throughput.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "sweep_throughput.json"
DEFAULT_MNIST = HERE.parents[1] / "shared" / "data" / "mnist-t10k"
#: Phases of the workers' own compute; every other phase is a per-trial cost.
COMPUTE = ("step", "evaluate")
#: Phases that overlap the others (a thread of their own).
BACKGROUND = ("heartbeat",)


def command(tree: Path | None = None) -> list[str]:
    """The installed ``mcmc-sweep`` next to this interpreter, else the module (always the
    module for another source ``tree``)."""
    script = Path(sys.executable).parent / "mcmc-sweep"
    return [str(script)] if script.exists() and tree is None else [
        sys.executable, "-m", "sweeps.cli.sweep_app"]


def net_overrides(net: str, mnist: Path) -> tuple[list[str], str]:
    """The overrides of ``net``'s sweep and what data it trains on."""
    if net == "digits":
        return [], "digits"
    common = ["dataset.binarize=mean", "model.hidden=[100]", "sampler.energy_samples=8000",
              "dataset.test_fraction=0.1", "dataset.val_fraction=0.05",
              "hydra.sweeper.params.sampler.flip_ratio=tag(log, interval(5e-5, 2e-3))"]
    if any((mnist / f"t10k-images-idx3-ubyte{gz}").exists() for gz in (".gz", "")):
        return (["dataset=idx", f"dataset.root={mnist.resolve()}", *common],
                f"MNIST t10k ({mnist})")
    print(f"note: {mnist} not found: the mnist sweep trains on synthetic data of the same "
          "shape (784 inputs, 10 classes, 10,000 samples)", flush=True)
    return ["dataset=synthetic", "dataset.synthetic_shape=[1,28,28]",
            "dataset.synthetic_samples=10000", "dataset.synthetic_classes=10", *common], \
        "synthetic 784-input data (MNIST t10k not found)"


def mlflow_children(uri: str, experiment: str) -> dict[str, Any]:
    """The sweep's child runs in the MLflow store: how many, by status, and their trials."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=50_000) if exp else []
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    statuses: dict[str, int] = {}
    for r in children:
        statuses[r.info.status] = statuses.get(r.info.status, 0) + 1
    numbers = {int(r.data.tags["optuna.trial_number"]) for r in children
               if "optuna.trial_number" in r.data.tags}
    return {"child_runs": len(children), "statuses": statuses, "trial_numbers": numbers}


def phase_summary(folder: Path) -> dict[str, Any]:
    """The workers' phase files added up: seconds and calls per phase, the workers' time, and
    each worker's peak CUDA memory (None on the CPU)."""
    files = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    phases: dict[str, dict[str, float]] = {}
    for f in files:
        for name, v in f["phases"].items():
            total = phases.setdefault(name, {"seconds": 0.0, "calls": 0})
            total["seconds"] += v["seconds"]
            total["calls"] += v["calls"]
    worker_s = sum(f["seconds"] for f in files)
    trials = sum(f["trials"] for f in files)
    per_trial = {n: v for n, v in phases.items() if n not in COMPUTE + BACKGROUND}
    limit = max(per_trial, key=lambda n: per_trial[n]["seconds"]) if per_trial else None
    return {"workers": len(files), "worker_seconds": worker_s, "trials_run": trials,
            "phases": phases,
            "share": {n: v["seconds"] / worker_s for n, v in phases.items()} if worker_s else {},
            "ms_per_trial": {n: 1000 * v["seconds"] / trials for n, v in phases.items()}
            if trials else {},
            "limit": limit,
            "per_trial_share": (sum(v["seconds"] for v in per_trial.values()) / worker_s
                                if worker_s else None),
            "max_memory_allocated": [f["max_memory_allocated"] for f in files],
            "populations": [f["populations"] for f in files]}


def sweep(net: str, population: int, n_trials: int, workers: int, pruner: str, device: str,
          mnist: Path, overrides: list[str] | None = None,
          tree: Path | None = None) -> dict[str, Any]:
    """Run one sweep in a temporary folder (with the code of source ``tree``, default the
    installed one); return its timings, outcome, MLflow check and phases."""
    import optuna
    from optuna.trial import TrialState

    net_args, data = net_overrides(net, mnist)
    with tempfile.TemporaryDirectory(prefix=f"sweep-{net}-pop{population}-") as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        args = [f"device={device}", f"hydra.sweeper.n_trials={n_trials}",
                f"hydra.sweeper.n_jobs={workers}", f"hydra.sweeper.population={population}",
                f"hydra.sweeper.pruner={pruner}", *net_args, *(overrides or []),
                f"hydra.sweeper.output_dir={root / 'out'}", f"tracking.uri={uri}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if tree is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(tree.resolve()), env.get("PYTHONPATH", "")])
        start = time.perf_counter()
        proc = subprocess.run([*command(tree), *args], check=False, cwd=root, env=env,
                              text=True, capture_output=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"mcmc-sweep {' '.join(args)} -> {proc.returncode}\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        storage = f"sqlite:///{root / 'out' / 'optuna.db'}"
        name = optuna.get_all_study_names(storage)[0]
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        runs = mlflow_children(uri, name)
        phases = phase_summary(root / "out" / "workers")
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done)
            - min(t.datetime_start for t in done)).total_seconds()
    best = max(complete, key=lambda t: t.value) if complete else None
    epochs = sum(t.last_step or 0 for t in done)
    # Every finished trial has its child run (a retry continues its predecessor's run), and
    # none is left RUNNING.
    mlflow_ok = (runs["trial_numbers"] >= {t.number for t in done}
                 and runs["child_runs"] >= len(done) and "RUNNING" not in runs["statuses"])
    return {"net": net, "data": data, "tree": str(tree or "installed"), "population": population,
            "pruner": pruner,
            "n_trials": n_trials, "workers": workers, "device": device,
            "finished": len(done), "complete": len(complete), "pruned": len(done) - len(complete),
            "failed": sum(t.state == TrialState.FAIL for t in trials),
            "trial_epochs": epochs, "wall_s": wall, "trials_span_s": span,
            "trials_per_hour": len(done) / wall * 3600,
            # without the command's start-up and report: from the first trial's start to the
            # last one's end
            "trials_per_hour_span": len(done) / span * 3600 if span > 0 else float("nan"),
            "trial_epochs_per_s": epochs / span if span > 0 else float("nan"),
            "best_value": best.value if best else None,
            "best_test_accuracy": best.user_attrs.get("test_accuracy") if best else None,
            "best_params": best.params if best else None,
            "mlflow_child_runs": runs["child_runs"], "mlflow_statuses": runs["statuses"],
            "mlflow_ok": mlflow_ok, "phases": phases,
            "command": " ".join(["mcmc-sweep", *args[:-2]]),
            "trials": [{"number": t.number, "state": t.state.name, "last_step": t.last_step,
                        "value": t.value, "pid": t.user_attrs.get("pid"),
                        "start": str(t.datetime_start), "end": str(t.datetime_complete),
                        **t.params} for t in trials]}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor(),
                            "cpus": os.cpu_count(), "python": platform.python_version(),
                            "torch": torch.__version__, "load_average": os.getloadavg()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def table(runs: list[dict[str, Any]], base: int) -> tuple[list[str], dict[str, float]]:
    """The printed rows (medians over rounds) and each population's trials/hour ratio to
    population ``base`` of the same net, pruner, workers and source tree (and, with several
    trees, to the first tree's)."""
    def median(rows: list[dict[str, Any]], key: str) -> float:
        values = sorted(r[key] for r in rows)
        return values[len(values) // 2]

    def key(r: dict[str, Any], **changed: Any) -> tuple[Any, ...]:
        r = {**r, **changed}
        return r["net"], r["pruner"], r["workers"], r["population"], r["tree"]

    trees = list(dict.fromkeys(r["tree"] for r in runs))
    lines = ["| net | pruner | workers | population | "
             + ("tree | vs first tree | " if len(trees) > 1 else "")
             + f"trials | wall s | trials/hour | vs population {base} | pruned "
             "| best val_accuracy | mlflow runs ok | per-trial costs (share of worker time) "
             "| largest: ms/trial | peak GPU MiB/worker |",
             "|---|---|---:|---:|" + ("---|---:|" if len(trees) > 1 else "")
             + "---:|---:|---:|---:|---:|---:|---|---:|---|---|"]
    ratios: dict[str, float] = {}
    for k in sorted({key(r) for r in runs}, key=lambda k: (*k[:4], trees.index(k[4]))):
        rows = [r for r in runs if key(r) == k]
        base_rows = [r for r in runs if key(r) == key(rows[0], population=base)]
        first_rows = [r for r in runs if key(r) == key(rows[0], tree=trees[0])]
        tph = median(rows, "trials_per_hour")
        ratio = tph / median(base_rows, "trials_per_hour") if base_rows else float("nan")
        vs_first = tph / median(first_rows, "trials_per_hour")
        name = "/".join([k[0], k[1], f"workers={k[2]}", f"population={k[3]}"]
                        + ([f"tree={k[4]}"] if k[4] != "installed" else []))
        ratios[name] = ratio
        last = rows[-1]
        ph = last["phases"]
        limit = ph["limit"]
        memory = [m for m in ph["max_memory_allocated"] if m is not None]
        best = max((r["best_value"] or 0) for r in rows)
        lines.append(
            f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | "
            + (f"{k[4]} | {vs_first:.2f}x | " if len(trees) > 1 else "")
            + f"{last['finished']} | {median(rows, 'wall_s'):.1f} | {tph:.0f} | {ratio:.2f}x "
            f"| {median(rows, 'pruned'):.0f} | {best:.4f} | {all(r['mlflow_ok'] for r in rows)} "
            f"| {100 * (ph['per_trial_share'] or 0):.0f} % "
            f"| {limit}: {ph['ms_per_trial'].get(limit, 0):.1f} ms "
            f"({100 * ph['share'].get(limit, 0):.0f} %) "
            f"| {', '.join(f'{m / 2**20:.0f}' for m in memory) or 'N/A'} |")
    return lines, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["digits"], choices=["digits", "mnist"])
    parser.add_argument("--n-trials", type=int, default=32)
    parser.add_argument("--base-trials", type=int, default=None,
                        help="hydra.sweeper.n_trials of the population-1 sweeps "
                             "(default: --n-trials)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--pruners", nargs="+", default=["median"],
                        help="hydra.sweeper.pruner values; median is the default sweep's")
    parser.add_argument("--device", default="cpu", help="device= of the sweeps (cpu, cuda)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--overrides", nargs="*", default=[],
                        help="extra mcmc-sweep overrides, e.g. trainer.epochs=5")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--trees", type=Path, nargs="+", default=[None],
                        help="source trees to run the sweeps from, alternately (e.g. a worktree "
                        "of an earlier commit, to compare code versions in one run)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless every sweep has every trial's MLflow run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    started = datetime.now(timezone.utc)
    info = machine()
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for net in args.nets:
            for pruner in args.pruners:
                for workers in args.workers:
                    for population, tree in itertools.product(args.populations, args.trees):
                        n = (args.base_trials or args.n_trials) if population == 1 \
                            else args.n_trials
                        result = sweep(net, population, n, workers, pruner, args.device,
                                       args.mnist, args.overrides, tree)
                        result["round"] = round_
                        runs.append(result)
                        print(f"{net}, {pruner}, {workers} workers, population {population}, "
                              f"{'tree ' + str(tree) + ', ' if tree else ''}"
                              f"round {round_}: {result['finished']} trials in "
                              f"{result['wall_s']:.1f} s ({result['trials_per_hour']:.0f}/hour), "
                              f"{result['pruned']} pruned, mlflow_ok {result['mlflow_ok']}",
                              flush=True)
                        write(args, started, info, runs)
    lines = write(args, started, info, runs)
    print(f"\n{args.device}, {os.cpu_count()} CPUs, {args.rounds} round(s) (median of rounds), "
          f"load average at start {info['load_average'][0]:.2f}, at end "
          f"{os.getloadavg()[0]:.2f}:")
    print("\n".join(lines))
    print(f"\nwrote {args.json}")
    if args.check and not all(r["mlflow_ok"] for r in runs):
        raise SystemExit("error: a sweep's MLflow store lacks a trial's child run (mlflow_ok)")


def write(args: argparse.Namespace, started: datetime, info: dict[str, Any],
          runs: list[dict[str, Any]]) -> list[str]:
    """Write the JSON of the sweeps so far (after each one: a run stopped by a time limit keeps
    what it measured); returns the table's lines."""
    lines, ratios = table(runs, args.populations[0])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "sweep_throughput", "started_utc": started.isoformat(timespec="seconds"),
        "machine": {**info, "load_average_at_end": os.getloadavg()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": sorted({r["data"] for r in runs}),
        "ratio_trials_per_hour": ratios, "table": lines, "runs": runs,
    }, indent=2, default=str))
    return lines


if __name__ == "__main__":
    main()
