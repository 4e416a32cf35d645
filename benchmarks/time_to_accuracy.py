"""Time to accuracy on MNIST t10k: our chain against STE + Adam, per split seed.

For each split seed, net (784->10 and fully binary 784-256-10) and method, records test
accuracy over CPU time (``time.process_time``: this process's CPU seconds, one thread, so a
loaded machine does not shrink the budget). Ours runs within the net's budget (60 CPU-s for
784->10, 300 for 784-256-10); STE + Adam on the same net and split runs ``--ste-epochs`` epochs
at each of ``--ste-lrs`` (the best of them counts); the naive reference
(``naive_reference.NaiveSampler``: two full forward passes per step) runs within the budget when
asked for. Both go through ``mcmc-train``'s configuration. The verdict per seed: 784-256-10
ours >= STE - 1 point, 784->10 ours >= 90 %.

    python benchmarks/time_to_accuracy.py [--split-seeds 0 1 2] [--nets 784-10 784-256-10]
        [--methods ours ste naive] [--ours model.init=random ...]

Writes ``benchmarks/results/time_to_accuracy.json``. Without ../shared/data/mnist-t10k it uses
synthetic data of the same shape and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

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
#: CPU seconds our chain gets per net, and what it must reach (784-256-10: STE's best - 1 point).
BUDGET = {"784-10": 60.0, "784-256-10": 300.0}
GOAL = {"784-10": 0.90}
STE_GAP = 0.01

#: Per net: our chain's settings (full energy, incremental, one flip per step, slow cooling).
OURS = {
    # output_scale 2.8: logits stay below 80, so no per-sample shift (the faster kernel path);
    # the chain cools to 1e-5 and keeps sampling there instead of freezing (default floor 1e-6).
    # Both chosen on split seeds 3-5 (benchmarks/README), not on the seeds reported.
    "784-10": ["model.hidden=[]", "model.output_scale=2.8", "sampler.flip_ratio=0.0001",
               "sampler.temperature=2e-4", "schedule.cooling_rate=0.99998",
               "schedule.min_temperature=1e-5"],
    # T0 and output_scale: the best trial of the MNIST sweep (conf/hparams_search/mnist_mlp.yaml,
    # split seed 0's validation images; benchmarks/README); label smoothing 0.01 (split seeds
    # 3-5); the energy's smooth hidden units tanh(Z / 16) in place of the margin term, one flip
    # per step and cooling for the ~850k steps of 300 CPU-s (split seeds 3-4).
    "784-256-10": ["model.hidden=[256]", "model.output_scale=1.238", "sampler.flip_ratio=4e-6",
                   "sampler.temperature=2e-4", "schedule.cooling_rate=0.99999",
                   "sampler.smooth_hidden=16", "model.init=data",
                   "sampler.label_smoothing=0.01"],
}
STE = {"784-10": ["model.hidden=[]", "trainer=ste"],
       "784-256-10": ["model.hidden=[256]", "trainer=ste"]}


class _Budget(Exception):
    pass


class Curve(Callback):
    """Records (CPU seconds since start, test accuracy) per epoch; stops at the budget."""

    def __init__(self, budget: float) -> None:
        self.budget, self.start, self.points = budget, time.process_time(), []

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.points.append((time.process_time() - self.start, metrics["test_accuracy"]))
        if self.points[-1][0] >= self.budget:
            raise _Budget


def data_overrides(mnist: Path) -> tuple[list[str], str]:
    if mnist.exists():
        return ["dataset=idx", f"dataset.root={mnist}"], f"MNIST t10k ({mnist})"
    print(f"note: {mnist} not found: synthetic data of the same shape (accuracies not comparable)")
    return (["dataset=synthetic", "dataset.synthetic_samples=10000",
             "dataset.synthetic_shape=[1,28,28]", "dataset.synthetic_classes=10"],
            "synthetic 10,000 x 1x28x28")


def common_overrides(data: list[str], seed: int) -> list[str]:
    """What every run of ours and STE shares: no tracking, quiet, the MLP, this split."""
    return ["tracking=none", "trainer.verbose=false", "model=mlp", *data, *SPLIT,
            f"dataset.split_seed={seed}"]


def split_configs(data: list[str], seeds: list[int], overrides: list[str]
                  ) -> Iterator[tuple[int, DictConfig]]:
    """Per split seed: ``train``'s config on this script's split of ``data`` (from
    :func:`data_overrides`) plus ``overrides``; Hydra's config module is held while iterating."""
    register_configs()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        for seed in seeds:
            yield seed, compose(config_name="train",
                                overrides=[*common_overrides(data, seed), *overrides])


def run_trainer(overrides: list[str], budget: float) -> list[tuple[float, float]]:
    from omegaconf import OmegaConf

    cfg = compose(config_name="train", overrides=overrides)
    curve = Curve(budget)
    trainer = build_trainer(OmegaConf.to_object(cfg), callbacks=[curve])
    curve.start = time.process_time()
    try:
        trainer.train()
    except _Budget:
        pass
    return curve.points


def run_naive(overrides: list[str], budget: float, eval_every: float = 2.0) -> list:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_object(compose(config_name="train", overrides=overrides))
    data = load_dataset(cfg.dataset)
    model = build_model(cfg.model, data.input_shape, data.n_classes, seed=cfg.seed,
                        inputs=data.train.inputs)
    criterion = torch.nn.CrossEntropyLoss()
    sampler = NaiveSampler(model, criterion, data.train.inputs, data.train.targets,
                           temperature=cfg.sampler.temperature, flip_ratio=cfg.sampler.flip_ratio,
                           seed=cfg.seed)
    cooling, points = cfg.schedule.cooling_rate, []
    start = last = time.process_time()
    while True:
        sampler.step()
        sampler.temperature = max(sampler.temperature * cooling, cfg.schedule.min_temperature)
        now = time.process_time()
        if now - last >= eval_every:
            acc = evaluate(model, criterion, data.test.inputs, data.test.targets)[1]
            points.append((time.process_time() - start, acc))
            last = time.process_time()
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


def run_method(method: str, net: str, common: list[str], args: argparse.Namespace
               ) -> dict[str, Any]:
    """One method on one net: its curve and summary (STE: each learning rate, best counts)."""
    budget = args.budget or BUDGET[net]
    if method == "ours":
        points = run_trainer(common + OURS[net] + args.ours
                             + ["trainer.epochs=100000", "trainer.steps_per_epoch=2000"], budget)
        return {**summarise(points), "curve": points, "budget": budget}
    if method == "naive":
        points = run_naive(common + OURS[net], budget)
        return {**summarise(points), "curve": points, "budget": budget}
    runs = {lr: run_trainer(common + STE[net] + [f"trainer.lr={lr}",
                                                  f"trainer.epochs={args.ste_epochs}"],
                            float("inf")) for lr in args.ste_lrs}
    lr = max(runs, key=lambda r: max((a for _, a in runs[r]), default=0.0))
    return {**summarise(runs[lr]), "curve": runs[lr], "lr": lr, "epochs": args.ste_epochs,
            "per_lr": {str(r): {"best": max((a for _, a in p), default=float("nan")),
                                "final": p[-1][1] if p else float("nan"),
                                "cpu_s": p[-1][0] if p else 0.0} for r, p in runs.items()}}


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per split seed and net: ours' best against its goal (90 %, or STE's best - 1 point)."""
    out = []
    for seed in sorted({r["split_seed"] for r in rows}):
        for net in dict.fromkeys(r["net"] for r in rows):
            got = {r["method"]: r for r in rows if r["split_seed"] == seed and r["net"] == net}
            if "ours" not in got or (net not in GOAL and "ste" not in got):
                continue
            goal = GOAL.get(net, got["ste"]["best"] - STE_GAP if "ste" in got else None)
            out.append({"split_seed": seed, "net": net, "ours": got["ours"]["best"],
                        "ste": got["ste"]["best"] if "ste" in got else None, "goal": goal,
                        "met": got["ours"]["best"] >= goal})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=None,
                        help="CPU seconds per run of ours and naive (default: per net, "
                             + ", ".join(f"{n} {b:.0f}" for n, b in BUDGET.items()) + ")")
    parser.add_argument("--nets", nargs="+", default=list(OURS))
    parser.add_argument("--methods", nargs="+", default=["ours", "ste"],
                        choices=["ours", "ste", "naive"])
    parser.add_argument("--split-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ours", nargs="*", default=[],
                        help="extra mcmc-train overrides for ours (e.g. model.init=random)")
    parser.add_argument("--ste-lrs", nargs="+", type=float, default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--ste-epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / "time_to_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    register_configs()
    data, data_name = data_overrides(args.mnist)
    rows = []
    with initialize_config_module(config_module="conf", version_base="1.3"):
        for seed in args.split_seeds:
            common = common_overrides(data, seed)
            for net in args.nets:
                for method in args.methods:
                    row = {"split_seed": seed, "net": net, "method": method,
                           **run_method(method, net, common, args)}
                    rows.append(row)
                    print(f"seed {seed} {net:<11} {method:<6} best={row['best']:.4f} "
                          + (f"lr={row['lr']} " if "lr" in row else "")
                          + " ".join(f"@{c}s={row[f'acc_at_{c}s']}" for c in CHECKPOINTS),
                          flush=True)

    print(f"\n{data_name}; CPU seconds, {args.threads} thread(s); ours: "
          f"{' '.join(args.ours) or 'defaults'}; STE: best of lr {args.ste_lrs}, "
          f"{args.ste_epochs} epochs")
    print(f"{'seed':>4} {'net':<11} {'method':<6} {'s to 85%':>9} {'best':>7} "
          + " ".join(f"{'@' + str(c) + 's':>7}" for c in CHECKPOINTS))
    for r in rows:
        to85 = f"{r['seconds_to_85']:.1f}" if r["seconds_to_85"] is not None else "never"
        print(f"{r['split_seed']:>4} {r['net']:<11} {r['method']:<6} {to85:>9} {r['best']:>7.4f} "
              + " ".join(f"{r[f'acc_at_{c}s']:>7.4f}" if r[f"acc_at_{c}s"] is not None
                         else f"{'-':>7}" for c in CHECKPOINTS))
    checks = verdicts(rows)
    for v in checks:
        print(f"seed {v['split_seed']} {v['net']:<11} ours {v['ours']:.4f} vs goal "
              f"{v['goal']:.4f}: {'met' if v['met'] else 'NOT met'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": data_name, "budget": args.budget or BUDGET,
                                     "clock": "process CPU seconds", "threads": args.threads,
                                     "ours_overrides": OURS, "ours_extra": args.ours,
                                     "ste_lrs": args.ste_lrs, "ste_epochs": args.ste_epochs,
                                     "split": SPLIT, "machine": platform.platform(),
                                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     "verdicts": checks, "rows": rows}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
