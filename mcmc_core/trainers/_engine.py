"""The chains a :class:`~mcmc_core.trainers.TrainerMCMC` advances, behind one small interface.

Two engines implement it: :class:`~mcmc_core.trainers._population_engine.PopulationEngine`
(binary MLPs on a fixed energy: the replicas are one batched, incremental population) and
:class:`~mcmc_core.trainers._sampler_engine.SamplerEngine` (any model or energy: one
:class:`~mcmc_core.optim.SignFlipSampler` and full forward passes per replica).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mcmc_core.tempering import ParallelTempering

__all__ = ["ChainEngine"]


class ChainEngine:
    """Replica 0 (the chain the trainer reports) and, with parallel tempering, hotter replicas.

    Attributes:
        models: one model per replica; ``models[0]`` is the trainer's model. After
            :meth:`sync` they hold the replicas' current weights.
        tempering: the exchange rule, or None for a single chain.
        step: steps taken so far.
    """

    models: list[nn.Module]
    tempering: ParallelTempering | None
    step: int
    acceptance: str
    proposal: str

    def setup(self, epochs: int, steps_per_epoch: int) -> None:
        """Build the schedules for a run of ``epochs`` epochs (their horizon)."""
        raise NotImplementedError

    def run(self, n_steps: int) -> None:
        """Advance every replica ``n_steps`` steps, with exchanges and per-step schedules."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Advance what counts epochs (after the epoch's metrics are taken)."""

    def counts(self, replica: int = 0) -> tuple[int, int]:
        """Proposals and acceptances of ``replica`` so far."""
        raise NotImplementedError

    def temperatures(self) -> list[float]:
        """Every replica's temperature (that of the next step; per-epoch: this epoch's)."""
        raise NotImplementedError

    def flip_ratio(self) -> float:
        """Replica 0's flip ratio (as :meth:`temperatures`)."""
        raise NotImplementedError

    def current_energy(self) -> float:
        """Replica 0's current energy."""
        raise NotImplementedError

    def sync(self) -> None:
        """Make :attr:`models` hold the replicas' current weights."""

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError
