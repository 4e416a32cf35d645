"""Does the sign of a chain's averaged weights generalise better than its last sample?

Runs ``time_to_accuracy.py``'s chain ("ours") for one net and split seed within its CPU budget
and keeps, per epoch (2,000 steps), an exponential moving average of every binary weight at each
``--decays`` (per epoch); each epoch it evaluates on the test split the one binary net whose
weights are the signs of each average (ties keep the current sign) beside the chain's own.
The CPU seconds spent on the averages and their evaluation are not counted in the budget.
Without ../shared/data/mnist-t10k it uses synthetic data of the same shape and says so.

    python benchmarks/weight_average.py --net 784-256-10 --split-seeds 3 4 \
        [--ours schedule.min_temperature=2e-5 ...]

Prints the best test accuracy of the chain and of each average, and writes
``benchmarks/results/weight_average_<net>.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

import time_to_accuracy as tta
from mcmc_core.config import build_trainer
from mcmc_core.energy import evaluate
from mcmc_core.layers import binary_parameters
from mcmc_core.trainers import Callback


class SignOfAverage(Callback):
    """Per epoch: updates the weight averages and records the test accuracy of their signs."""

    def __init__(self, budget: float, decays: list[float]) -> None:
        self.budget, self.decays = budget, decays
        self.start, self.excluded, self.averages, self.rows = time.process_time(), 0.0, None, []

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        t0 = time.process_time()
        weights = [p.detach().clone() for p in binary_parameters(trainer.model)]
        if self.averages is None:
            self.averages = {d: [w.clone() for w in weights] for d in self.decays}
        for d, average in self.averages.items():
            for a, w in zip(average, weights):
                a.mul_(d).add_(w, alpha=1 - d)
        row = {"step": trainer.step, "test": metrics["test_accuracy"],
               "train": metrics["train_accuracy"]}
        model = copy.deepcopy(trainer.model)
        for d, average in self.averages.items():
            for p, a, w in zip(binary_parameters(model), average, weights):
                p.data.copy_(torch.where(a == 0, w, torch.sign(a)))
            row[str(d)] = evaluate(model, trainer.criterion, trainer.data.test.inputs,
                                   trainer.data.test.targets)[1]
        self.excluded += time.process_time() - t0
        row["cpu_s"] = time.process_time() - self.start - self.excluded
        self.rows.append(row)
        if row["cpu_s"] >= self.budget:
            raise tta._Budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="784-256-10", choices=list(tta.OURS))
    parser.add_argument("--split-seeds", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--decays", nargs="+", type=float, default=[0.9, 0.97, 0.99])
    parser.add_argument("--ours", nargs="*", default=[], help="extra mcmc-train overrides")
    parser.add_argument("--budget", type=float, default=None,
                        help="CPU seconds per run (default: time_to_accuracy.py's per net)")
    parser.add_argument("--mnist", type=Path, default=tta.MNIST)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, data_name = tta.data_overrides(args.mnist)
    results = []
    overrides = [*tta.OURS[args.net], *args.ours, "trainer.epochs=100000",
                 "trainer.steps_per_epoch=2000"]
    for seed, cfg in tta.split_configs(data, args.split_seeds, overrides):
        average = SignOfAverage(args.budget or tta.BUDGET[args.net], args.decays)
        trainer = build_trainer(OmegaConf.to_object(cfg), callbacks=[average])
        average.start = time.process_time()
        try:
            trainer.train()
        except tta._Budget:
            pass
        best = {k: max(r[k] for r in average.rows)
                for k in ["test", *map(str, args.decays)]}
        results.append({"split_seed": seed, "best": best, "rows": average.rows})
        print(f"seed {seed} {args.net} {' '.join(args.ours) or 'defaults'}: best test "
              f"chain {best['test']:.4f}, sign of average "
              + ", ".join(f"(decay {d}) {best[str(d)]:.4f}" for d in args.decays),
              flush=True)
    out = args.json or Path(__file__).parent / "results" / f"weight_average_{args.net}.json"
    out.write_text(json.dumps({"data": data_name, "net": args.net, "ours_extra": args.ours,
                               "decays_per_2000_steps": args.decays, "results": results},
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
