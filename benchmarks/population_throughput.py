"""Chain-steps per second: K = 32 chains as one population against the same chains one by one.

Two binary MLPs (``output_scale`` 4, ``proposal=layer``, Metropolis, full cached energy):

* digits 64-128-10 on the whole digits training split (1,294 samples);
* 784-100-10 on 8,000 samples of MNIST t10k (``idx`` loader, ``../shared/data/mnist-t10k``;
  without that folder, synthetic data of the same shape, and it says so).

The 32 chains (seeds 0..31, temperatures log-spaced 1e-4..1e-2, cooling rates 0.999..0.99999,
one flip ratio per table row) are run three ways, in interleaved timed rounds (median kept):

* ``batched``: one :class:`~mcmc_core.population.Population` of 32 chains;
* ``sequential``: 32 populations of one (what ``mcmc-train`` runs for one chain), one after
  another: the same code path and the same trajectories (checked: after the same steps the
  weights are bit-identical);
* ``other commit``: the batched population with the other way of committing accepted moves
  (``sync_free``): masked writes without host synchronisation, the default off the CPU, or
  writes of the accepted chains only (``nonzero``), the CPU's default.
* on CUDA also ``no graphs``: the batched population launching every step's operations from
  Python instead of replaying them as captured CUDA graphs (``graphs=False``; graphs are the
  default there, for ``batched`` and ``sequential`` alike).

Where the batched/sequential ratio is small, the ``ops`` columns estimate the arithmetic of the
batched step (multiply-adds as 2, every elementwise op including exp/log as 1, per the
algorithm's formulas) against this machine's float32 matmul and ``exp`` throughput measured in
the same run: far below both means memory traffic, not arithmetic, bounds the step.

    python benchmarks/population_throughput.py [--threads 1 2] [--rounds 5] [--device cpu]
        [--scale 1] [--mnist ../shared/data/mnist-t10k]
        [--json benchmarks/results/population_throughput.json]

With ``--device cuda`` the populations run on the GPU (each timed round ends with a
``torch.cuda.synchronize()``); ``--threads`` then only sets the host's threads. ``--scale``
multiplies every round's step counts (a GPU's steps are short: longer rounds time them better).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mcmc_core.data import DataConfig, DatasetNotFoundError, Split, load_dataset
from mcmc_core.functional import flip_count
from mcmc_core.population import Population
from mcmc_core.schedules import ChainSchedules

DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "population_throughput.json"
K, OUTPUT_SCALE = 32, 4.0
TEMPERATURES = torch.logspace(-4, -2, K, dtype=torch.float64).tolist()
COOLING = torch.linspace(0.999, 0.99999, K, dtype=torch.float64).tolist()
METHODS = ("batched", "sequential", "other_commit")
GRAPH_METHODS = (*METHODS, "no_graphs")


@dataclass
class Net:
    """One benchmarked net: its energy split, widths and per-method step counts per round."""

    name: str
    data: str
    split: Split
    hidden: list[int]
    samples: int | None
    flip_ratios: list[float]
    batched_steps: dict[float, int]  # steps of the 32-chain population per round
    chain_steps: dict[float, int]  # steps of each single chain per round


def load_nets(mnist: Path) -> list[Net]:
    digits = load_dataset(DataConfig(name="digits"))
    nets = [Net("digits 64-128-10", f"digits train ({len(digits.train)} samples, full)",
                digits.train, [128], None, [1e-4, 2e-3], {1e-4: 128, 2e-3: 64},
                {1e-4: 32, 2e-3: 16})]
    splits = dict(test_fraction=0.1, val_fraction=0.05)  # 10,000 -> 8,550 train
    try:
        data = load_dataset(DataConfig(name="idx", root=str(mnist), **splits))
        name = f"MNIST t10k ({mnist})"
    except DatasetNotFoundError:
        print(f"note: {mnist} not found; using synthetic data of the same shape")
        data = load_dataset(DataConfig(name="synthetic", synthetic_samples=10000,
                                       synthetic_shape=[1, 28, 28], synthetic_classes=10,
                                       **splits))
        name = "synthetic 1x28x28, 10 classes (MNIST t10k not found)"
    nets.append(Net("784-100-10", f"{name}, 8000 energy samples", data.train, [100], 8000,
                    [1e-4, 2e-3], {1e-4: 24, 2e-3: 4}, {1e-4: 8, 2e-3: 4}))
    return nets


def population(net: Net, fr: float, seeds: list[int], device: str,
               **kwargs: object) -> Population:
    k = [TEMPERATURES[s] for s in seeds], [COOLING[s] for s in seeds]
    cooling = ChainSchedules.exponential(k[0], k[1])
    return Population.build(net.split, net.hidden, 10, seeds, output_scale=OUTPUT_SCALE,
                            samples=net.samples, temperature=k[0], schedule=cooling.temperatures,
                            flip_ratio=fr, device=device, **kwargs)  # type: ignore[arg-type]


def timed(device: str, run: Callable[[], object]) -> float:
    """Seconds ``run()`` takes, the device's queued work included."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


def ops_per_chain_step(net: Net, counts: list[int], n: int) -> float:
    """Arithmetic of one chain-step of the incremental population step (see module doc),
    averaged over the two layers ``proposal=layer`` picks uniformly."""
    classes = 10
    m0, m1 = counts
    agg0 = 0 if m0 == 1 else (2 * m0 * m0 * n if m0 <= 16 else 3 * m0 * n)
    hidden_step = 7 * m0 * n + agg0 + 2 * classes * m0 * n + 5 * classes * n + 2 * n
    agg1 = 0 if m1 == 1 else (2 * m1 * m1 * n if m1 <= 16 else 3 * m1 * n)
    last_step = 5 * m1 * n + agg1 + 2 * classes * m1 * n + classes * n + 2 * n
    return (hidden_step + last_step) / 2


def machine_throughput(device: str) -> dict[str, float]:
    """float32 matmul GFLOP/s (1024^3) and exp Gelem/s (4M floats) at the current threads."""
    a, b = torch.randn(1024, 1024, device=device), torch.randn(1024, 1024, device=device)
    x, out = torch.randn(1 << 22, device=device), torch.empty(1 << 22, device=device)
    torch.mm(a, b)
    best_mm = best_exp = float("inf")
    for _ in range(5):
        best_mm = min(best_mm, timed(device, lambda: torch.mm(a, b)))
        best_exp = min(best_exp, timed(device, lambda: torch.exp(x, out=out)))
    return {"sgemm_gflops": 2 * 1024**3 / best_mm / 1e9,
            "exp_gelem_per_s": x.numel() / best_exp / 1e9}


def same_trajectories(net: Net, fr: float, steps: int, device: str) -> bool:
    """Batched and one-by-one runs of the 32 chains end with bit-identical weights."""
    batched = population(net, fr, list(range(K)), device)
    batched.run(steps)
    for seed in range(K):
        alone = population(net, fr, [seed], device)
        alone.run(steps)
        if not all(torch.equal(w[seed], v[0])
                   for w, v in zip(batched.net.weights, alone.net.weights)):
            return False
    return True


def measure(net: Net, fr: float, rounds: int, device: str, scale: int) -> dict[str, object]:
    batched = population(net, fr, list(range(K)), device)
    runs = {"batched": batched,
            "other_commit": population(net, fr, list(range(K)), device,
                                       sync_free=not batched.cache.sync_free)}
    if batched.graphs:
        runs["no_graphs"] = population(net, fr, list(range(K)), device, graphs=False)
    singles = [population(net, fr, [seed], device) for seed in range(K)]
    n_b, n_c = scale * net.batched_steps[fr], scale * net.chain_steps[fr]
    for p in (*runs.values(), *singles):
        p.run(2 * n_c)  # warm-up: work buffers, first blocks, caches, CUDA graphs
    methods = [m for m in GRAPH_METHODS if m in runs or m == "sequential"]
    rates: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for m in methods:
            if m == "sequential":
                seconds = timed(device, lambda: [s.run(n_c) for s in singles])
                rates[m].append(K * n_c / seconds)
            else:
                rates[m].append(K * n_b / timed(device, lambda: runs[m].run(n_b)))  # noqa: B023
    rate = {m: statistics.median(v) for m, v in rates.items()}
    counts = [flip_count(fr, w[0].numel()) for w in batched.net.weights]
    ops = ops_per_chain_step(net, counts, len(batched.energy_set))
    return {"flip_ratio": fr, "flips_per_layer": counts, "chunk": batched._chunk_size(),
            "graphs": batched.graphs,
            **{f"{m}_chain_steps_per_s": rate[m] for m in methods},
            **{f"{m}_rounds": rates[m] for m in methods},
            "batched_over_sequential": rate["batched"] / rate["sequential"],
            "sync_free": batched.cache.sync_free,
            "other_commit_over_batched": rate["other_commit"] / rate["batched"],
            **({"batched_over_no_graphs": rate["batched"] / rate["no_graphs"]}
               if "no_graphs" in rate else {}),
            "ops_per_chain_step": ops, "batched_gops": ops * rate["batched"] / 1e9,
            "acceptance_rate_median": float(batched.acceptance_rates().median())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=int, default=1, help="multiplies each round's steps")
    parser.add_argument("--check-steps", type=int, default=40)
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    nets = load_nets(args.mnist)
    torch.set_num_threads(1)
    checks = {f"{net.name} flip_ratio {fr:g}": same_trajectories(net, fr, args.check_steps,
                                                                 args.device)
              for net in nets for fr in net.flip_ratios}
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        machine = machine_throughput(args.device)
        for net in nets:
            for fr in net.flip_ratios:
                row = {"threads": threads, "net": net.name, "data": net.data,
                       **measure(net, fr, args.rounds, args.device, args.scale), **machine,
                       "load_average": os.getloadavg()[0]}
                rows.append(row)
                print(f"done: {threads} thread(s), {net.name}, flip_ratio {fr:g}: "
                      f"{row['batched_over_sequential']:.1f}x", flush=True)

    print(f"\nK={K} chains, proposal=layer, metropolis, output_scale {OUTPUT_SCALE}, "
          f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"device {args.device}")
    graphs = any("no_graphs_chain_steps_per_s" in r for r in rows)
    methods = GRAPH_METHODS if graphs else METHODS
    print("| threads | net | flip_ratio | flips (layer 0/1) | batched chain-steps/s "
          "| sequential | other commit |" + (" no graphs |" if graphs else "")
          + " batched / sequential | other commit / batched |"
          + (" batched / no graphs |" if graphs else "")
          + " batched Gop/s | sgemm GFLOP/s | exp Gelem/s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * graphs)
    for r in rows:
        flips = "/".join(map(str, r["flips_per_layer"]))
        cells = [str(r["threads"]), r["net"], f"{r['flip_ratio']:g}", flips,
                 *(f"{r.get(f'{m}_chain_steps_per_s', float('nan')):,.0f}" for m in methods),
                 f"{r['batched_over_sequential']:.1f}x",
                 f"{r['other_commit_over_batched']:.2f}x",
                 *([f"{r.get('batched_over_no_graphs', float('nan')):.2f}x"] if graphs else []),
                 f"{r['batched_gops']:.2f}", f"{r['sgemm_gflops']:.0f}",
                 f"{r['exp_gelem_per_s']:.2f}"]
        print("| " + " | ".join(cells) + " |")
    for name, ok in checks.items():
        print(f"same trajectories batched vs one by one ({args.check_steps} steps), {name}: {ok}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "population_throughput", "chains": K, "proposal": "layer",
        "acceptance": "metropolis", "output_scale": OUTPUT_SCALE,
        "temperatures": "log-spaced 1e-4..1e-2", "cooling_rates": "linear 0.999..0.99999",
        "rounds": args.rounds, "scale": args.scale, "device": args.device,
        "torch": torch.__version__, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "same_trajectories": checks, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
