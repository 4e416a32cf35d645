"""The original algorithm's configuration against a full-data Metropolis chain, same data, same run.

Runs ``mcmc-train``'s composition (``conf/train.yaml``) in-process for both configurations on the
MNIST test split (seeded 7,200 train / 800 validation / 2,000 test), an MLP 784->10, and prints test
accuracy, wall time and their ratios; writes the table as JSON.

    python benchmarks/original_vs_full.py [--mnist ../shared/data/mnist-t10k] [--json out.json]

Without the MNIST folder it falls back to synthetic data of the same shape and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from sweeps.cli.train_app import run

DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"

CONFIGS = {
    # The original: a fresh mini-batch per step, flip_ratio = temperature, all layers flipped,
    # temperature halved every 5 epochs, 100 epochs of one step per mini-batch.
    "original": ["experiment=original", "trainer.epochs=100"],
    # Ours: full training-set energy (cached), one weight flipped per step, exponential cooling.
    "full": ["trainer.epochs=20", "trainer.steps_per_epoch=2000", "sampler.flip_ratio=0.0001",
             "schedule.cooling_rate=0.9999", "model.output_scale=2.0"],
}


def data_overrides(mnist: Path) -> tuple[list[str], str]:
    if (mnist / "t10k-images-idx3-ubyte.gz").exists() or (mnist / "t10k-images-idx3-ubyte").exists():
        return ["dataset=idx", f"dataset.root={mnist}"], f"MNIST t10k ({mnist})"
    print(f"note: {mnist} not found; using synthetic data of the same shape (accuracies differ)")
    return (["dataset=synthetic", "dataset.synthetic_samples=10000",
             "dataset.synthetic_shape=[1,28,28]", "dataset.synthetic_classes=10"],
            "synthetic 10,000 x 1x28x28")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "original_vs_full.json")
    args = parser.parse_args()

    data, data_name = data_overrides(args.mnist)
    common = ["tracking=none", "model=mlp", "model.hidden=[]", "trainer.verbose=false", *data]
    rows = {}
    with initialize_config_module(config_module="conf", version_base="1.3"):
        for name, overrides in CONFIGS.items():
            cfg = compose(config_name="train", overrides=common + overrides)
            start = time.perf_counter()
            final = run(cfg)
            rows[name] = {"overrides": overrides, "test_accuracy": final["test_accuracy"],
                          "best_val_test_accuracy": final["best_test_accuracy"],
                          "seconds": time.perf_counter() - start}

    print(f"\n{data_name}, MLP 784->10, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'config':<10} {'test acc':>9} {'seconds':>8}")
    for name, row in rows.items():
        print(f"{name:<10} {row['test_accuracy']:>9.4f} {row['seconds']:>8.1f}")
    acc_ratio = rows["full"]["test_accuracy"] / rows["original"]["test_accuracy"]
    time_ratio = rows["full"]["seconds"] / rows["original"]["seconds"]
    print(f"ratio full/original: test accuracy {acc_ratio:.2f}x, time {time_ratio:.2f}x")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": data_name, "machine": platform.platform(),
                                     "date": time.strftime("%Y-%m-%d"), "rows": rows,
                                     "accuracy_ratio": acc_ratio, "time_ratio": time_ratio},
                                    indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
