"""Steps per second of one chain: the naive reference against ours (full-forward and population).

MLP 784-100-10 (binary, seed 0), full energy on 8,000 samples of MNIST t10k (``idx`` loader;
without the folder, synthetic data of the same shape, and it says so), Metropolis at T = 1e-3,
``proposal=layer``. Three chains from the same weights and seed, measured in the same run:

* ``naive``: :mod:`naive_reference`, the original algorithm (two full forwards per step,
  whole-tensor backup and restore);
* ``full``: ``SignFlipSampler`` on ``FullEnergy`` (cached energy: one forward a step), the
  trainer's general engine (``sampler.incremental=false``, CNNs, ...);
* ``population``: a :class:`~mcmc_core.population.Population` of one, the trainer's engine for
  binary MLPs (no forward pass: cached pre-activations updated from the flips), on its default
  kernel: the fused one (numba) where installed;
* ``tensor path``: the same population on tensor operations only (``kernel="torch"``, the
  fallback without numba, and the kernel of every device); it takes the same steps.

For each thread count and flip ratio the three are timed in interleaved rounds of ``--seconds``
each; the table shows each chain's best round (the least disturbed by other jobs on a shared
machine, as ``timeit`` advises), the JSON also every round and the medians. A short check from
a common start reports whether ``naive`` and ``full`` took the same steps (the same random
stream; ``naive`` computes its loss differently, see :mod:`naive_reference`) and whether the
population's cached energy equals a full forward of its weights (it draws from its own
counter-based stream, so its steps differ).

    python benchmarks/step_throughput.py [--threads 1 2] [--flip-ratio 0.0001 0.002]
        [--seconds 1.5] [--repeats 5] [--mnist ../shared/data/mnist-t10k] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive_reference import NaiveSampler  # noqa: E402

from mcmc_core import SignFlipSampler, binary_parameters  # noqa: E402
from mcmc_core.data import DataConfig, DatasetNotFoundError, load_dataset  # noqa: E402
from mcmc_core.energy import FullEnergy  # noqa: E402
from mcmc_core.functional import flip_count  # noqa: E402
from mcmc_core.models import ModelConfig, build_model  # noqa: E402
from mcmc_core.population import EnergySet, Population, StackedMLP  # noqa: E402

DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "step_throughput.json"
TEMPERATURE, SAMPLES, HIDDEN = 1e-3, 8000, [100]
METHODS = ("naive", "full", "population", "tensor_path")


def energy_set(mnist: Path) -> tuple[FullEnergy, str]:
    """8,000 energy samples: MNIST t10k when present, else synthetic 1x28x28 with 10 classes."""
    splits = dict(test_fraction=0.1, val_fraction=0.05)  # 10,000 -> 8,550 train
    try:
        data = load_dataset(DataConfig(name="idx", root=str(mnist), **splits))
        name = f"MNIST t10k ({mnist})"
    except DatasetNotFoundError:
        print(f"note: {mnist} not found; using synthetic data of the same shape")
        data = load_dataset(DataConfig(name="synthetic", synthetic_samples=10000,
                                       synthetic_shape=[1, 28, 28], synthetic_classes=10,
                                       **splits))
        name = "synthetic 1x28x28, 10 classes"
    energy = FullEnergy(nn.CrossEntropyLoss(), data.train, samples=SAMPLES, seed=0)
    energy.split = data.train  # the population builds its own (identical) energy set from it
    return energy, f"{name}, {len(energy.targets)} energy samples"


Chain = tuple[Callable[[], float], Callable[[], tuple[int, int]], list[torch.Tensor]]


def make_chains(model: nn.Module, energy: FullEnergy,
                flip_ratio: float) -> tuple[dict[str, Chain], Population]:
    """``{method: (step, counts, weights)}`` for three copies of ``model``, all with seed 0, and
    the population behind ``population``."""
    chains: dict[str, Chain] = {}
    naive = NaiveSampler(copy.deepcopy(model), nn.CrossEntropyLoss(), energy.inputs,
                         energy.targets, temperature=TEMPERATURE, flip_ratio=flip_ratio, seed=0)
    chains["naive"] = (naive.step, lambda: (naive.n_steps, naive.n_accepted), naive.weights)
    m = copy.deepcopy(model)
    sampler = SignFlipSampler(binary_parameters(m), temperature=TEMPERATURE,
                              flip_ratio=flip_ratio, cache_energy=True, seed=0)
    closure = energy.closure(m)
    chains["full"] = (lambda: sampler.step(closure), sampler.counts, binary_parameters(m))
    pops = {name: Population(StackedMLP.from_models([model], (1, 28, 28)),
                             EnergySet(energy.split, samples=SAMPLES, seed=0),
                             temperature=TEMPERATURE, flip_ratio=flip_ratio, seeds=[0],
                             kernel=kernel)
            for name, kernel in (("population", "auto"), ("tensor_path", "torch"))}
    for name, p in pops.items():
        chains[name] = (p.step, lambda p=p: (p.n_steps, int(p.n_accepted[0])), p.net.weights)
    return chains, pops["population"]


def steps_per_second(step: Callable[[], float], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        step()
        n += 1
    return n / elapsed


def same_steps(model: nn.Module, energy: FullEnergy, flip_ratio: float, steps: int) -> dict:
    """Run each chain ``steps`` steps from the same start; which end with the same weights?"""
    chains, pop = make_chains(model, energy, flip_ratio)
    for step, _, _ in chains.values():
        for _ in range(steps):
            step()
    w = {k: v[2] for k, v in chains.items()}
    same = all(torch.equal(p, q) for p, q in zip(w["naive"], w["full"]))
    kernels = all(torch.equal(p, q) for p, q in zip(w["population"], w["tensor_path"]))
    model = pop.export(0)
    forward = energy.closure(model)()
    return {"steps": steps, "naive_vs_full": same, "fused": pop.cache.fused,
            "population_vs_tensor_path": kernels,
            "population_energy": float(pop.energies[0]), "population_forward_energy": forward,
            "population_cache_exact": bool(torch.equal(pop.energies, pop.full_energies()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--flip-ratio", type=float, nargs="+", default=[1e-4, 2e-3])
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one timed round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per chain (best kept)")
    parser.add_argument("--check-steps", type=int, default=40)
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    energy, data_name = energy_set(args.mnist)
    model = build_model(ModelConfig(name="mlp", hidden=HIDDEN), (1, 28, 28), 10, seed=0)
    sizes = [w.numel() for w in binary_parameters(model)]
    torch.set_num_threads(1)
    checks = {fr: same_steps(model, energy, fr, args.check_steps) for fr in args.flip_ratio}
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for fr in args.flip_ratio:
            chains, _ = make_chains(model, energy, fr)
            for step, _, _ in chains.values():
                for _ in range(3):  # warm-up; the population builds its caches
                    step()
            rounds: dict[str, list[float]] = {m: [] for m in METHODS}
            for _ in range(args.repeats):
                for method, (step, _, _) in chains.items():
                    rounds[method].append(steps_per_second(step, args.seconds))
            rate = {m: max(r) for m, r in rounds.items()}
            median = {m: statistics.median(r) for m, r in rounds.items()}
            proposed, accepted = chains["population"][1]()
            rows.append({"threads": threads, "flip_ratio": fr,
                         "flips_per_layer": [flip_count(fr, n) for n in sizes],
                         **{f"{m}_steps_per_s": rate[m] for m in METHODS},
                         **{f"{m}_rounds": rounds[m] for m in METHODS},
                         "median_population_over_naive": median["population"] / median["naive"],
                         "full_over_naive": rate["full"] / rate["naive"],
                         "population_over_naive": rate["population"] / rate["naive"],
                         "population_over_full": rate["population"] / rate["full"],
                         "tensor_path_over_naive": rate["tensor_path"] / rate["naive"],
                         "acceptance_rate": accepted / max(1, proposed),
                         "same_steps": checks[fr]})

    load = (load_before, os.getloadavg()[0])
    print(f"\nMLP 784-100-10 on {data_name}; T={TEMPERATURE}, proposal=layer, "
          f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"1-min load average {load[0]:.2f} before / {load[1]:.2f} after")
    kernel = "fused" if checks[args.flip_ratio[0]]["fused"] else "tensor path: no numba"
    print(f"| threads | flip_ratio | flips (layer 0/1) | naive steps/s | full steps/s "
          f"| population ({kernel}) steps/s | tensor path steps/s | full / naive "
          f"| population / naive | population / full | tensor path / naive |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rates = [f"{r[f'{m}_steps_per_s']:.1f}" for m in METHODS]
        ratios = [f"{r[k]:.1f}x" for k in ("full_over_naive", "population_over_naive",
                                           "population_over_full", "tensor_path_over_naive")]
        flips = "/".join(map(str, r["flips_per_layer"]))
        cells = [str(r["threads"]), f"{r['flip_ratio']:g}", flips, *rates, *ratios]
        print("| " + " | ".join(cells) + " |")
    for fr, c in checks.items():
        print(f"after {c['steps']} steps (flip_ratio {fr:g}): naive and full same weights "
              f"{c['naive_vs_full']}; population and tensor path same weights "
              f"{c['population_vs_tensor_path']}; population cached energy "
              f"{c['population_energy']:.6f}, "
              f"full forward {c['population_forward_energy']:.6f}, caches exact "
              f"{c['population_cache_exact']}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "step_throughput", "model": "mlp 784-100-10", "data": data_name,
        "temperature": TEMPERATURE, "proposal": "layer", "seconds_per_round": args.seconds,
        "repeats": args.repeats, "torch": torch.__version__, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "load_average_before_after": load,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
