"""The pure maths of a sign-flip step: flip counts, proposals, flips and acceptance rules."""

from __future__ import annotations

import math

import pytest
import torch

from mcmc_core import functional as F


# -- flip_count ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flip_ratio", "numel", "expected"),
    [
        (0.01, 1000, 10),
        (0.0149, 1000, 15),  # rounds up above .5
        (0.0101, 1000, 10),  # rounds down: ceil() would give 11
        (0.0191, 100, 2),
        (0.5, 7, 4),
        (1.0, 7, 7),
    ],
)
def test_flip_count_rounds_ratio_times_numel(flip_ratio: float, numel: int, expected: int) -> None:
    assert F.flip_count(flip_ratio, numel) == expected


@pytest.mark.parametrize(("flip_ratio", "numel"), [(1e-6, 10), (0.001, 100), (0.04, 10), (0.3, 1)])
def test_flip_count_is_at_least_one(flip_ratio: float, numel: int) -> None:
    assert F.flip_count(flip_ratio, numel) == 1


@pytest.mark.parametrize(("flip_ratio", "numel"), [(1.0, 5), (1.2, 5), (0.999, 3), (2.0, 1)])
def test_flip_count_never_exceeds_numel(flip_ratio: float, numel: int) -> None:
    assert F.flip_count(flip_ratio, numel) == numel


def test_flip_count_grows_proportionally_without_ceil_jumps() -> None:
    numel = 1000
    ratios = [i / 10000 for i in range(10, 200)]
    counts = [F.flip_count(r, numel) for r in ratios]
    assert counts == sorted(counts)
    # Never off by more than one half from the exact proportion (ceil can be off by almost one).
    assert all(abs(c - r * numel) <= 0.5 for c, r in zip(counts, ratios))


# -- propose_flips -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("numel", "flip_ratio"),
    [
        (1, 0.5),
        (10, 0.3),
        (50, 1.0),
        (1000, 0.01),
        (5000, 0.9),
        # Above the randperm threshold: the sparse path (a stream of draws, first k distinct).
        ((1 << 16) + 1, 0.001),
        (1 << 20, 0.002),
        # Above the threshold but dense: randperm again.
        ((1 << 16) + 1, 0.5),
    ],
)
def test_propose_flips_draws_distinct_indices_in_range(numel: int, flip_ratio: float) -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        idx = F.propose_flips(numel, flip_ratio, g)
        assert idx.dtype == torch.int64 and idx.dim() == 1
        assert len(idx) == F.flip_count(flip_ratio, numel)
        assert len(torch.unique(idx)) == len(idx)  # without replacement
        assert int(idx.min()) >= 0 and int(idx.max()) < numel


@pytest.mark.parametrize("numel", [12, (1 << 16) + 8])
def test_propose_flips_is_uniform(numel: int) -> None:
    """Every index is equally likely, in the dense and in the sparse path."""
    g = torch.Generator().manual_seed(1)
    if numel < 100:
        flip_ratio, rounds = 0.25, 2000  # k = 3 of 12
        counts = torch.zeros(numel)
        for _ in range(rounds):
            counts[F.propose_flips(numel, flip_ratio, g)] += 1
        expected = rounds * 3 / numel  # 500 per index, sd ~ 19
        assert (counts - expected).abs().max() < 100
    else:
        flip_ratio, rounds = 0.01, 40  # k = 655 per draw: bucket the indices into 8 blocks
        counts = torch.zeros(8)
        for _ in range(rounds):
            idx = F.propose_flips(numel, flip_ratio, g)
            counts += torch.bincount(idx * 8 // numel, minlength=8)
        expected = counts.sum() / 8  # ~3275 per block, sd ~ 53
        assert (counts - expected).abs().max() < 300


def test_propose_flips_follows_the_generator() -> None:
    draws = [F.propose_flips(1000, 0.05, torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


# -- apply_flips ---------------------------------------------------------------------------------
def test_apply_flips_negates_exactly_the_indices() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.where(torch.rand(6, 7, generator=g) > 0.5, 1.0, -1.0)
    before = w.clone()
    idx = torch.tensor([0, 5, 41, 13])
    F.apply_flips(w, idx)
    changed = (w != before).view(-1).nonzero().view(-1)
    assert sorted(changed.tolist()) == sorted(idx.tolist())
    assert torch.equal(w.view(-1)[idx], -before.view(-1)[idx])


def test_apply_flips_twice_restores_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.where(torch.rand(30, 20, generator=g) > 0.5, 1.0, -1.0),
                           requires_grad=False)
    before = w.detach().clone()
    storage = w.data_ptr()
    for _ in range(20):
        idx = F.propose_flips(w.numel(), 0.1, g)
        F.apply_flips(w, idx)
        assert not torch.equal(w, before)
        F.apply_flips(w, idx)
        assert torch.equal(w, before)
    assert w.data_ptr() == storage  # in place: no new tensor


def test_apply_flips_works_on_a_parameter_that_requires_grad() -> None:
    w = torch.nn.Parameter(torch.ones(4))
    F.apply_flips(w, torch.tensor([1, 2]))
    assert w.tolist() == [1.0, -1.0, -1.0, 1.0]


# -- acceptance_probability ----------------------------------------------------------------------
@pytest.mark.parametrize("delta", [-5.0, -0.1, -1e-9, 0.0])
def test_metropolis_accepts_downhill_and_flat_moves_surely(delta: float) -> None:
    assert F.acceptance_probability(delta, 0.1, "metropolis") == 1.0


@pytest.mark.parametrize(("delta", "temperature", "boltzmann"),
                         [(0.1, 0.1, 1.0), (0.3, 0.1, 1.0), (1.0, 2.0, 1.0), (0.2, 0.1, 4.0),
                          (1e-3, 1e-3, 1.0)])
def test_metropolis_uphill_is_exp_of_minus_delta_over_kt(delta: float, temperature: float,
                                                         boltzmann: float) -> None:
    p = F.acceptance_probability(delta, temperature, "metropolis", boltzmann)
    assert p == pytest.approx(math.exp(-delta / (boltzmann * temperature)), rel=1e-12)


@pytest.mark.parametrize(("delta", "temperature", "boltzmann"),
                         [(0.0, 1.0, 1.0), (0.1, 0.1, 1.0), (-0.1, 0.1, 1.0), (0.5, 0.2, 3.0),
                          (-2.0, 0.5, 1.0)])
def test_barker_is_logistic_of_delta_over_kt(delta: float, temperature: float,
                                             boltzmann: float) -> None:
    p = F.acceptance_probability(delta, temperature, "barker", boltzmann)
    assert p == pytest.approx(1.0 / (1.0 + math.exp(delta / (boltzmann * temperature))), rel=1e-12)


def test_barker_is_stable_for_huge_energy_changes() -> None:
    assert F.acceptance_probability(1e6, 1e-6, "barker") == 0.0
    assert F.acceptance_probability(-1e6, 1e-6, "barker") == 1.0
    assert F.acceptance_probability(1e6, 1e-6, "metropolis") == 0.0


def test_barker_and_metropolis_satisfy_detailed_balance() -> None:
    """p(dE) / p(-dE) = exp(-dE / kT) for both rules."""
    for rule in F.ACCEPTANCE_RULES:
        for delta in (0.05, 0.2, 1.0):
            ratio = (F.acceptance_probability(delta, 0.3, rule, 2.0)
                     / F.acceptance_probability(-delta, 0.3, rule, 2.0))
            assert ratio == pytest.approx(math.exp(-delta / 0.6), rel=1e-12)


@pytest.mark.parametrize("rule", F.ACCEPTANCE_RULES)
def test_zero_temperature_is_greedy(rule: str) -> None:
    assert F.acceptance_probability(-1e-12, 0.0, rule) == 1.0
    assert F.acceptance_probability(-3.0, 0.0, rule) == 1.0
    assert F.acceptance_probability(1e-12, 0.0, rule) == 0.0
    assert F.acceptance_probability(3.0, 0.0, rule) == 0.0
    assert F.acceptance_probability(0.0, 0.0, rule) == (1.0 if rule == "metropolis" else 0.5)


def test_unknown_acceptance_rule_is_an_error() -> None:
    with pytest.raises(ValueError, match="rule"):
        F.acceptance_probability(0.1, 1.0, "glauber")


@pytest.mark.parametrize("rule", F.ACCEPTANCE_RULES)
def test_accept_draws_with_the_acceptance_probability(rule: str) -> None:
    g = torch.Generator().manual_seed(0)
    n = 4000
    rate = sum(F.accept(0.1, 0.1, g, rule) for _ in range(n)) / n
    p = F.acceptance_probability(0.1, 0.1, rule)  # e^-1 = 0.37 or 0.27, sd ~ 0.008
    assert rate == pytest.approx(p, abs=0.04)


def test_accept_consumes_exactly_one_uniform() -> None:
    g, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for delta in (-1.0, 0.0, 0.5, 100.0):
        F.accept(delta, 0.1, g)
        torch.rand((), generator=ref)
        assert torch.equal(g.get_state(), ref.get_state())


# -- swap_log_acceptance -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("e_i", "e_j", "t_i", "t_j", "k"),
    [(1.0, 1.5, 1.0, 2.0, 1.0), (1.5, 1.0, 1.0, 2.0, 1.0), (0.2, 0.9, 0.01, 0.02, 1.0),
     (0.5, 0.5, 0.1, 0.4, 1.0), (0.3, 0.4, 0.1, 0.2, 2.5), (2.0, 1.0, 0.5, 0.25, 1.0)],
)
def test_swap_acceptance_is_min_one_exp_of_beta_difference_times_energy_difference(
        e_i: float, e_j: float, t_i: float, t_j: float, k: float) -> None:
    log_p = F.swap_log_acceptance(e_i, e_j, t_i, t_j, k)
    expected = min(1.0, math.exp((1 / (k * t_i) - 1 / (k * t_j)) * (e_i - e_j)))
    assert log_p <= 0.0
    assert math.exp(log_p) == pytest.approx(expected, rel=1e-12)


def test_swap_of_a_colder_replica_holding_the_higher_energy_is_certain() -> None:
    assert F.swap_log_acceptance(2.0, 1.0, 0.1, 0.2) == 0.0
    # ...and the reverse situation is exponentially unlikely.
    assert F.swap_log_acceptance(1.0, 2.0, 0.1, 0.2) == pytest.approx(-5.0)


@pytest.mark.parametrize(("numel", "k"), [(1 << 17, 2), (1 << 17, 8), (1 << 17, 157),
                                          (1 << 12, 900), (1 << 20, 3000)])
def test_sparse_proposal_paths_draw_the_same_indices(numel: int, k: int) -> None:
    """The Python and the tensor deduplication consume the same draws and agree exactly."""
    for seed in range(3):
        g_py, g_torch = (torch.Generator().manual_seed(seed) for _ in range(2))
        for _ in range(3):
            py = F._first_distinct_py(numel, k, g_py)
            assert torch.equal(py, F._first_distinct_torch(numel, k, g_torch))
            assert py.dtype == torch.int64 and len(py) == k
        assert torch.equal(g_py.get_state(), g_torch.get_state())
