"""Typed configuration of the sampler, its energy and parallel tempering (``sampler`` group)."""

from __future__ import annotations

from dataclasses import dataclass

from mcmc_core._validation import check, check_choice
from mcmc_core.energy import ENERGIES
from mcmc_core.functional import ACCEPTANCE_RULES
from mcmc_core.optim._sign_flip import PROPOSALS


@dataclass
class SamplerConfig:
    """How the chain proposes, measures and accepts moves.

    Args:
        temperature: initial temperature T0 (> 0); schedules anneal it.
        flip_ratio: fraction of a layer's weights flipped per proposal, in (0, 1]; independent
            of the temperature unless ``coupled``.
        acceptance: ``metropolis`` or ``barker`` (Gibbs).
        proposal: ``layer`` (one random layer per step) or ``all`` (every layer).
        boltzmann: the constant k in exp(-dE / (k T)).
        coupled: flip_ratio = temperature at every step, as the original code did.
        energy: ``full`` (mean loss on the training set, or on a fixed seeded subset of
            ``energy_samples``: a fixed target, cached) or ``minibatch`` (the original: a fresh
            mini-batch of ``batch_size`` per step).
        energy_samples: size of the fixed subset for ``full``; null = the whole training split.
        incremental: with ``full`` and cross-entropy, run a binary MLP's replicas as one
            :class:`~mcmc_core.population.Population` (the sampler's incremental kernel:
            candidates evaluated from the flips by updating cached pre-activations, all
            replicas batched); false, or any other model or energy, runs its forward kernel, a
            forward pass per candidate. The two draw from different random streams.
        batch_size: mini-batch size for ``minibatch``.
        n_replicas: parallel tempering replicas (1 = a single chain).
        ladder_ratio: ratio between neighbouring replica temperatures (geometric ladder).
        swap_interval: steps between two exchange rounds.
        margin_weight: weight of the hidden-margin term added to the energy, ``margin_weight *
            mean relu(margin - |Z|)`` over the first hidden layer's pre-activations ``Z`` on
            the energy samples: it keeps hidden units away from their sign threshold, so they
            generalise. Exact and incremental; needs the incremental kernel. 0 = off.
        margin: the pre-activation magnitude below which a hidden unit is penalised.
        label_smoothing: ``eps`` in [0, 1): the energy's cross-entropy against the targets
            mixed with the uniform distribution, ``(1 - eps) onehot(y) + eps / classes``, as
            ``nn.CrossEntropyLoss(label_smoothing=eps)``: images already classified with a
            large margin stop pulling the chain. Exact and incremental; needs the incremental
            kernel. 0 = off.
        smooth_hidden: the width ``tau`` of a smooth hidden activation in the energy: hidden
            units count as ``tanh(Z / tau)`` of their pre-activation ``Z`` (rounded to 1/64)
            instead of ``sign(Z)``, so a flip that moves many images' units towards their
            thresholds costs energy before any sign changes; the net stays binary (``sign``)
            in its outputs, accuracies and exports; a net without a hidden layer is unchanged.
            Exact and incremental; needs the incremental kernel. 0 = off (``sign``).
    """

    temperature: float = 1e-3
    flip_ratio: float = 0.002
    acceptance: str = "metropolis"
    proposal: str = "layer"
    boltzmann: float = 1.0
    coupled: bool = False
    energy: str = "full"
    energy_samples: int | None = None
    incremental: bool = True
    batch_size: int = 128
    n_replicas: int = 1
    ladder_ratio: float = 2.0
    swap_interval: int = 10
    margin_weight: float = 0.0
    margin: int = 20
    label_smoothing: float = 0.0
    smooth_hidden: float = 0.0

    def errors(self, prefix: str = "sampler") -> list[str]:
        """Every violation of this config, one line each (empty when valid)."""
        errors: list[str] = []
        check(errors, self.temperature > 0, f"{prefix}.temperature", self.temperature, "> 0")
        check(errors, 0 < self.flip_ratio <= 1, f"{prefix}.flip_ratio", self.flip_ratio,
              "0 < flip_ratio <= 1")
        check_choice(errors, f"{prefix}.acceptance", self.acceptance, ACCEPTANCE_RULES)
        check_choice(errors, f"{prefix}.proposal", self.proposal, PROPOSALS)
        check(errors, self.boltzmann > 0, f"{prefix}.boltzmann", self.boltzmann, "> 0")
        check_choice(errors, f"{prefix}.energy", self.energy, ENERGIES)
        check(errors, self.energy_samples is None or self.energy_samples >= 1,
              f"{prefix}.energy_samples", self.energy_samples, "null (all) or >= 1")
        check(errors, self.batch_size >= 1, f"{prefix}.batch_size", self.batch_size, ">= 1")
        check(errors, self.n_replicas >= 1, f"{prefix}.n_replicas", self.n_replicas, ">= 1")
        check(errors, self.ladder_ratio > 1, f"{prefix}.ladder_ratio", self.ladder_ratio, "> 1")
        check(errors, self.swap_interval >= 1, f"{prefix}.swap_interval", self.swap_interval,
              ">= 1")
        check(errors, self.margin_weight >= 0, f"{prefix}.margin_weight", self.margin_weight,
              ">= 0 (0 = off)")
        check(errors, self.margin >= 1, f"{prefix}.margin", self.margin, ">= 1")
        check(errors, 0 <= self.label_smoothing < 1, f"{prefix}.label_smoothing",
              self.label_smoothing, "0 <= label_smoothing < 1 (0 = off)")
        check(errors, self.smooth_hidden >= 0, f"{prefix}.smooth_hidden", self.smooth_hidden,
              ">= 0 (0 = off: sign)")
        return errors
