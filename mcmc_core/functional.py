"""Pure maths of a sign-flip MCMC step: a chain's hyperparameters, proposals and acceptance
rules.

Kept apart from the sampler's bookkeeping (the ``torch.optim.adam`` pattern) so each rule can be
tested on its own.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ACCEPTANCE_RULES",
    "PROPOSALS",
    "acceptance_probability",
    "accept",
    "check_chain",
    "check_rules",
    "chain_flip_ratio",
    "flip_count",
    "propose_flips",
    "apply_flips",
    "swap_log_acceptance",
]

ACCEPTANCE_RULES = ("metropolis", "barker")
#: What a proposal flips: weights of one layer (tensor) or of every one.
PROPOSALS = ("layer", "all")

# Below this size (or for dense proposals) a full random permutation is cheap enough.
_RANDPERM_MAX_NUMEL = 1 << 16
# Sparse proposals of at most this many indices are deduplicated in Python (per-call overhead
# of the tensor ops dominates there).
_PY_DEDUP_MAX_K = 2048


def check_chain(temperature: float, flip_ratio: float, where: str) -> None:
    """The range of one chain's hyperparameters, as every sampler's constructor checks it
    (``torch.optim``'s way; a user's config gets its one-line message from
    :meth:`SamplerConfig.errors <mcmc_core.optim.SamplerConfig.errors>` first).

    Args:
        temperature: ``T >= 0`` (0 is greedy descent).
        flip_ratio: in ``(0, 1]``.
        where: what holds them, e.g. ``param_groups[1]``.

    Raises:
        ValueError: naming ``where`` and both values.
    """
    if not (temperature >= 0 and 0 < flip_ratio <= 1):
        raise ValueError(f"{where} needs temperature >= 0 and 0 < flip_ratio <= 1, but got "
                         f"{where}['temperature']={temperature!r}, "
                         f"{where}['flip_ratio']={flip_ratio!r}.")


def check_rules(acceptance: str, proposal: str, boltzmann: float) -> None:
    """Every sampler constructor's check of its rules (``ACCEPTANCE_RULES``, ``PROPOSALS``,
    ``boltzmann > 0``): a ``ValueError`` naming the bad one."""
    if acceptance not in ACCEPTANCE_RULES:
        raise ValueError(f"acceptance must be one of {ACCEPTANCE_RULES}, but got {acceptance=}.")
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, but got {proposal=}.")
    if not boltzmann > 0:
        raise ValueError(f"boltzmann must be positive, but got {boltzmann=}.")


def chain_flip_ratio(temperature: float, flip_ratio: float, coupled: bool) -> float:
    """The flip ratio a chain proposes with: ``flip_ratio``, or ``min(1, temperature)`` when
    ``coupled`` (the original research code's rule, kept to compare against it)."""
    return min(1.0, temperature) if coupled else flip_ratio


def flip_count(flip_ratio: float, numel: int) -> int:
    """Number of signs to flip: ``round(flip_ratio * numel)``, at least 1 and at most ``numel``.

    Rounding (not the original's ``ceil``) keeps the count proportional to the ratio.
    """
    return min(numel, max(1, round(flip_ratio * numel)))


def propose_flips(numel: int, flip_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Sample ``flip_count(flip_ratio, numel)`` distinct flat indices uniformly, without replacement.

    Args:
        numel: number of weights in the tensor.
        flip_ratio: fraction of them to flip, in (0, 1].
        generator: the chain's CPU generator.

    Returns:
        A 1-D ``int64`` CPU tensor of distinct indices.
    """
    k = flip_count(flip_ratio, numel)
    if k == 1:
        return torch.randint(numel, (1,), generator=generator)
    if numel <= _RANDPERM_MAX_NUMEL or 4 * k > numel:
        return torch.randperm(numel, generator=generator)[:k]
    # Sparse proposal in a big tensor: the first k distinct values of a stream of uniform draws
    # form a uniform random k-subset, at O(k log k) cost instead of O(numel).
    if k <= _PY_DEDUP_MAX_K:
        return _first_distinct_py(numel, k, generator)
    return _first_distinct_torch(numel, k, generator)


def _first_distinct_torch(numel: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """The first ``k`` distinct values of chunks of ``randint(numel)`` draws, in order."""
    draws = torch.empty(0, dtype=torch.int64)
    while True:
        more = torch.randint(numel, (k + k // 8 + 16,), generator=generator)
        draws = torch.cat([draws, more])
        values, inverse = torch.unique(draws, return_inverse=True)
        if len(values) >= k:
            break
    first = torch.full((len(values),), len(draws), dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(len(draws)), reduce="amin")
    return draws[first.sort().values[:k]]


def _first_distinct_py(numel: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """Same draws and result as :func:`_first_distinct_torch`, ~10x faster for small ``k``."""
    distinct: dict[int, None] = {}  # insertion-ordered: values in order of first appearance
    while len(distinct) < k:
        distinct.update(dict.fromkeys(
            torch.randint(numel, (k + k // 8 + 16,), generator=generator).tolist()))
    return torch.tensor(list(distinct)[:k], dtype=torch.int64)


@torch.no_grad()
def apply_flips(param: torch.Tensor, indices: torch.Tensor) -> None:
    """Flip the signs of ``param`` at flat ``indices`` in place (its own inverse)."""
    flat = param.view(-1)
    flat[indices] = flat[indices].neg()


def acceptance_probability(
    delta_energy: float, temperature: float, rule: str = "metropolis", boltzmann: float = 1.0
) -> float:
    """Probability of accepting a move that changes the energy by ``delta_energy``.

    ``metropolis``: ``min(1, exp(-dE / (k T)))``; ``barker`` (Gibbs): ``1 / (1 + exp(dE / (k T)))``.
    At ``temperature == 0`` both become greedy (Barker accepts ties with probability 1/2).
    """
    if rule not in ACCEPTANCE_RULES:
        raise ValueError(f"rule must be one of {ACCEPTANCE_RULES}, but got {rule=}.")
    kt = boltzmann * temperature
    if kt == 0.0:
        if delta_energy == 0.0:
            return 1.0 if rule == "metropolis" else 0.5
        return 1.0 if delta_energy < 0 else 0.0
    z = delta_energy / kt
    if rule == "metropolis":
        return 1.0 if z <= 0 else math.exp(-z)
    # Numerically stable logistic 1 / (1 + e^z).
    if z >= 0:
        e = math.exp(-z)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


def accept(
    delta_energy: float,
    temperature: float,
    generator: torch.Generator,
    rule: str = "metropolis",
    boltzmann: float = 1.0,
) -> bool:
    """Draw the accept/reject decision. Always consumes exactly one uniform from ``generator``."""
    u = torch.rand((), generator=generator).item()
    return u < acceptance_probability(delta_energy, temperature, rule, boltzmann)


def swap_log_acceptance(
    energy_i: float, energy_j: float, temperature_i: float, temperature_j: float,
    boltzmann: float = 1.0,
) -> float:
    """Log acceptance of exchanging the states of two tempering replicas.

    ``log min(1, exp((1/(k T_i) - 1/(k T_j)) (E_i - E_j)))``: a colder replica holding the higher
    energy always swaps.
    """
    beta_i = 1.0 / (boltzmann * temperature_i)
    beta_j = 1.0 / (boltzmann * temperature_j)
    return min(0.0, (beta_i - beta_j) * (energy_i - energy_j))
