"""Chain-steps per second of one population as its number of chains K grows.

How large a population (``hydra.sweeper.population``) pays off on a device: one
:class:`~mcmc_core.population.Population` of K chains (seeds 0..K-1, temperatures log-spaced
1e-4..1e-2, ``flip_ratio`` 1e-4, ``proposal=layer``, Metropolis, ``output_scale`` 4, full
cached energy) on the nets of ``population_throughput.py``: digits 64-128-10 (1,294 samples)
and 784-100-10 (8,000 samples of MNIST t10k, or synthetic data of the same shape without it).
The baseline, in the same run, is K=1; on CUDA every K also runs with ``graphs=False`` (every
operation launched from Python instead of replayed as a captured CUDA graph).

    python benchmarks/population_scaling.py [--device cpu] [--sizes 1 32 128 512]
        [--steps 200] [--threads 1] [--mnist ../shared/data/mnist-t10k]
        [--json benchmarks/results/population_scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from population_throughput import DEFAULT_MNIST, OUTPUT_SCALE, Net, load_nets, timed

from mcmc_core.population import Population

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "population_scaling.json"
FLIP_RATIO = 1e-4


def measure(net: Net, k: int, graphs: bool | None, device: str, steps: int) -> dict[str, object]:
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    pop = Population.build(net.split, net.hidden, 10, list(range(k)), output_scale=OUTPUT_SCALE,
                           samples=net.samples, temperature=torch.logspace(-4, -2, k).tolist(),
                           flip_ratio=FLIP_RATIO, device=device, graphs=graphs)
    pop.run(40)  # warm-up: buffers, first blocks, CUDA graphs
    seconds = timed(device, lambda: pop.run(steps))
    return {"net": net.name, "data": net.data, "chains": k, "graphs": pop.graphs,
            "us_per_step": seconds / steps * 1e6, "chain_steps_per_s": k * steps / seconds,
            "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 32, 128, 512])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if 1 not in args.sizes:
        parser.error(f"--sizes must include 1 (the baseline), but got {args.sizes}")
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")

    rows = []
    for net in load_nets(args.mnist):
        for k in args.sizes:
            for graphs in (True, False) if cuda else (None,):
                rows.append(measure(net, k, graphs, args.device, args.steps))
                print(f"done: {net.name}, K={k}, graphs={rows[-1]['graphs']}", flush=True)

    print(f"\nflip_ratio {FLIP_RATIO:g}, proposal=layer, metropolis, output_scale {OUTPUT_SCALE}, "
          f"{args.steps} steps, torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if cuda else f", {args.threads} thread(s)"))
    print("| net | K | graphs | µs per step | chain-steps/s | over K=1 | peak GPU memory |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        one = next(o for o in rows if o["net"] == r["net"] and o["chains"] == 1
                   and o["graphs"] == r["graphs"])
        r["over_one_chain"] = r["chain_steps_per_s"] / one["chain_steps_per_s"]
        memory = "-" if r["peak_gpu_gb"] is None else f"{r['peak_gpu_gb']:.2f} GB"
        print(f"| {r['net']} | {r['chains']} | {'on' if r['graphs'] else 'off'} "
              f"| {r['us_per_step']:,.0f} | {r['chain_steps_per_s']:,.0f} "
              f"| {r['over_one_chain']:.1f}x | {memory} |")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "population_scaling", "flip_ratio": FLIP_RATIO, "proposal": "layer",
        "acceptance": "metropolis", "output_scale": OUTPUT_SCALE, "steps": args.steps,
        "device": args.device, "gpu": torch.cuda.get_device_name() if cuda else None,
        "threads": args.threads, "torch": torch.__version__, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
