"""Time to accuracy on MNIST t10k: our chain, the naive original algorithm and the STE baseline.

For each net (784->10 and fully binary 784-256-10) and method, trains within a wall-clock budget
and records test accuracy over time: seconds to reach 85 % test accuracy (or the best reached
when never), and the accuracy after 60 s and 300 s (when the budget allows). Ours and STE run
through ``mcmc-train``'s configuration; the naive reference is ``naive_reference.NaiveSampler``
(two full forward passes per step, whole-tensor backup) on the same data and net.

    python benchmarks/time_to_accuracy.py [--budget 300] [--nets 784-10 784-256-10]

Writes ``benchmarks/results/time_to_accuracy.json``. Without ../shared/data/mnist-t10k it uses
synthetic data of the same shape and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module

sys.path.insert(0, str(Path(__file__).resolve().parent))

from naive_reference import NaiveSampler  # noqa: E402

from mcmc_core.config import build_trainer, register_configs  # noqa: E402
from mcmc_core.data import load_dataset  # noqa: E402
from mcmc_core.energy import evaluate  # noqa: E402
from mcmc_core.models import build_model  # noqa: E402
from mcmc_core.trainers import Callback  # noqa: E402

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"
TARGET = 0.85
CHECKPOINTS = (60, 300)
#: The seeded 8k/2k split (``test_fraction`` 0.2); all but 1 % of the 8k train (7,920) for
#: training, 80 for the per-epoch validation metrics (unused here).
SPLIT = ["dataset.val_fraction=0.01"]

#: Per net: our chain's settings (full energy, incremental, one flip per step, slow cooling).
OURS = {
    "784-10": ["model.hidden=[]", "model.output_scale=3.0", "sampler.flip_ratio=0.0001",
               "sampler.temperature=2e-4", "schedule.cooling_rate=0.99996"],
    "784-256-10": ["model.hidden=[256]", "model.output_scale=0.7", "sampler.flip_ratio=0.00001",
                   "sampler.temperature=1e-4", "schedule.cooling_rate=0.999996"],
}
STE = {"784-10": ["model.hidden=[]", "trainer=ste"],
       "784-256-10": ["model.hidden=[256]", "trainer=ste"]}


class _Budget(Exception):
    pass


class Curve(Callback):
    """Records (seconds since start, test accuracy) per epoch; stops at the budget."""

    def __init__(self, budget: float) -> None:
        self.budget, self.start, self.points = budget, time.perf_counter(), []

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.points.append((time.perf_counter() - self.start, metrics["test_accuracy"]))
        if self.points[-1][0] >= self.budget:
            raise _Budget


def data_overrides(mnist: Path) -> tuple[list[str], str]:
    if mnist.exists():
        return ["dataset=idx", f"dataset.root={mnist}"], f"MNIST t10k ({mnist})"
    print(f"note: {mnist} not found: synthetic data of the same shape (accuracies not comparable)")
    return (["dataset=synthetic", "dataset.synthetic_samples=10000",
             "dataset.synthetic_shape=[1,28,28]", "dataset.synthetic_classes=10"],
            "synthetic 10,000 x 1x28x28")


def run_trainer(overrides: list[str], budget: float) -> list[tuple[float, float]]:
    from omegaconf import OmegaConf

    cfg = compose(config_name="train", overrides=overrides)
    curve = Curve(budget)
    trainer = build_trainer(OmegaConf.to_object(cfg), callbacks=[curve])
    curve.start = time.perf_counter()
    try:
        trainer.train()
    except _Budget:
        pass
    return curve.points


def run_naive(overrides: list[str], budget: float, eval_every: float = 2.0) -> list:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_object(compose(config_name="train", overrides=overrides))
    data = load_dataset(cfg.dataset)
    model = build_model(cfg.model, data.input_shape, data.n_classes, seed=cfg.seed)
    criterion = torch.nn.CrossEntropyLoss()
    sampler = NaiveSampler(model, criterion, data.train.inputs, data.train.targets,
                           temperature=cfg.sampler.temperature, flip_ratio=cfg.sampler.flip_ratio,
                           seed=cfg.seed)
    cooling, points = cfg.schedule.cooling_rate, []
    start = last = time.perf_counter()
    while True:
        sampler.step()
        sampler.temperature = max(sampler.temperature * cooling, cfg.schedule.min_temperature)
        now = time.perf_counter()
        if now - last >= eval_every:
            acc = evaluate(model, criterion, data.test.inputs, data.test.targets)[1]
            points.append((time.perf_counter() - start, acc))
            last = time.perf_counter()
            if points[-1][0] >= budget:
                return points


def summarise(points: list[tuple[float, float]]) -> dict[str, Any]:
    reached = next((t for t, a in points if a >= TARGET), None)
    out: dict[str, Any] = {"seconds_to_85": reached,
                           "best": max((a for _, a in points), default=float("nan"))}
    for c in CHECKPOINTS:
        before = [a for t, a in points if t <= c]
        out[f"acc_at_{c}s"] = before[-1] if before and points[-1][0] >= c * 0.98 else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--nets", nargs="+", default=list(OURS))
    parser.add_argument("--methods", nargs="+", default=["ours", "naive", "ste"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--ste-lr", type=float, default=None,
                        help="Adam learning rate of ste (default: trainer.lr's default)")
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / "time_to_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    register_configs()
    data, data_name = data_overrides(args.mnist)
    common = ["tracking=none", "trainer.verbose=false", "model=mlp", *data, *SPLIT]
    rows = []
    with initialize_config_module(config_module="conf", version_base="1.3"):
        for net in args.nets:
            for method in args.methods:
                if method == "ours":
                    points = run_trainer(common + OURS[net] + ["trainer.epochs=100000",
                                                               "trainer.steps_per_epoch=2000"],
                                         args.budget)
                elif method == "naive":
                    points = run_naive(common + OURS[net], args.budget)
                else:
                    lr = [f"trainer.lr={args.ste_lr}"] if args.ste_lr else []
                    points = run_trainer(common + STE[net] + lr + ["trainer.epochs=100000"],
                                         args.budget)
                row = {"net": net, "method": method, **summarise(points), "curve": points}
                rows.append(row)
                print(f"{net:<11} {method:<6} to85={row['seconds_to_85']} best={row['best']:.4f} "
                      + " ".join(f"@{c}s={row[f'acc_at_{c}s']}" for c in CHECKPOINTS), flush=True)

    print(f"\n{data_name}; budget {args.budget:.0f} s; {args.threads} thread(s)")
    print(f"{'net':<11} {'method':<6} {'s to 85%':>9} {'best':>7} "
          + " ".join(f"{'@' + str(c) + 's':>7}" for c in CHECKPOINTS))
    for r in rows:
        to85 = f"{r['seconds_to_85']:.1f}" if r["seconds_to_85"] is not None else "never"
        print(f"{r['net']:<11} {r['method']:<6} {to85:>9} {r['best']:>7.4f} "
              + " ".join(f"{r[f'acc_at_{c}s']:>7.4f}" if r[f"acc_at_{c}s"] is not None
                         else f"{'-':>7}" for c in CHECKPOINTS))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": data_name, "budget": args.budget,
                                     "threads": args.threads, "ste_lr": args.ste_lr,
                                     "split": SPLIT, "machine": platform.platform(),
                                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     "rows": rows}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
