"""What makes an MCMC chain's run reproducible, written once for every trainer: the seeds it
derives from its ``seed`` (:class:`RunSeeds`), the checkpoint dict of its chain
(:func:`mcmc_checkpoint`), and atomic checkpoint files with the previous one kept as a
fallback."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_NAME", "RunSeeds", "child_seeds", "load_checkpoint",
           "load_latest_checkpoint", "mcmc_checkpoint", "previous_checkpoint", "save_checkpoint"]

CHECKPOINT_NAME = "last.pt"


def child_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit seeds derived from ``seed`` (numpy's SeedSequence)."""
    states = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64)
    return [int(s) >> 1 for s in states]


@dataclass(frozen=True)
class RunSeeds:
    """The seeds an MCMC run of ``n_replicas`` chains derives from its ``seed``:
    ``child_seeds(seed, n_replicas + 2)`` is every replica's stream, then the replica exchanges',
    then the energy subset's. A chain of a population gets a lone run's (``n_replicas=1``)."""

    chains: list[int]
    tempering: int
    energy: int

    @classmethod
    def of(cls, seed: int, n_replicas: int = 1) -> RunSeeds:
        seeds = child_seeds(seed, n_replicas + 2)
        return cls(seeds[:n_replicas], seeds[n_replicas], seeds[n_replicas + 1])


def mcmc_checkpoint(step: int, model: dict[str, torch.Tensor],
                    replicas: list[dict[str, torch.Tensor]], engine: dict[str, Any],
                    tempering: dict[str, Any] | None) -> dict[str, Any]:
    """The MCMC trainers' part of a chain's checkpoint, whether it ran alone, with tempering
    replicas or in a population: fixed keys, as nanoGPT's (the trainer's name, the record and
    the config are :class:`BaseTrainer`'s).

    Args:
        step: the steps the chain took.
        model: its weights (replica 0's).
        replicas: the other replicas' weights (none in a population).
        engine: the sampler's :meth:`~mcmc_core.optim.ChainSampler.state_dict`
            (``{"population": ...}`` or the forward kernel's).
        tempering: the replica exchanges' state, or None.
    """
    return {"step": step, "model": model, "replicas": replicas,
            "engine": {"step": step, **engine, "tempering": tempering},
            "rng": {"torch": torch.get_rng_state()}}


def previous_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint ``path`` replaced (``last.prev.pt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` with ``torch.save`` to a temp file in the same folder, then rename it over
    ``path``: a reader never sees a half-written checkpoint, even if the process is killed. The
    checkpoint it replaces is kept as :func:`previous_checkpoint` (a fallback should ``path``
    be damaged later)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, previous_checkpoint(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` onto the CPU."""
    # The checkpoint holds generator states, counters and configs: not only tensors.
    return torch.load(path, map_location="cpu", weights_only=False)


def load_latest_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint at ``path``, else the previous one, else None (start from epoch 0).

    A file that exists but does not load (truncated, overwritten, another format) gives a
    warning naming it and why, and the next candidate is tried.
    """
    for candidate in (Path(path), previous_checkpoint(path)):
        if not candidate.exists():
            continue
        try:
            state = load_checkpoint(candidate)
            if not isinstance(state, dict) or "epoch" not in state:
                raise ValueError("not a checkpoint of this project")
            return state
        except Exception as err:  # torch.load raises many types for a damaged file
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            warnings.warn(f"checkpoint {candidate} does not load ({reason[:200]}); "
                          "trying the previous one, else starting from epoch 0",
                          RuntimeWarning, stacklevel=2)
    return None
