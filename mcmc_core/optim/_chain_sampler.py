"""One sampler of ``K`` sign-flip MCMC chains whose param groups are the chains, with the kernel
that steps them picked once, as ``torch.optim`` picks its own: :class:`ChainSampler`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import Optimizer, required

from mcmc_core import functional as F
from mcmc_core.energy import Energy
from mcmc_core.optim._kernels import make_kernel, set_groups
from mcmc_core.schedules import ChainSchedules
from mcmc_core.tempering import ParallelTempering

__all__ = ["ChainSampler"]


class ChainSampler(Optimizer):
    """Sign-flip MCMC of ``K`` chains of binary weights; param group ``k`` is chain ``k``.

    A group holds one chain's ±1 tensors and its own ``temperature``, ``flip_ratio`` and
    ``seed`` (its random stream). A step advances every chain as :class:`SignFlipSampler` steps
    one (flips, the candidate's energy, Metropolis or Barker), in one of two kernels
    (:attr:`kernel`), picked once as ``torch.optim.SGD`` picks ``_single_tensor_sgd`` or
    ``_multi_tensor_sgd`` (``optim/_kernels.py``: two classes with the same methods):

    * ``"forward"``: chain after chain, a forward pass per candidate through ``energy``'s
      closures (a :class:`SignFlipSampler` over each group dict): any model and energy.
    * ``"incremental"``: all chains in one batched :class:`~mcmc_core.population.Population`,
      candidates evaluated from the flips alone, steps replayed as CUDA graphs on a GPU
      (``graphs``): binary MLPs on a plain cross-entropy ``FullEnergy``, ``coupled=False``. It
      steps a stacked copy of the weights; :meth:`sync` writes them into the params.
    * ``"auto"``: ``"incremental"`` where it applies, else ``"forward"`` (:attr:`kernel_reason`).

    The kernels draw from different random streams. No schedule is built in: a step takes the
    groups' values, :meth:`run` those of every chain's schedule objects (``ChainSchedules``).

    Example:
        >>> from mcmc_core.data import DataConfig, load_dataset
        >>> from mcmc_core.energy import FullEnergy
        >>> from mcmc_core.layers import binary_parameters
        >>> from mcmc_core.models import ModelConfig, build_model
        >>> data = load_dataset(DataConfig(name="synthetic"))
        >>> models = [build_model(ModelConfig(name="mlp"), data.input_shape, data.n_classes,
        ...                       seed=s) for s in range(2)]
        >>> sampler = ChainSampler(
        ...     [{"params": binary_parameters(m), "seed": s} for s, m in enumerate(models)],
        ...     temperature=1e-3, flip_ratio=0.05, models=models,
        ...     energy=FullEnergy(nn.CrossEntropyLoss(), data.train))
        >>> sampler.kernel
        'incremental'
        >>> sampler.run(20); sampler.sync()  # models hold the chains' weights

    Args:
        params: one dict per chain: ``{"params": its ±1 tensors, "temperature": ...,
            "flip_ratio": ..., "seed": ...}`` (missing values: the arguments below).
        temperature, flip_ratio: as :class:`SignFlipSampler` (default flip_ratio: 0.01).
        seed: a chain's stream seed (default: None, the chain's index).
        models: each chain's model, the owner of its group's tensors.
        energy: what a chain's energy is measured on (``FullEnergy``, ``MinibatchEnergy``).
        acceptance, proposal, boltzmann, coupled: as :class:`SignFlipSampler`.
        kernel: ``"auto"``, ``"forward"`` or ``"incremental"`` (default: ``"auto"``).
        graphs: the incremental kernel's CUDA graphs (``Population``'s; default: None).
        margin_weight, margin: the hidden-margin term of the incremental kernel's energy
            (:class:`~mcmc_core.population.ChainCache`; default: 0, off). The forward kernel
            has none: ``margin_weight > 0`` needs the incremental one.
        label_smoothing: the incremental kernel's cross-entropy against smoothed targets
            (:class:`~mcmc_core.population.EnergySet`; default: 0, off); it needs that kernel.
        smooth_hidden: the width of the incremental kernel's smooth hidden activation in the
            energy (:class:`~mcmc_core.population.ChainCache`; default: 0, ``sign``); it needs
            that kernel.
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        temperature: float = required,  # type: ignore[assignment]
        flip_ratio: float = 0.01,
        seed: int | None = None,
        *,
        models: Sequence[nn.Module],
        energy: Energy,
        acceptance: str = "metropolis",
        proposal: str = "layer",
        boltzmann: float = 1.0,
        coupled: bool = False,
        kernel: str = "auto",
        graphs: bool | None = None,
        margin_weight: float = 0.0,
        margin: int = 20,
        label_smoothing: float = 0.0,
        smooth_hidden: float = 0.0,
    ) -> None:
        super().__init__(params, dict(temperature=temperature, flip_ratio=flip_ratio, seed=seed))
        if len(models) != len(self.param_groups):
            raise ValueError(f"models must have one entry per param group "
                             f"({len(self.param_groups)}), but got {len(models)}.")
        for i, group in enumerate(self.param_groups):
            if group["seed"] is None:
                group["seed"] = i
            F.check_chain(group["temperature"], group["flip_ratio"], f"param_groups[{i}]")
        self.models = list(models)
        self.acceptance, self.proposal, self.coupled = acceptance, proposal, coupled
        self._kernel, reason = make_kernel(
            self.param_groups, self.models, energy, kernel=kernel, coupled=coupled,
            graphs=graphs, acceptance=acceptance, proposal=proposal, boltzmann=boltzmann,
            terms={"margin_weight": margin_weight, "margin": margin,
                   "label_smoothing": label_smoothing, "smooth_hidden": smooth_hidden})
        #: Why the incremental kernel does not run (None when it does).
        self.kernel_reason = reason
        #: The kernel stepping the chains: ``"forward"`` or ``"incremental"``.
        self.kernel: str = self._kernel.name
        #: The energy's closures (forward), or the batched kernel's fixed set (incremental).
        self.energy = self._kernel.energy
        #: The incremental kernel's population (else None), the forward kernel's samplers.
        self.population, self.samplers = self._kernel.population, self._kernel.samplers

    @property
    def n_steps(self) -> int:
        """Steps taken so far (by every chain)."""
        return self._kernel.n_steps

    @torch.no_grad()
    def step(  # type: ignore[override]
            self, closures: Sequence[Callable[[], float]] | None = None) -> list[float]:
        """One step of every chain at its group's values. ``closures`` (the forward kernel's;
        default: ``energy.closures(models)``) measure each chain's energy. Returns every
        chain's energy after the step."""
        return self._kernel.step(self.param_groups, closures)

    @torch.no_grad()
    def run(self, n_steps: int, schedules: ChainSchedules | None = None, *,
            interval: int | None = None, on_interval: Callable[[], None] | None = None) -> None:
        """Take ``n_steps`` steps of every chain, at the values ``schedules`` gives every chain
        at each step (None: the groups' values); ``on_interval()`` after every ``interval``-th
        step (parallel-tempering exchanges). Afterwards the groups hold the next step's
        values."""
        self._kernel.run(self.param_groups, n_steps, schedules, interval, on_interval)
        if schedules is not None:
            set_groups(self.param_groups, *schedules.at(self.n_steps))

    def exchange(self, tempering: ParallelTempering) -> None:
        """One round of parallel-tempering exchanges between the chains (coldest first)."""
        self._kernel.exchange(tempering, self.temperatures())

    def counts(self, k: int = 0) -> tuple[int, int]:
        """Proposals and acceptances of chain ``k`` so far."""
        return self._kernel.counts(k)

    def temperatures(self) -> list[float]:
        """Every chain's temperature (its group's)."""
        return [g["temperature"] for g in self.param_groups]

    def flip_ratio(self, k: int = 0) -> float:
        """Chain ``k``'s flip ratio (``min(1, temperature)`` when ``coupled``)."""
        group = self.param_groups[k]
        return F.chain_flip_ratio(group["temperature"], group["flip_ratio"], self.coupled)

    def current_energy(self, k: int = 0) -> float:
        """Chain ``k``'s current energy."""
        return self._kernel.current_energy(k)

    def sync(self) -> None:
        """Write the chains' current weights into the params (after the incremental kernel)."""
        self._kernel.sync()

    def state_dict(self) -> dict[str, Any]:
        """The kernel's state: ``{"population": ...}`` (incremental) or ``{"sampler": [each
        chain's SignFlipSampler state], "energy": ...}`` (forward)."""
        return self._kernel.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (other keys are ignored)."""
        self.param_groups = self._kernel.load_state_dict(self.param_groups, state_dict)
