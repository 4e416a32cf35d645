"""Saving and restoring a population (:class:`PopulationState`, a base of
:class:`~mcmc_core.population.Population`): the whole population, one chain of it as a
population of one (a trial's checkpoint), and continuing loaded chains at their step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mcmc_core.population._hyperparameters import HYPERPARAMETERS
from mcmc_core.population._random import ChainRandom

if TYPE_CHECKING:
    from mcmc_core.population._incremental import ChainCache
    from mcmc_core.population._weights import StackedMLP

__all__ = ["PopulationState"]


class PopulationState:
    """:meth:`state_dict` / :meth:`load_state_dict` of a
    :class:`~mcmc_core.population.Population` (its attributes are read and written here)."""

    net: StackedMLP
    cache: ChainCache
    random: ChainRandom
    n_steps: int
    n_accepted: Tensor
    ids: list[Any]
    acceptance: str
    proposal: str
    boltzmann: float
    layer_seed: int
    _layout: Callable[[], None]

    def state_dict(self) -> dict[str, Any]:
        """Weights, step count, per-chain hyperparameters, random-stream state (the seeds: a
        chain's stream is a function of its seed and the step), acceptance counts, energies
        and ids. The energy set is not included."""
        return {"weights": [w.clone() for w in self.net.weights],
                "output_scale": self.net.output_scale, "n_steps": self.n_steps,
                "seeds": self.random.seeds.clone(), "n_accepted": self.n_accepted.clone(),
                "energies": self.cache.energies.clone(), "ids": list(self.ids),
                "acceptance": self.acceptance, "proposal": self.proposal,
                "boltzmann": self.boltzmann, "layer_seed": self.layer_seed,
                **{name: getattr(self, name).clone() for name in HYPERPARAMETERS}}

    def chain_state(self, k: int) -> dict[str, Any]:
        """The :meth:`state_dict` of chain ``k`` alone: what a population of one that took the
        same steps would save (a trial's checkpoint, whatever population it ran in)."""
        state = self.state_dict()
        one = {key: (value[k:k + 1].clone() if isinstance(value, Tensor) else value)
               for key, value in state.items()}
        one["weights"] = [w[k:k + 1].clone() for w in state["weights"]]
        one["ids"] = [state["ids"][k]]
        return one

    def resume_at(self, n_steps: int, n_accepted: Sequence[int]) -> None:
        """Continue chains whose weights were loaded from a run that took ``n_steps`` steps
        with ``n_accepted`` acceptances each: the next step is that run's next step (its
        draws, layer and temperatures), so the chains go on bit-identically."""
        if len(n_accepted) != len(self):
            raise ValueError(f"n_accepted must have one entry per chain ({len(self)}), but got "
                             f"{len(n_accepted)}.")
        self.n_steps = int(n_steps)
        self.n_accepted = torch.tensor([int(a) for a in n_accepted], dtype=torch.int64,
                                       device=self.net.device)
        self._layout()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (its number of chains may differ from the current one);
        the caches are rebuilt from the weights, so the next step is the one the saved
        population would have taken. Energies of None are recomputed from the weights."""
        shapes = [tuple(w.shape[1:]) for w in self.net.weights]
        saved = [tuple(w.shape[1:]) for w in state["weights"]]
        if saved != shapes or state["output_scale"] != self.net.output_scale:
            raise ValueError(f"the state is of another architecture: layers {saved}, "
                             f"output_scale {state['output_scale']}; this population has "
                             f"{shapes}, {self.net.output_scale}.")
        device = self.net.device
        self.net.weights = [w.to(device, torch.float32).clone() for w in state["weights"]]
        self.acceptance, self.proposal = state["acceptance"], state["proposal"]
        self.boltzmann = float(state["boltzmann"])
        self.layer_seed = int(state["layer_seed"])
        for name in HYPERPARAMETERS:
            setattr(self, f"_{name}", state[name].to(device, torch.float64).clone())
        self.random = ChainRandom(state["seeds"], device)
        self.n_steps = int(state["n_steps"])
        self.n_accepted = state["n_accepted"].to(device).clone()
        self.ids = list(state["ids"])
        self.cache.rebuild()
        if state["energies"] is not None:
            self.cache.energies = state["energies"].to(device, torch.float64).clone()
        self._layout()
