"""The lines a verbose trainer prints: one per epoch, two at the end."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_final", "format_metrics"]


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def format_metrics(m: dict[str, float], epochs: int) -> str:
    """One compact line per epoch, each field named: ``epoch 3/20 | loss train .. val .. test ..
    | accuracy train ..% val ..% test ..% | accept ..% | T .. | flip_ratio .. | .. steps/s |
    ..s`` (``accept``: the epoch's acceptance rate; the MCMC fields only where measured)."""
    width = len(str(epochs))
    splits = ("train", "val", "test")
    parts = [f"epoch {m['epoch']:>{width}}/{epochs}",
             "loss " + " ".join(f"{s} {_fmt(m[f'{s}_loss'])}" for s in splits),
             "accuracy " + " ".join(f"{s} {100 * m[f'{s}_accuracy']:5.1f}%" for s in splits)]
    if "acceptance_rate" in m:
        parts.append(f"accept {100 * m['acceptance_rate']:5.1f}%")
    if "temperature" in m:
        parts.append(f"T {m['temperature']:.2e}")
    if "flip_ratio" in m:
        parts.append(f"flip_ratio {m['flip_ratio']:.2e}")
    swaps = [f"{m[k]:.2f}" for k in sorted(m) if k.startswith("swap_rate_")]
    if swaps:
        parts.append("swap_rate " + ",".join(swaps))
    parts.append(f"{m['steps_per_s']:.0f} steps/s")
    parts.append(f"{m['wall_time']:.1f}s")
    return " | ".join(parts)


def format_final(m: dict[str, Any]) -> str:
    """The closing lines: final and best-by-validation test accuracy."""
    if not m:
        return "no epochs were run"
    return (
        f"final: epoch {m['epoch']} test_accuracy={m['test_accuracy']:.4f} "
        f"test_loss={_fmt(m['test_loss'])} val_accuracy={m['val_accuracy']:.4f}\n"
        f"best (by val_accuracy): epoch {m['best_epoch']} "
        f"test_accuracy={m['best_test_accuracy']:.4f} val_accuracy={m['best_val_accuracy']:.4f}"
    )
