"""Parallel tempering: replicas on a geometric temperature ladder exchanging states."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mcmc_core import functional as F

__all__ = ["ParallelTempering", "geometric_ladder"]


def geometric_ladder(temperature: float, n_replicas: int, ratio: float) -> list[float]:
    """Temperatures ``temperature * ratio**k`` for ``k = 0 .. n_replicas - 1`` (coldest first)."""
    if n_replicas < 1:
        raise ValueError(f"n_replicas must be >= 1, but got {n_replicas=}.")
    if not ratio > 1.0:
        raise ValueError(f"ratio must be > 1, but got {ratio=}.")
    return [temperature * ratio**k for k in range(n_replicas)]


class ParallelTempering:
    """Decides the state exchanges between neighbouring replicas of one model.

    Replica ``k`` runs at its own temperature (coldest first). An exchange round alternates
    between even pairs ``(0,1), (2,3), ...`` and odd pairs ``(1,2), ...``; a pair ``(i, j)``
    swaps states with probability ``min(1, exp((1/(k T_i) - 1/(k T_j)) (E_i - E_j)))``. The
    caller's ``swap(i, j)`` exchanges the two states (weights, caches, energies), so replica 0
    always holds the coldest chain's state. The same rule serves both kernels of
    :class:`~mcmc_core.optim.ChainSampler` (:meth:`~mcmc_core.optim.ChainSampler.exchange`).

    Args:
        n_replicas: number of replicas (>= 2).
        boltzmann: the constant ``k`` (default: 1.0).
        seed: seed of the exchange generator (default: 0).
    """

    def __init__(self, n_replicas: int, *, boltzmann: float = 1.0, seed: int = 0) -> None:
        if n_replicas < 2:
            raise ValueError(f"parallel tempering needs >= 2 replicas, but got {n_replicas=}.")
        self.n_replicas, self.boltzmann = n_replicas, boltzmann
        self.generator = torch.Generator().manual_seed(seed)
        self.n_rounds = 0
        self.attempts = [0] * (n_replicas - 1)
        self.accepts = [0] * (n_replicas - 1)

    @torch.no_grad()
    def exchange(self, energies: Sequence[float | None], temperatures: Sequence[float],
                 swap: Callable[[int, int], None]) -> list[float]:
        """One round of neighbour exchanges.

        Args:
            energies: each replica's current energy on a common target.
            temperatures: each replica's current temperature (> 0).
            swap: exchanges the states of replicas ``i`` and ``i + 1``.

        Returns:
            The energies after the round (swapped where the states were).
        """
        if len(energies) != self.n_replicas or any(e is None for e in energies):
            raise RuntimeError("exchange() needs every replica's energy: step each replica first.")
        energies = [float(e) for e in energies]  # type: ignore[arg-type]
        for i in range(self.n_rounds % 2, self.n_replicas - 1, 2):
            t_a, t_b = temperatures[i], temperatures[i + 1]
            if t_a <= 0 or t_b <= 0:
                raise ValueError(f"tempering needs temperatures > 0, but got {t_a=}, {t_b=}.")
            log_p = F.swap_log_acceptance(energies[i], energies[i + 1], t_a, t_b, self.boltzmann)
            u = torch.rand((), generator=self.generator).item()
            self.attempts[i] += 1
            if u > 0 and math.log(u) < log_p:
                self.accepts[i] += 1
                swap(i, i + 1)
                energies[i], energies[i + 1] = energies[i + 1], energies[i]
        self.n_rounds += 1
        return energies

    def swap_rates(self) -> list[float]:
        """Fraction of accepted exchanges per neighbour pair ``(k, k+1)`` so far."""
        return [acc / att if att else float("nan") for acc, att in zip(self.accepts, self.attempts)]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "n_rounds": self.n_rounds,
                "attempts": list(self.attempts), "accepts": list(self.accepts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.n_rounds = state["n_rounds"]
        self.attempts, self.accepts = list(state["attempts"]), list(state["accepts"])
