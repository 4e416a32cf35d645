"""The ``torch.optim``-style sign-flip sampler on real binary models and energies."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from mcmc_core import SignFlipSampler, binary_parameters
from mcmc_core import functional as F
from mcmc_core.data import DataSplits
from mcmc_core.energy import FullEnergy


def _snapshot(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


class Recorder:
    """A closure that snapshots the weights at every call and returns the next given energy."""

    def __init__(self, params: list[torch.Tensor], energy: Callable[[int], float]) -> None:
        self.params, self.energy = params, energy
        self.seen: list[list[torch.Tensor]] = []

    def __call__(self) -> float:
        self.seen.append(_snapshot(self.params))
        return self.energy(len(self.seen))


def _rising(n: int) -> float:
    """Every evaluation is worse than all before: each candidate is uphill."""
    return float(n)


def _flat(n: int) -> float:
    return 0.0


def _run(model: nn.Module, energy: FullEnergy, steps: int, **kwargs: object) -> list[torch.Tensor]:
    sampler = SignFlipSampler(binary_parameters(model), cache_energy=True,
                              **kwargs)  # type: ignore[arg-type]
    closure = energy.closure(model)
    for _ in range(steps):
        sampler.step(closure)
    return _snapshot(binary_parameters(model))


# -- reproducibility -----------------------------------------------------------------------------
def test_same_seed_gives_bit_identical_weights(make_model: Callable[..., nn.Module],
                                               synthetic: DataSplits) -> None:
    energy = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    start = _snapshot(binary_parameters(make_model(hidden=[8])))
    kw = dict(temperature=0.01, flip_ratio=0.05, seed=7)
    first = _run(make_model(hidden=[8]), energy, 60, **kw)
    again = _run(make_model(hidden=[8]), energy, 60, **kw)
    other = _run(make_model(hidden=[8]), energy, 60, **{**kw, "seed": 8})
    assert not _equal(first, start)  # the chain moved
    assert _equal(first, again)
    assert not _equal(first, other)


def test_a_given_generator_is_used_instead_of_a_seed(make_model: Callable[..., nn.Module],
                                                     synthetic: DataSplits) -> None:
    energy = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    by_seed = _run(make_model(), energy, 30, temperature=0.01, seed=3)
    by_generator = _run(make_model(), energy, 30, temperature=0.01,
                        generator=torch.Generator().manual_seed(3))
    assert _equal(by_seed, by_generator)


# -- rejection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("proposal", ["layer", "all"])
@pytest.mark.parametrize("acceptance", ["metropolis", "barker"])
def test_rejected_steps_restore_the_weights_exactly(make_model: Callable[..., nn.Module],
                                                    proposal: str, acceptance: str) -> None:
    model = make_model(hidden=[8])
    params = binary_parameters(model)
    start = _snapshot(params)
    storages = [p.data_ptr() for p in params]
    closure = Recorder(params, _rising)
    sampler = SignFlipSampler(params, temperature=1e-12, flip_ratio=0.2, proposal=proposal,
                              acceptance=acceptance, seed=0)
    for _ in range(25):
        energy = sampler.step(closure)
        assert _equal(_snapshot(params), start)
        assert energy == sampler.energy == float(len(closure.seen) - 1)  # the current state's
    # Every candidate really differed from the current state.
    assert all(not _equal(seen, start) for seen in closure.seen[1::2])
    assert [p.data_ptr() for p in params] == storages  # no tensor was replaced
    assert sampler.counts() == (25, 0)


def test_accepted_steps_keep_the_candidate(make_model: Callable[..., nn.Module]) -> None:
    params = binary_parameters(make_model(hidden=[8]))
    closure = Recorder(params, _flat)  # dE = 0: Metropolis always accepts
    sampler = SignFlipSampler(params, temperature=0.1, flip_ratio=0.1, seed=0)
    for _ in range(10):
        sampler.step(closure)
        assert _equal(_snapshot(params), closure.seen[-1])  # the state is the last candidate
    assert sampler.counts() == (10, 10)


# -- proposals -----------------------------------------------------------------------------------
def _flips_per_step(closure: Recorder) -> list[list[int]]:
    """Per step, the number of weights the candidate changed in each tensor (uncached energy:
    each step evaluates the current state, then the candidate)."""
    out = []
    for current, candidate in zip(closure.seen[0::2], closure.seen[1::2], strict=True):
        out.append([int((a != b).sum()) for a, b in zip(current, candidate)])
    return out


@pytest.mark.parametrize("flip_ratio", [0.02, 0.1, 0.26, 1.0])
def test_layer_proposal_flips_round_ratio_times_n_in_one_layer(
        make_model: Callable[..., nn.Module], flip_ratio: float) -> None:
    params = binary_parameters(make_model(hidden=[10]))  # 160 and 30 weights
    closure = Recorder(params, _rising)
    sampler = SignFlipSampler(params, temperature=1e-9, flip_ratio=flip_ratio, proposal="layer",
                              seed=1)
    for _ in range(40):
        sampler.step(closure)
    expected = [F.flip_count(flip_ratio, p.numel()) for p in params]
    chosen = []
    for flips in _flips_per_step(closure):
        layers = [i for i, n in enumerate(flips) if n]
        assert len(layers) == 1
        assert flips[layers[0]] == expected[layers[0]]
        chosen.append(layers[0])
    assert set(chosen) == {0, 1}  # a random layer each step: both get picked


@pytest.mark.parametrize("flip_ratio", [0.02, 0.1, 0.5])
def test_all_proposal_flips_round_ratio_times_n_in_every_layer(
        make_model: Callable[..., nn.Module], flip_ratio: float) -> None:
    params = binary_parameters(make_model(hidden=[10]))
    closure = Recorder(params, _rising)
    sampler = SignFlipSampler(params, temperature=1e-9, flip_ratio=flip_ratio, proposal="all",
                              seed=1)
    for _ in range(10):
        sampler.step(closure)
    expected = [F.flip_count(flip_ratio, p.numel()) for p in params]
    assert _flips_per_step(closure) == [expected] * 10
    assert sampler.counts() == (10, 0)
    assert all(sampler.state[p]["n_proposed"] == 10 for p in params)


def test_param_groups_may_have_their_own_flip_ratio(make_model: Callable[..., nn.Module]) -> None:
    first, second = binary_parameters(make_model(hidden=[10]))
    closure = Recorder([first, second], _rising)
    sampler = SignFlipSampler([{"params": [first], "flip_ratio": 0.25}, {"params": [second]}],
                              temperature=1e-9, flip_ratio=0.1, proposal="all", seed=0)
    sampler.step(closure)
    assert _flips_per_step(closure) == [[40, 3]]


def test_coupled_flip_ratio_follows_the_temperature(make_model: Callable[..., nn.Module]) -> None:
    params = binary_parameters(make_model(hidden=[10]))  # 160 and 30 weights
    closure = Recorder(params, _rising)
    sampler = SignFlipSampler(params, temperature=0.25, flip_ratio=0.01, proposal="all",
                              coupled=True, seed=0)
    sampler.step(closure)
    for t in (0.1, 0.5, 3.0):  # as a schedule would anneal it; above 1 everything flips
        sampler.param_groups[0]["temperature"] = t
        sampler.step(closure)
    counts = _flips_per_step(closure)
    assert counts == [[F.flip_count(min(1.0, t), p.numel()) for p in params]
                      for t in (0.25, 0.1, 0.5, 3.0)]
    assert counts[0] == [40, 8] and counts[-1] == [160, 30]


def test_uncoupled_flip_ratio_ignores_the_temperature(make_model: Callable[..., nn.Module]
                                                      ) -> None:
    params = binary_parameters(make_model(hidden=[10]))
    closure = Recorder(params, _rising)
    sampler = SignFlipSampler(params, temperature=0.5, flip_ratio=0.05, proposal="all", seed=0)
    sampler.step(closure)
    sampler.param_groups[0]["temperature"] = 0.01
    sampler.step(closure)
    assert _flips_per_step(closure) == [[8, 2], [8, 2]]


# -- acceptance rules ----------------------------------------------------------------------------
def test_barker_accepts_flat_moves_half_the_time(make_model: Callable[..., nn.Module]) -> None:
    params = binary_parameters(make_model())
    sampler = SignFlipSampler(params, temperature=0.1, acceptance="barker", seed=0)
    metropolis = SignFlipSampler(params, temperature=0.1, acceptance="metropolis", seed=0)
    for _ in range(600):
        sampler.step(lambda: 0.0)
        metropolis.step(lambda: 0.0)
    proposed, accepted = sampler.counts()
    assert proposed == 600
    assert accepted / proposed == pytest.approx(0.5, abs=0.07)  # sd 0.02
    assert metropolis.counts() == (600, 600)


@pytest.mark.parametrize("acceptance", ["metropolis", "barker"])
def test_acceptance_rate_matches_the_rule_for_a_fixed_uphill_move(
        make_model: Callable[..., nn.Module], acceptance: str) -> None:
    """Energy alternates so that every candidate is exactly dE = +0.1 above the current state."""
    params = binary_parameters(make_model())
    sampler = SignFlipSampler(params, temperature=0.1, acceptance=acceptance, seed=2)
    for _ in range(1500):
        base = sampler.energy if sampler.energy is not None else 0.0
        sampler.step(lambda base=base, calls=iter((base, base + 0.1)): next(calls))
    proposed, accepted = sampler.counts()
    p = F.acceptance_probability(0.1, 0.1, acceptance)
    assert accepted / proposed == pytest.approx(p, abs=0.05)  # sd ~ 0.012


@pytest.mark.parametrize("acceptance", ["metropolis", "barker"])
def test_sampling_lowers_a_real_energy(make_model: Callable[..., nn.Module], synthetic: DataSplits,
                                       acceptance: str) -> None:
    model = make_model()
    energy = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    closure = energy.closure(model)
    start = closure()
    sampler = SignFlipSampler(binary_parameters(model), temperature=1e-3, flip_ratio=0.05,
                              acceptance=acceptance, cache_energy=True, seed=0)
    for _ in range(150):
        sampler.step(closure)
    assert sampler.energy == pytest.approx(closure(), abs=1e-6)
    assert sampler.energy < start - 0.1


def test_zero_temperature_is_greedy_descent(make_model: Callable[..., nn.Module],
                                            synthetic: DataSplits) -> None:
    model = make_model()
    closure = FullEnergy(nn.CrossEntropyLoss(), synthetic.train).closure(model)
    sampler = SignFlipSampler(binary_parameters(model), temperature=0.0, cache_energy=True, seed=0)
    energies = [sampler.step(closure) for _ in range(80)]
    assert all(b <= a for a, b in zip(energies, energies[1:]))


# -- energy caching ------------------------------------------------------------------------------
def test_cached_energy_costs_one_evaluation_per_step(make_model: Callable[..., nn.Module]) -> None:
    params = binary_parameters(make_model())
    cached = Recorder(params, lambda n: 1.0 + (n % 3) * 0.01)
    uncached = Recorder(params, lambda n: 1.0 + (n % 3) * 0.01)
    s1 = SignFlipSampler(params, temperature=0.05, cache_energy=True, seed=0)
    for _ in range(20):
        s1.step(cached)
    s2 = SignFlipSampler(params, temperature=0.05, cache_energy=False, seed=0)
    for _ in range(20):
        s2.step(uncached)
    assert len(cached.seen) == 21  # the first step also measures the starting state
    assert len(uncached.seen) == 40


def test_invalidate_energy_makes_the_next_step_remeasure(make_model: Callable[..., nn.Module]
                                                         ) -> None:
    params = binary_parameters(make_model())
    closure = Recorder(params, _rising)
    sampler = SignFlipSampler(params, temperature=1e-9, cache_energy=True, seed=0)
    sampler.step(closure)
    sampler.step(closure)
    assert len(closure.seen) == 3
    sampler.invalidate_energy()
    assert sampler.energy is None
    sampler.step(closure)
    assert len(closure.seen) == 5


# -- state_dict ----------------------------------------------------------------------------------
@pytest.mark.parametrize("proposal", ["layer", "all"])
def test_state_dict_round_trip_continues_identically(make_model: Callable[..., nn.Module],
                                                     synthetic: DataSplits, proposal: str) -> None:
    energy = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    kw = dict(temperature=0.01, flip_ratio=0.05, proposal=proposal, cache_energy=True)
    model = make_model(hidden=[8])
    sampler = SignFlipSampler(binary_parameters(model), seed=0, **kw)  # type: ignore[arg-type]
    closure = energy.closure(model)
    for _ in range(30):
        sampler.step(closure)
    saved_state = copy.deepcopy(sampler.state_dict())
    saved_model = copy.deepcopy(model.state_dict())
    for _ in range(30):
        sampler.step(closure)

    resumed = make_model(hidden=[8], seed=1)  # other initial weights, all overwritten
    resumed.load_state_dict(saved_model)
    calls = []
    resumed_closure = energy.closure(resumed)
    other = SignFlipSampler(binary_parameters(resumed), seed=123, **kw)  # type: ignore[arg-type]
    other.load_state_dict(saved_state)
    for _ in range(30):
        other.step(lambda: calls.append(1) or resumed_closure())
    assert _equal(binary_parameters(resumed), binary_parameters(model))
    assert other.energy == sampler.energy
    assert other.counts() == sampler.counts()
    assert other.n_steps == sampler.n_steps == 60
    assert len(calls) == 30  # the cached energy came back too: no re-measurement


def test_state_dict_keeps_annealed_temperature_and_flip_ratio(make_model: Callable[..., nn.Module]
                                                              ) -> None:
    params = binary_parameters(make_model())
    sampler = SignFlipSampler(params, temperature=0.5, flip_ratio=0.2, seed=0)
    sampler.param_groups[0].update(temperature=0.125, flip_ratio=0.05)
    state = copy.deepcopy(sampler.state_dict())
    other = SignFlipSampler(params, temperature=1.0, flip_ratio=0.5, seed=0)
    other.load_state_dict(state)
    assert other.param_groups[0]["temperature"] == 0.125
    assert other.param_groups[0]["flip_ratio"] == 0.05


# -- counts and arguments ------------------------------------------------------------------------
def test_counts_give_the_acceptance_rate(make_model: Callable[..., nn.Module]) -> None:
    params = binary_parameters(make_model(hidden=[8]))
    sampler = SignFlipSampler(params, temperature=0.1, seed=0)
    assert sampler.counts() == (0, 0)
    for i in range(40):
        sampler.step(lambda i=i, calls=iter((0.0, 0.0 if i % 4 == 0 else 1e6)): next(calls))
    assert sampler.counts() == (40, 10)
    per_tensor = [(sampler.state[p]["n_proposed"], sampler.state[p]["n_accepted"]) for p in params]
    assert sum(n for n, _ in per_tensor) == 40 and sum(a for _, a in per_tensor) == 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=0.1, flip_ratio=0.0), "flip_ratio"),
        (dict(temperature=0.1, flip_ratio=1.5), "flip_ratio"),
        (dict(temperature=0.1, acceptance="gibbs"), "acceptance"),
        (dict(temperature=0.1, proposal="one"), "proposal"),
        (dict(temperature=0.1, boltzmann=0.0), "boltzmann"),
    ],
)
def test_invalid_arguments_are_rejected(make_model: Callable[..., nn.Module], kwargs: dict,
                                        match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SignFlipSampler(binary_parameters(make_model()), **kwargs)


def test_is_a_torch_optimizer(make_model: Callable[..., nn.Module]) -> None:
    sampler = SignFlipSampler(binary_parameters(make_model()), temperature=0.1)
    assert isinstance(sampler, torch.optim.Optimizer)
    assert sampler.param_groups[0]["temperature"] == 0.1
