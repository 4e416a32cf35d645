"""Does a smooth hidden activation in the energy make the binary 784-256-10 generalise better?

The engine's chain scores a candidate with the binary net itself: hidden units ``sign(Z)`` (``Z``
the integer pre-activation), cross-entropy with label smoothing plus the hidden-margin term. This
script runs the same Metropolis chain (one weight flip per step, its layer drawn with probability
1/2, exponential cooling) on that energy (``sign``) and on one whose hidden units are
``tanh(Z / tau)`` in the energy only (``tanh``, no margin term): the net stays binary, and every
accuracy printed is the binary net's, read through the engine's own model. All energies see the
same proposals and uniform draws, from ``time_to_accuracy.py``'s 784-256-10 start
(``model.init=data``), settings and split. A plain-torch prototype (about 0.5 ms a step on one
thread, not the engine's fused kernel), so it compares energies at equal steps, not CPU seconds.
Without ../shared/data/mnist-t10k it uses synthetic data of the same shape and says so.

    python benchmarks/smooth_hidden.py --split-seeds 3 4 --taus 8 --steps 200000

Prints each run's best and last test accuracy and writes
``benchmarks/results/smooth_hidden.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

import time_to_accuracy as tta
from mcmc_core.data import load_dataset
from mcmc_core.energy import evaluate
from mcmc_core.layers import BinaryLayer, sign
from mcmc_core.models import build_model


#: time_to_accuracy.py's 784-256-10 start and energy settings before the engine had the smooth
#: activation (the sign energy with its margin term), which this measurement compared against.
SETTINGS = [*tta.OURS["784-256-10"], "sampler.smooth_hidden=0", "sampler.margin_weight=0.05321"]


class Chain:
    """One chain on a one-hidden-layer binary MLP; ``tau`` 0 is the engine's sign energy."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, sampler: Any,
                 tau: float) -> None:
        self.model, self.y, self.tau = model, y, tau
        self.layers = [m for m in model.modules() if isinstance(m, BinaryLayer)]
        assert len(self.layers) == 2, "one hidden layer"
        self.w1, self.w2 = (layer.weight.data.clone() for layer in self.layers)
        self.x = sign(x.flatten(1))
        self.out_scale = self.layers[1].scale
        self.eps = sampler.label_smoothing
        self.lam = sampler.margin_weight if tau == 0 else 0.0
        self.kappa = float(sampler.margin)
        self.refresh()
        if tau == 0:  # the energy's net is the engine's: same logits
            with torch.no_grad():
                assert torch.allclose(self.logits, model(x), atol=1e-4)

    def act(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z / self.tau) if self.tau else sign(z)

    def margin(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.kappa - z.abs()).sum() * self.lam / z.shape[0] / self.w1.shape[0]

    def cross_entropy(self, logits: torch.Tensor) -> float:
        n_classes = logits.shape[1]
        return float((torch.logsumexp(logits, 1)
                      - (1 - self.eps) * logits.gather(1, self.y[:, None])[:, 0]
                      - self.eps / n_classes * logits.sum(1)).mean())

    def refresh(self) -> None:
        """Everything from the weights (clears the incremental updates' rounding)."""
        self.z = self.x @ self.w1.T
        self.a = self.act(self.z)
        self.logits = self.out_scale * self.a @ self.w2.T
        self.ce = self.cross_entropy(self.logits)

    def step(self, draws: list[float], temperature: float) -> bool:
        """One proposal from four uniform draws (layer, row, column, acceptance)."""
        hidden = draws[0] < 0.5
        w = self.w1 if hidden else self.w2
        j, i = int(draws[1] * w.shape[0]), int(draws[2] * w.shape[1])
        s = float(w[j, i])
        if hidden:
            z = self.z[:, j] - 2 * s * self.x[:, i]
            a = self.act(z)
            logits = self.logits + self.out_scale * (a - self.a[:, j])[:, None] * self.w2[:, j]
            d_margin = float(self.margin(z) - self.margin(self.z[:, j])) if self.lam else 0.0
        else:
            logits = self.logits.clone()
            logits[:, j] -= 2 * s * self.out_scale * self.a[:, i]
            d_margin = 0.0
        ce = self.cross_entropy(logits)
        d_energy = ce - self.ce + d_margin
        if d_energy > 0 and draws[3] >= math.exp(-d_energy / temperature):
            return False
        w[j, i] = -s
        if hidden:
            self.z[:, j], self.a[:, j] = z, a
        self.logits, self.ce = logits, ce
        return True

    def accuracy(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The binary net's accuracy: the engine's model with the chain's weights."""
        for layer, w in zip(self.layers, (self.w1, self.w2)):
            layer.weight.data.copy_(w)
        return evaluate(self.model, torch.nn.CrossEntropyLoss(), inputs, targets)[1]


def run(cfg: Any, tau: float, args: argparse.Namespace) -> dict[str, Any]:
    data = load_dataset(cfg.dataset)
    model = build_model(cfg.model, data.input_shape, data.n_classes, seed=cfg.seed,
                        inputs=data.train.inputs)
    chain = Chain(model, data.train.inputs, data.train.targets, cfg.sampler, tau)
    draws = torch.rand(args.steps, 4, generator=torch.Generator().manual_seed(cfg.seed),
                       dtype=torch.float64).tolist()
    temperature, accepted, rows, start = cfg.sampler.temperature, 0, [], time.process_time()
    for step, d in enumerate(draws, 1):
        accepted += chain.step(d, temperature)
        temperature *= args.cooling
        if step % args.every == 0:
            chain.refresh()
            rows.append({"step": step, "cpu_s": round(time.process_time() - start, 1),
                         "accepted": accepted,
                         "test": chain.accuracy(data.test.inputs, data.test.targets),
                         "train": chain.accuracy(data.train.inputs, data.train.targets)})
    return {"best_test": max(r["test"] for r in rows), "last": rows[-1], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seeds", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--taus", nargs="+", type=float, default=[8.0],
                        help="tanh widths to run beside the sign energy (in units of Z)")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--every", type=int, default=10_000, help="steps between readings")
    parser.add_argument("--cooling", type=float, default=0.99998, help="per step")
    parser.add_argument("--mnist", type=Path, default=tta.MNIST)
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / "smooth_hidden.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, data_name = tta.data_overrides(args.mnist)
    results = []
    for seed, config in tta.split_configs(data, args.split_seeds, SETTINGS):
        cfg = OmegaConf.to_object(config)
        for tau in [0.0, *args.taus]:
            result = {"split_seed": seed, "energy": f"tanh(Z/{tau:g})" if tau else "sign",
                      "tau": tau, **run(cfg, tau, args)}
            results.append(result)
            last = result["last"]
            print(f"seed {seed} {result['energy']:<10} best test {result['best_test']:.4f}; "
                  f"at {last['step']} steps test {last['test']:.4f} train "
                  f"{last['train']:.4f} ({last['cpu_s']} CPU-s)", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "data": data_name, "net": "784-256-10", "settings": SETTINGS,
        "steps": args.steps, "cooling_per_step": args.cooling, "results": results}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
