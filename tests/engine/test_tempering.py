"""Parallel tempering: the geometric ladder and neighbour exchanges."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from mcmc_core import SignFlipSampler, binary_parameters
from mcmc_core import functional as F
from mcmc_core.data import DataSplits
from mcmc_core.energy import FullEnergy, MinibatchEnergy
from mcmc_core.tempering import ParallelTempering, geometric_ladder


def test_geometric_ladder_values() -> None:
    assert geometric_ladder(0.1, 4, 2.0) == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert geometric_ladder(1e-3, 3, 10.0) == pytest.approx([1e-3, 1e-2, 1e-1])
    assert geometric_ladder(0.5, 1, 3.0) == [0.5]
    ladder = geometric_ladder(0.02, 6, 1.5)
    ratios = [b / a for a, b in zip(ladder, ladder[1:])]
    assert ratios == pytest.approx([1.5] * 5)


@pytest.mark.parametrize(("n", "ratio", "match"), [(0, 2.0, "n_replicas"), (3, 1.0, "ratio"),
                                                    (3, 0.5, "ratio")])
def test_geometric_ladder_rejects_bad_arguments(n: int, ratio: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        geometric_ladder(0.1, n, ratio)


def _replicas(make_model: Callable[..., nn.Module], temperatures: list[float],
              cache_energy: bool = True) -> tuple[list[nn.Module], list[SignFlipSampler]]:
    """One model per temperature, each with its own initial weights and sampler."""
    models = [make_model(hidden=[6], seed=i) for i in range(len(temperatures))]
    samplers = [SignFlipSampler(binary_parameters(m), temperature=t, flip_ratio=0.1,
                                cache_energy=cache_energy, seed=10 + i)
                for i, (m, t) in enumerate(zip(models, temperatures))]
    return models, samplers


def _exchange(pt: ParallelTempering, samplers: list[SignFlipSampler],
              energies: list[float] | None = None) -> None:
    """One round over samplers, as ChainSampler's forward kernel does it."""
    def swap(i: int, j: int) -> None:
        samplers[i].swap_weights(samplers[j])
        samplers[i].energy, samplers[j].energy = samplers[j].energy, samplers[i].energy

    energies = [s.energy for s in samplers] if energies is None else energies
    after = pt.exchange(energies, [s.param_groups[0]["temperature"] for s in samplers], swap)
    if not samplers[0].cache_energy:
        for sampler, energy in zip(samplers, after):
            sampler.energy = energy


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in binary_parameters(model)]


def test_exchange_swaps_weights_and_energies(make_model: Callable[..., nn.Module]) -> None:
    models, samplers = _replicas(make_model, [0.1, 0.2])
    params = [binary_parameters(m) for m in models]
    before = [_weights(m) for m in models]
    samplers[0].energy, samplers[1].energy = 2.0, 1.0  # the cold replica is worse: sure swap
    pt = ParallelTempering(len(samplers), seed=0)
    _exchange(pt, samplers)
    assert all(torch.equal(a, b) for a, b in zip(_weights(models[0]), before[1]))
    assert all(torch.equal(a, b) for a, b in zip(_weights(models[1]), before[0]))
    assert (samplers[0].energy, samplers[1].energy) == (1.0, 2.0)
    # The temperatures stay with their replica: only states move.
    assert [s.param_groups[0]["temperature"] for s in samplers] == [0.1, 0.2]
    # The models still own the parameters their samplers flip.
    assert [binary_parameters(m) for m in models] == params
    assert all(p is q for (p, _), q in zip(samplers[0]._params, params[0]))
    assert pt.swap_rates() == [1.0]


def test_exchange_of_a_very_unlikely_swap_keeps_the_states(make_model: Callable[..., nn.Module]
                                                           ) -> None:
    models, samplers = _replicas(make_model, [0.1, 0.2])
    before = [_weights(m) for m in models]
    samplers[0].energy, samplers[1].energy = 1.0, 100.0  # p = exp(-495)
    pt = ParallelTempering(len(samplers), seed=0)
    for _ in range(10):
        _exchange(pt, samplers)
    assert all(torch.equal(a, b) for a, b in zip(_weights(models[0]), before[0]))
    assert (samplers[0].energy, samplers[1].energy) == (1.0, 100.0)
    assert pt.swap_rates() == [0.0]


def test_swapped_replicas_keep_sampling_their_new_states(make_model: Callable[..., nn.Module],
                                                         synthetic: DataSplits) -> None:
    energy = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    models, samplers = _replicas(make_model, [0.01, 0.02])
    closures = energy.closures(models)
    for s, c in zip(samplers, closures):
        s.step(c)
    # Make the replica with the higher energy the colder one (first): a sure swap.
    cold, hot = sorted(samplers, key=lambda s: -s.energy)
    cold.param_groups[0]["temperature"], hot.param_groups[0]["temperature"] = 0.01, 0.02
    pt = ParallelTempering(2, seed=0)
    _exchange(pt, [cold, hot])
    assert pt.swap_rates() == [1.0]
    # Each cached energy is still the energy of the weights its replica now holds.
    for s, c in zip(samplers, closures):
        assert s.energy == pytest.approx(c(), rel=1e-6)
        for _ in range(5):
            s.step(c)
        assert s.energy == pytest.approx(c(), rel=1e-6)


@pytest.mark.parametrize(("energies", "temperatures"),
                         [([1.0, 1.5], [1.0, 2.0]), ([0.30, 0.31], [0.01, 0.02]),
                          ([1.5, 1.0], [1.0, 2.0])])
def test_swap_rate_matches_the_acceptance_formula(make_model: Callable[..., nn.Module],
                                                  energies: list[float],
                                                  temperatures: list[float]) -> None:
    _, samplers = _replicas(make_model, temperatures)
    for s in samplers:
        s.energy = 0.0
    pt = ParallelTempering(len(samplers), seed=1)
    for _ in range(2400):  # 1200 attempts: two replicas have a pair on even rounds only
        _exchange(pt, samplers, list(energies))  # the same energies each round
    expected = math.exp(F.swap_log_acceptance(*energies, *temperatures))
    assert pt.attempts == [1200]
    assert pt.swap_rates()[0] == pytest.approx(expected, abs=0.05)  # sd <= 0.015


def test_exchange_alternates_even_and_odd_pairs(make_model: Callable[..., nn.Module]) -> None:
    _, samplers = _replicas(make_model, geometric_ladder(0.05, 4, 2.0))
    for i, s in enumerate(samplers):
        s.energy = 1.0 - 0.1 * i  # hotter replicas are better: every swap is likely
    pt = ParallelTempering(len(samplers), seed=0)
    _exchange(pt, samplers)
    assert pt.attempts == [1, 0, 1]
    _exchange(pt, samplers)
    assert pt.attempts == [1, 1, 1]
    for _ in range(6):
        _exchange(pt, samplers)
    assert pt.attempts == [4, 4, 4]
    rates = pt.swap_rates()
    assert len(rates) == 3 and all(0.0 <= r <= 1.0 for r in rates)
    assert pt.n_rounds == 8


def test_swap_rates_are_nan_before_any_attempt(make_model: Callable[..., nn.Module]) -> None:
    _, samplers = _replicas(make_model, [0.1, 0.2, 0.4])
    for s in samplers:
        s.energy = 1.0
    pt = ParallelTempering(len(samplers))
    assert all(math.isnan(r) for r in pt.swap_rates())
    _exchange(pt, samplers)
    rates = pt.swap_rates()
    assert rates[0] in (0.0, 1.0) and math.isnan(rates[1])


def test_tempering_keeps_the_ladder_distribution_of_energies(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    """A real run: the colder replica ends with the lower energy, swap rates are rates."""
    energy = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    models, samplers = _replicas(make_model, geometric_ladder(2e-3, 3, 8.0))
    closures = energy.closures(models)
    pt = ParallelTempering(len(samplers), seed=0)
    for step in range(1, 301):
        for s, c in zip(samplers, closures):
            s.step(c)
        if step % 5 == 0:
            _exchange(pt, samplers)
    assert sum(pt.attempts) == 60
    assert all(0.0 <= r <= 1.0 for r in pt.swap_rates())
    assert sum(pt.accepts) > 0
    assert samplers[0].energy < samplers[2].energy
    for s, c in zip(samplers, closures):
        assert s.energy == pytest.approx(c(), rel=1e-6)


def test_exchange_needs_energies(make_model: Callable[..., nn.Module]) -> None:
    _, samplers = _replicas(make_model, [0.1, 0.2])
    pt = ParallelTempering(len(samplers))
    with pytest.raises(RuntimeError, match="energy"):
        _exchange(pt, samplers)
    with pytest.raises(ValueError, match="2 replicas"):
        ParallelTempering(1)


def test_uncached_replicas_take_the_exchange_energies_after_a_swap(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    """Mini-batch replicas re-measure at every step; after a swap each holds the energy its new
    state had on the exchange's batch (never None: the trainer reports it)."""
    energy = MinibatchEnergy(nn.CrossEntropyLoss(), synthetic.train, batch_size=32)
    models, samplers = _replicas(make_model, [0.1, 0.2], cache_energy=False)
    for s, c in zip(samplers, energy.closures(models)):
        s.step(c)
    before = [_weights(m) for m in models]
    pt = ParallelTempering(len(samplers), seed=0)
    _exchange(pt, samplers, [2.0, 1.0])
    assert all(torch.equal(a, b) for a, b in zip(_weights(models[0]), before[1]))
    assert (samplers[0].energy, samplers[1].energy) == (1.0, 2.0)
    calls = []
    closures = energy.closures(models)
    samplers[0].step(lambda: calls.append(1) or closures[0]())
    assert len(calls) == 2  # not cached: the current state is measured on the new batch


def test_state_dict_round_trip_continues_identically(make_model: Callable[..., nn.Module]) -> None:
    def run(pt: ParallelTempering, rounds: int, g: torch.Generator) -> list[list[int]]:
        decisions = []
        for _ in range(rounds):
            energies = torch.rand(4, generator=g).tolist()
            _exchange(pt, samplers, energies)
            decisions.append(list(pt.accepts))
        return decisions

    temperatures = geometric_ladder(0.1, 4, 2.0)
    _, samplers = _replicas(make_model, temperatures)
    for s in samplers:
        s.energy = 0.0
    pt = ParallelTempering(len(samplers), seed=3)
    run(pt, 7, torch.Generator().manual_seed(0))
    state = copy.deepcopy(pt.state_dict())
    energies_g = torch.Generator().manual_seed(1)
    expected = run(pt, 20, energies_g)

    _, other_samplers = _replicas(make_model, temperatures)
    for s in other_samplers:
        s.energy = 0.0
    other = ParallelTempering(len(other_samplers), seed=42)
    other.load_state_dict(state)
    assert run(other, 20, torch.Generator().manual_seed(1)) == expected
    assert other.attempts == pt.attempts and other.n_rounds == pt.n_rounds == 27
