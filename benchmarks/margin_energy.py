"""Exploration on fully binary 784-256-10: the energy plus a penalty on hidden pre-activations near
their threshold, against the plain energy, with everything else as in ``time_to_accuracy.py``.

The energy of a chain becomes ``CE + lam * mean_{n, j} relu(kappa - |Z_hidden[j, n]|)``: the
mean cross-entropy plus a hinge on every hidden unit's integer pre-activation over the energy
set. It stays exact and incremental: a hidden step changes only the flipped rows of ``Z_hidden``,
so only their penalty is recomputed. It is the engine's ``sampler.margin_weight`` (``lam``) and
``sampler.margin`` (``kappa``).

    python benchmarks/margin_energy.py [--lam 0 0.05] [--kappa 20] [--seed 0] [--steps 800000]

One chain per ``lam``, one after another (one thread), 800k steps each (about 300 s on the
2-core CPU), on the seeded 8k/2k split of MNIST t10k with 1 % held out for validation (7,920
training images), ``output_scale`` 0.7, T0 1e-4, cooling 0.999996, flip_ratio 1e-5. Prints the
test accuracy every ``--every`` steps and, per ``lam``, the mean of the last 10 readings and the
best; writes JSON. Without ../shared/data/mnist-t10k it uses synthetic data of the same shape
and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mcmc_core.data import DataConfig, DatasetNotFoundError, load_dataset
from mcmc_core.population import Population
from mcmc_core.schedules import ChainSchedules

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "margin_energy.json"
SETTINGS = dict(output_scale=0.7, temperature=1e-4, cooling_rate=0.999996,
                min_temperature=1e-6, flip_ratio=1e-5)


def load(mnist: Path):  # type: ignore[no-untyped-def]
    try:
        data = load_dataset(DataConfig(name="idx", root=str(mnist), val_fraction=0.01))
        return data, f"MNIST t10k ({mnist})"
    except DatasetNotFoundError:
        print(f"note: {mnist} not found: synthetic data of the same shape (accuracies not "
              "comparable)")
        data = load_dataset(DataConfig(name="synthetic", synthetic_samples=10000,
                                       synthetic_shape=[1, 28, 28], synthetic_classes=10,
                                       val_fraction=0.01))
        return data, "synthetic 10,000 x 1x28x28"


def run(data, lam: float, kappa: float, seed: int, steps: int, every: int) -> dict:  # type: ignore[no-untyped-def]
    cooling = ChainSchedules.exponential([SETTINGS["temperature"]], SETTINGS["cooling_rate"],
                                          SETTINGS["min_temperature"])
    pop = Population.build(data.train, [256], data.n_classes, seeds=[seed],
                           output_scale=SETTINGS["output_scale"],
                           temperature=SETTINGS["temperature"],
                           flip_ratio=SETTINGS["flip_ratio"], schedule=cooling.temperatures,
                           margin_weight=lam, margin=int(kappa))
    rows, seconds = [], 0.0
    for done in range(every, steps + 1, every):
        start = time.perf_counter()
        pop.run(every)
        seconds += time.perf_counter() - start
        _, train_acc = pop.evaluate(data.train)
        _, test_acc = pop.evaluate(data.test)
        rows.append(dict(steps=done, seconds=round(seconds, 1), train_acc=float(train_acc[0]),
                         test_acc=float(test_acc[0])))
        print(f"lam {lam:g}: {done:>8,} steps {seconds:6.1f} s  train {float(train_acc[0]):.4f}"
              f"  test {float(test_acc[0]):.4f}", flush=True)
    if pop.cache.margin_sums is not None:  # the incremental term equals a fresh one
        fresh = pop.cache.margin_sum(pop.net.preactivations(pop.energy_set.inputs_t)[0])
        assert torch.equal(pop.cache.margin_sums, fresh)
    last = [r["test_acc"] for r in rows[-10:]]
    return dict(lam=lam, kappa=kappa, seed=seed, mean_last_10=sum(last) / len(last),
                best=max(r["test_acc"] for r in rows), final_train=rows[-1]["train_acc"],
                curve=rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lam", type=float, nargs="+", default=[0.0, 0.05])
    p.add_argument("--kappa", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=800_000)
    p.add_argument("--every", type=int, default=20_000)
    p.add_argument("--mnist", type=Path, default=MNIST)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args()
    torch.set_num_threads(1)
    data, name = load(args.mnist)
    results = [run(data, lam, args.kappa, args.seed, args.steps, args.every) for lam in args.lam]
    print("| lam | kappa | seed | test, mean of the last 10 | best | final train |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['lam']:g} | {r['kappa']:g} | {r['seed']} | {r['mean_last_10']:.2%} | "
              f"{r['best']:.2%} | {r['final_train']:.2%} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": name, "settings": SETTINGS, "steps": args.steps,
                                     "machine": platform.platform(),
                                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     "results": results}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
