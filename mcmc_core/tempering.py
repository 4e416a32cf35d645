"""Parallel tempering: replicas on a geometric temperature ladder exchanging states."""

from __future__ import annotations

import math
from typing import Any

import torch

from mcmc_core import functional as F
from mcmc_core.optim import SignFlipSampler

__all__ = ["ParallelTempering", "geometric_ladder"]


def geometric_ladder(temperature: float, n_replicas: int, ratio: float) -> list[float]:
    """Temperatures ``temperature * ratio**k`` for ``k = 0 .. n_replicas - 1`` (coldest first)."""
    if n_replicas < 1:
        raise ValueError(f"n_replicas must be >= 1, but got {n_replicas=}.")
    if not ratio > 1.0:
        raise ValueError(f"ratio must be > 1, but got {ratio=}.")
    return [temperature * ratio**k for k in range(n_replicas)]


class ParallelTempering:
    """Exchanges states between neighbouring replicas of one model.

    Replica ``k`` is sampled by ``samplers[k]`` at its own temperature (coldest first). An exchange
    round alternates between even pairs ``(0,1), (2,3), ...`` and odd pairs ``(1,2), ...``; a pair
    ``(i, j)`` swaps states with probability ``min(1, exp((1/(k T_i) - 1/(k T_j)) (E_i - E_j)))``.
    A swap exchanges the weight storage of the two replicas (no copy), their cached energies and
    incremental caches, so replica 0 always holds the coldest chain's state.

    Args:
        samplers: one sampler per replica, all over parameters of the same shapes.
        seed: seed of the exchange generator (default: 0).
    """

    def __init__(self, samplers: list[SignFlipSampler], *, seed: int = 0) -> None:
        if len(samplers) < 2:
            raise ValueError(f"parallel tempering needs >= 2 replicas, but got {len(samplers)}.")
        self.samplers = samplers
        self.generator = torch.Generator().manual_seed(seed)
        self.n_rounds = 0
        n_pairs = len(samplers) - 1
        self.attempts = [0] * n_pairs
        self.accepts = [0] * n_pairs

    @staticmethod
    def _temperature(sampler: SignFlipSampler) -> float:
        return sampler.param_groups[0]["temperature"]

    @torch.no_grad()
    def exchange(self, energies: list[float] | None = None) -> None:
        """One round of neighbour exchanges.

        Args:
            energies: each replica's current energy on a common target; by default the samplers'
                cached energies (valid when the energy target is fixed).
        """
        if energies is None:
            energies = [s.energy for s in self.samplers]  # type: ignore[misc]
        if any(e is None for e in energies):
            raise RuntimeError("exchange() needs every replica's energy: step each sampler first.")
        energies = list(energies)
        for i in range(self.n_rounds % 2, len(self.samplers) - 1, 2):
            a, b = self.samplers[i], self.samplers[i + 1]
            t_a, t_b = self._temperature(a), self._temperature(b)
            if t_a <= 0 or t_b <= 0:
                raise ValueError(f"tempering needs temperatures > 0, but got {t_a=}, {t_b=}.")
            log_p = F.swap_log_acceptance(energies[i], energies[i + 1], t_a, t_b, a.boltzmann)
            u = torch.rand((), generator=self.generator).item()
            self.attempts[i] += 1
            if u > 0 and math.log(u) < log_p:
                self.accepts[i] += 1
                a.swap_weights(b)
                energies[i], energies[i + 1] = energies[i + 1], energies[i]
                if a.cache_energy:
                    a.energy, b.energy = b.energy, a.energy
                else:
                    # Measured on this exchange's target; the next step measures afresh anyway.
                    a.energy, b.energy = energies[i], energies[i + 1]
        self.n_rounds += 1

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
