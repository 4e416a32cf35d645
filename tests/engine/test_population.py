"""Populations of chains stepped together: caches, temperatures, flips, seeds, pruning, export."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from mcmc_core import functional as F
from mcmc_core.data import DataConfig, DataSplits, load_dataset
from mcmc_core.energy import FullEnergy, evaluate
from mcmc_core.layers import binary_parameters
from mcmc_core.population import (
    EnergySet,
    HiddenActivation,
    Population,
    StackedMLP,
    acceptance_probability_t,
    acceptance_thresholds,
    distinct_indices,
)
from mcmc_core.population._random import ChainRandom, slot, slot_offsets, step_offsets
from mcmc_core.schedules import ChainSchedules


def _population(data: DataSplits, hidden: list[int], k: int = 4, **kwargs: Any) -> Population:
    kwargs.setdefault("temperature", 1e-2)
    kwargs.setdefault("flip_ratio", 0.05)
    seeds = kwargs.pop("seeds", range(k))
    return Population.build(data.train, hidden, data.n_classes, seeds=seeds, **kwargs)


def _weights(pop: Population) -> list[torch.Tensor]:
    return [w.clone() for w in pop.net.weights]


def _assert_caches_fresh(pop: Population) -> None:
    cache = pop.cache
    fresh = pop.net.preactivations(pop.energy_set.inputs_t, cache.activation)
    for cached, full in zip(cache.pre, fresh, strict=True):
        assert torch.equal(cached, full)  # integers: exactly
    if cache.exp_last is not None:
        assert torch.equal(cache.exp_last, torch.mul(fresh[-1], cache.scale).exp_())
        assert torch.equal(cache.picked, pop.energy_set.picked(fresh[-1], cache.bound))
    if pop.cache.margin_sums is not None:
        assert torch.equal(pop.cache.margin_sums, pop.cache.margin_sum(fresh[0]))
    torch.testing.assert_close(pop.energies, pop.full_energies(), rtol=1e-12, atol=1e-12)


def _flip(pop: Population, flips: dict) -> None:
    """Negate the weights that ``flips`` names, padding excluded (twice restores them)."""
    for i, f in flips.items():
        index = f.weight.view(-1) if f.valid is None else f.weight[f.valid]
        pop.net.weights[i].view(-1)[index] *= -1


# -- caches ---------------------------------------------------------------------------------------
CACHE_CASES = [
    ([], {}),  # one layer: only the last-layer (in-place rows) path
    ([8], {}),  # rows path, then a low-rank update of the last layer
    ([8], {"flip_ratio": [0.02, 0.2, 0.5, 0.05]}),  # padding, repeated rows, dense draws
    ([8], {"flip_ratio": 0.005}),  # one flip per layer: a rank-1 (outer product) update
    ([8, 6], {"flip_ratio": 0.1}),  # a dense layer below the first changed one
    ([8, 6], {"proposal": "all", "flip_ratio": [0.02, 0.1, 0.3, 0.05]}),
    ([8], {"output_scale": 40.0}),  # logits large enough for the max-shifted loss
    ([8], {"acceptance": "barker", "temperature": [0.0, 1e-3, 1e-2, 1.0]}),
    # The hidden-margin term: repeated rows, then every layer's flips at once.
    ([8], {"margin_weight": 0.5, "margin": 3, "flip_ratio": [0.02, 0.2, 0.5, 0.05]}),
    ([8, 6], {"margin_weight": 0.5, "margin": 3, "proposal": "all", "flip_ratio": 0.1}),
    # Label smoothing: last-layer rows, low-rank and dense updates, shifted logits.
    ([8], {"label_smoothing": 0.1, "flip_ratio": [0.02, 0.2, 0.5, 0.05]}),
    ([8, 6], {"label_smoothing": 0.2, "proposal": "all", "flip_ratio": 0.1}),
    ([8], {"label_smoothing": 0.1, "output_scale": 40.0}),
    # A smooth hidden activation in the energy: rows, low-rank, dense and shifted paths.
    ([8], {"smooth_hidden": 3.0, "flip_ratio": [0.02, 0.2, 0.5, 0.05]}),
    ([8, 6], {"smooth_hidden": 4.0, "flip_ratio": 0.1}),
    ([8, 6], {"smooth_hidden": 2.0, "margin_weight": 0.5, "margin": 3, "proposal": "all",
              "flip_ratio": 0.1}),
    ([8], {"smooth_hidden": 3.0, "label_smoothing": 0.1, "output_scale": 40.0}),
]


@pytest.mark.parametrize("hidden, kwargs", CACHE_CASES)
def test_caches_equal_a_full_forward_after_many_steps(synthetic: DataSplits, hidden: list[int],
                                                      kwargs: dict[str, Any]) -> None:
    pop = _population(synthetic, hidden, **kwargs)
    energies = []
    for _ in range(400):
        energies.append(pop.step().clone())
    _assert_caches_fresh(pop)
    # Chains moved (some proposals were accepted) and energies are finite.
    assert int(pop.n_accepted.sum()) > 0 and torch.isfinite(torch.stack(energies)).all()


@pytest.mark.parametrize("hidden, kwargs", CACHE_CASES)
def test_candidate_energies_equal_a_full_forward_of_the_candidates(
        synthetic: DataSplits, hidden: list[int], kwargs: dict[str, Any]) -> None:
    pop = _population(synthetic, hidden, **kwargs)
    for _ in range(40):
        pop.run(7)
        flips = pop._next_block().flips(0)
        candidates = pop.cache.propose(flips).clone()
        pop.cache.commit(torch.zeros(len(pop), dtype=torch.bool))  # rejected: nothing changes
        _flip(pop, flips)  # the candidates' weights, evaluated by a full forward
        expected = pop.full_energies()
        _flip(pop, flips)
        torch.testing.assert_close(candidates, expected, rtol=1e-6, atol=1e-6)
    _assert_caches_fresh(pop)


MIXED_FLIPS = [0.02, 0.1, 0.3, 0.05, 0.2]


@pytest.mark.parametrize("hidden, proposal, flip_ratio", [
    ([8], "layer", MIXED_FLIPS), ([8], "layer", 0.005), ([8, 6], "all", MIXED_FLIPS),
    ([], "layer", MIXED_FLIPS)])
def test_chunks_do_not_change_the_chains(synthetic: DataSplits, hidden: list[int],
                                         proposal: str, flip_ratio: Any) -> None:
    kwargs = dict(proposal=proposal, flip_ratio=flip_ratio)
    whole = _population(synthetic, hidden, k=5, chunk=5, **kwargs)
    parts = _population(synthetic, hidden, k=5, chunk=2, **kwargs)
    whole.run(150)
    parts.run(150)
    assert all(torch.equal(w, v) for w, v in zip(whole.net.weights, parts.net.weights))
    torch.testing.assert_close(whole.energies, parts.energies, rtol=1e-12, atol=1e-12)
    _assert_caches_fresh(parts)


def test_energy_matches_full_energy_and_exported_model(synthetic: DataSplits) -> None:
    pop = _population(synthetic, [8], k=3)
    pop.run(100)
    full = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    for k in range(len(pop)):
        model = pop.export(k)
        # The exported module is an ordinary binary MLP holding chain k's weights ...
        for w, stacked in zip(binary_parameters(model), pop.net.weights, strict=True):
            assert torch.equal(w, stacked[k])
        # ... whose loss on the energy set is the population's energy of chain k.
        loss = float(nn.CrossEntropyLoss()(model(full.inputs), full.targets))
        assert math.isclose(loss, float(pop.energies[k]), rel_tol=1e-5, abs_tol=1e-6)
    # Batched evaluation equals evaluate() of every exported chain.
    losses, accuracies = pop.evaluate(synthetic.test)
    for k in range(len(pop)):
        loss, accuracy = evaluate(pop.export(k), nn.CrossEntropyLoss(), synthetic.test.inputs,
                                  synthetic.test.targets)
        assert math.isclose(loss, float(losses[k]), rel_tol=1e-5)
        assert accuracy == float(accuracies[k])


def test_energy_set_subset_is_full_energys_subset(synthetic: DataSplits) -> None:
    ours = EnergySet(synthetic.train, samples=100, seed=3)
    theirs = FullEnergy(nn.CrossEntropyLoss(), synthetic.train, samples=100, seed=3)
    assert torch.equal(ours.targets, theirs.targets)
    assert torch.equal(ours.inputs_t, theirs.inputs.flatten(1).t())


# -- temperatures, acceptance, flips --------------------------------------------------------------
def test_cold_chain_never_goes_uphill_and_hot_chain_accepts_more(synthetic: DataSplits) -> None:
    pop = _population(synthetic, [8], k=2, temperature=[0.0, 1.0], flip_ratio=0.05)
    energies = [pop.energies.clone()]
    for _ in range(300):
        energies.append(pop.step().clone())
    cold = torch.stack(energies)[:, 0]
    # T = 0: every accepted move is downhill or level.
    assert bool((cold[1:] <= cold[:-1]).all())
    # The hot chain accepts (much) more of its proposals.
    assert int(pop.n_accepted[1]) > 2 * int(pop.n_accepted[0])


def test_temperatures_follow_each_chains_exponential_schedule(synthetic: DataSplits) -> None:
    cooling = ChainSchedules.exponential([1.0, 0.5, 2.0], [0.5, 1.0, 0.9], [0.1, 0.0, 0.0])
    pop = _population(synthetic, [], k=3, schedule=cooling.temperatures)
    expected = [[max(0.1, 0.5**t), 0.5, 2.0 * 0.9**t] for t in range(6)]
    for t in range(6):
        expect = torch.tensor(expected[t], dtype=torch.float64)
        torch.testing.assert_close(pop.temperatures(), expect)
        pop.step()


@pytest.mark.parametrize("rule", F.ACCEPTANCE_RULES)
def test_acceptance_matches_functional(rule: str) -> None:
    g = torch.Generator().manual_seed(0)
    delta = torch.cat([torch.randn(200, generator=g, dtype=torch.float64) * 1e-2,
                       torch.zeros(20, dtype=torch.float64)])
    kt = torch.cat([torch.rand(180, generator=g, dtype=torch.float64) * 1e-2,
                    torch.zeros(40, dtype=torch.float64)])
    p = acceptance_probability_t(delta, kt, rule)
    expected = [F.acceptance_probability(float(d), float(t), rule) for d, t in zip(delta, kt)]
    torch.testing.assert_close(p, torch.tensor(expected, dtype=torch.float64))
    # The per-block thresholds give the same decisions as u < p.
    u = torch.rand(220, generator=g, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    threshold, tie = acceptance_thresholds(u, kt, rule)
    decided = (delta < threshold) | ((delta <= 0) if tie is None else ((delta == 0) & tie))
    assert torch.equal(decided, u < p)


def test_flip_counts_follow_each_chains_flip_ratio(synthetic: DataSplits) -> None:
    ratios = [0.01, 0.05, 0.3, 0.6]
    pop = _population(synthetic, [8], temperature=1e9, flip_ratio=ratios)  # accepts everything
    sizes = [w[0].numel() for w in pop.net.weights]
    assert pop.flip_counts() == [[F.flip_count(r, n) for n in sizes] for r in ratios]
    for _ in range(30):
        before = _weights(pop)
        pop.step()
        changed = [(w != b).flatten(1).sum(1) for w, b in zip(pop.net.weights, before)]
        layer = [i for i, c in enumerate(changed) if int(c.sum())]
        assert len(layer) == 1  # proposal="layer": one layer, the same for every chain
        assert changed[layer[0]].tolist() == [c[layer[0]] for c in pop.flip_counts()]


def test_distinct_indices_are_distinct_and_uniform() -> None:
    random = ChainRandom(torch.arange(3))
    numel, counts, m, length = 20, [3, 12, 1], 12, 400
    steps = step_offsets(0, length)
    bits = random.bits(0, length, slot_offsets([slot(j, 1) for j in range(m)]))
    idx = distinct_indices(random.keys, steps, 1, bits, numel, counts)
    for k, c in enumerate(counts):
        chosen = idx[k, :, :c]
        # Distinct within each step ...
        assert all(len(set(row)) == c for row in chosen.tolist())
        # ... and every index about equally often (expected 400 * c / 20 each).
        freq = torch.bincount(chosen.flatten(), minlength=numel).double() / (length * c / numel)
        assert float(freq.min()) > 0.5 and float(freq.max()) < 1.6


# -- reproducibility, resume, pruning -------------------------------------------------------------
def test_same_seeds_give_identical_weights(synthetic: DataSplits) -> None:
    a = _population(synthetic, [8], seeds=[5, 6, 7])
    b = _population(synthetic, [8], seeds=[5, 6, 7])
    c = _population(synthetic, [8], seeds=[5, 6, 8])
    for pop in (a, b, c):
        pop.run(150)
    assert all(torch.equal(x, y) for x, y in zip(a.net.weights, b.net.weights))
    assert torch.equal(a.energies, b.energies)
    assert not torch.equal(a.net.weights[0][2], c.net.weights[0][2])


@pytest.mark.parametrize("proposal", ["layer", "all"])
def test_state_dict_resumes_bit_identically(synthetic: DataSplits, proposal: str) -> None:
    kwargs = dict(proposal=proposal, flip_ratio=[0.05, 0.1, 0.02, 0.3],
                  schedule=ChainSchedules.exponential([1e-2] * 4, 0.99).temperatures)
    straight = _population(synthetic, [8], **kwargs)
    straight.run(130)
    first = _population(synthetic, [8], **kwargs)
    first.run(70)  # a block boundary is not a step boundary here
    state = first.state_dict()
    first.run(5)  # state_dict() is a copy: later steps do not change it
    resumed = _population(synthetic, [8], seeds=[9, 9, 9, 9], temperature=1.0, **kwargs)
    resumed.load_state_dict(state)
    resumed.run(60)
    assert all(torch.equal(x, y) for x, y in zip(straight.net.weights, resumed.net.weights))
    assert torch.equal(straight.energies, resumed.energies)
    assert torch.equal(straight.n_accepted, resumed.n_accepted)
    assert straight.n_steps == resumed.n_steps == 130


@pytest.mark.parametrize("flip_ratios", [[0.02, 0.1, 0.05], [0.005, 0.005, 0.005]])
def test_a_chain_takes_the_same_steps_alone_and_in_a_batch(synthetic: DataSplits,
                                                           flip_ratios: list[float]) -> None:
    kwargs = dict(temperature=[1e-3, 1e-2, 3e-2], flip_ratio=flip_ratios)
    batch = _population(synthetic, [8], k=3, seeds=[10, 11, 12], **kwargs)
    alone = _population(synthetic, [8], k=1, seeds=[11], temperature=1e-2,
                        flip_ratio=flip_ratios[1])
    batch.run(120)
    alone.run(120)
    assert all(torch.equal(w[1], v[0]) for w, v in zip(batch.net.weights, alone.net.weights))
    torch.testing.assert_close(batch.energies[1:2], alone.energies, rtol=1e-12, atol=0)


def test_dropped_chains_leave_the_others_unchanged(synthetic: DataSplits) -> None:
    kwargs = dict(temperature=[1e-3, 1e-2, 3e-2, 1e-1], flip_ratio=[0.02, 0.1, 0.05, 0.2])
    pop = _population(synthetic, [8], ids=["a", "b", "c", "d"], **kwargs)
    pop.run(50)
    before = _weights(pop)
    energies = pop.energies.clone()
    pop.drop(1)
    pop.keep(torch.tensor([True, True, False]))  # drops "d" (now at index 2)
    # The kept chains keep their weights, energies, hyperparameters and ids, and their caches
    # stay consistent.
    assert pop.ids == ["a", "c"] and len(pop) == 2
    assert all(torch.equal(w, b[[0, 2]]) for w, b in zip(pop.net.weights, before))
    assert torch.equal(pop.energies, energies[[0, 2]])
    torch.testing.assert_close(pop.flip_ratio, torch.tensor([0.02, 0.05], dtype=torch.float64))
    _assert_caches_fresh(pop)
    pop.run(50)
    _assert_caches_fresh(pop)
    # They continue exactly as if the dropped chains had never been there.
    never = _population(synthetic, [8], k=2, seeds=[0, 2], temperature=[1e-3, 3e-2],
                        flip_ratio=[0.02, 0.05])
    never.run(100)
    assert all(torch.equal(w, v) for w, v in zip(pop.net.weights, never.net.weights))
    with pytest.raises(ValueError, match="at least one chain"):
        pop.keep(torch.tensor([False, False]))


@pytest.mark.parametrize("hidden", [[], [8]])
def test_exchange_swaps_two_chains_states_and_keeps_their_parameters(synthetic: DataSplits,
                                                                     hidden: list[int]) -> None:
    pop = _population(synthetic, hidden, k=3, temperature=[1e-3, 1e-2, 1e-1],
                      flip_ratio=[0.02, 0.05, 0.1])
    pop.run(30)
    before, energies, temperatures = _weights(pop), pop.energies, pop.temperatures()
    accepted = pop.n_accepted.clone()
    pop.exchange(0, 2)
    assert all(torch.equal(w, b[[2, 1, 0]]) for w, b in zip(pop.net.weights, before))
    assert torch.equal(pop.energies, energies[[2, 1, 0]])
    # Temperatures, flip ratios and counts stay with their slot: only states move.
    assert torch.equal(pop.temperatures(), temperatures)
    assert torch.equal(pop.n_accepted, accepted)
    _assert_caches_fresh(pop)
    pop.run(30)
    _assert_caches_fresh(pop)


def test_custom_schedule_gives_every_steps_temperatures(synthetic: DataSplits) -> None:
    calls = []

    def schedule(start: int, length: int) -> torch.Tensor:
        calls.append((start, length))
        steps = torch.arange(start, start + length, dtype=torch.float64)
        return torch.stack([1e-2 / (1 + steps), torch.full_like(steps, 1e-3)])

    pop = _population(synthetic, [8], k=2, schedule=schedule)
    assert pop.temperatures(5).tolist() == pytest.approx([1e-2 / 6, 1e-3])
    pop.run(70)
    assert calls[-1][0] + calls[-1][1] >= 70  # drawn a block at a time
    # Its owner keeps the schedule in step with the chains (ChainSchedules.keep): one that
    # still gives two rows after a drop is caught at the next step.
    pop.drop(0)
    with pytest.raises(ValueError, match="shaped"):
        pop.run(1)
    bad = _population(synthetic, [8], k=2, schedule=lambda start, n: torch.zeros(3, n))
    with pytest.raises(ValueError, match="shaped"):
        bad.run(1)


# -- construction ---------------------------------------------------------------------------------
def test_stacked_mlp_round_trips_build_model(synthetic: DataSplits) -> None:
    from mcmc_core.models import ModelConfig, build_model

    cfg = ModelConfig(name="mlp", hidden=[8], output_scale=2.0)
    models = [build_model(cfg, synthetic.input_shape, synthetic.n_classes, seed=s) for s in (1, 2)]
    net = StackedMLP.from_models(models, synthetic.input_shape)
    assert net.hidden == [8] and net.output_scale == 2.0 and len(net) == 2
    x = synthetic.test.inputs[:5]
    for k, model in enumerate(models):
        assert torch.equal(net.export(k)(x), model.eval()(x))
    with pytest.raises(ValueError, match="only binary MLPs"):
        StackedMLP.from_models([build_model(ModelConfig(name="cnn", channels=[2]),
                                            synthetic.input_shape, 3)], synthetic.input_shape)


def test_invalid_hyperparameters_raise(synthetic: DataSplits) -> None:
    with pytest.raises(ValueError, match="flip_ratio"):
        _population(synthetic, [], flip_ratio=[0.1, 0.0, 0.1, 0.1])
    with pytest.raises(ValueError, match="temperature"):
        _population(synthetic, [], temperature=-1.0)
    with pytest.raises(ValueError, match="one per chain"):
        _population(synthetic, [], temperature=[0.9, 0.9])
    with pytest.raises(ValueError, match="acceptance"):
        _population(synthetic, [], acceptance="glauber")


# -- learning -------------------------------------------------------------------------------------
def test_population_learns_digits() -> None:
    data = load_dataset(DataConfig(name="digits"))
    pop = Population.build(data.train, [32], data.n_classes, seeds=range(4), output_scale=4.0,
                           schedule=ChainSchedules.exponential([1e-3, 3e-4, 1e-3, 3e-4],
                                                               0.999, 1e-5).temperatures,
                           temperature=0.0, flip_ratio=[2e-3, 2e-3, 5e-3, 5e-3])
    start = pop.energies.clone()
    pop.run(2500)
    loss, accuracy = pop.evaluate(data.test)
    assert bool((pop.energies < start).all())
    # Chance is 10 %; a few thousand steps reach far above it.
    assert float(accuracy.max()) > 0.5, accuracy


def test_the_margin_term_follows_exchanges_keeps_and_a_state_dict(synthetic: DataSplits) -> None:
    pop = _population(synthetic, [8], k=3, margin_weight=0.5, margin=3, flip_ratio=0.1)
    plain = _population(synthetic, [8], k=3, flip_ratio=0.1)
    assert pop.energies.gt(plain.energies).all()  # the term is there (every unit below 3 counts)
    for _ in range(5):
        pop.run(20)
        pop.exchange(0, 2)
    _assert_caches_fresh(pop)
    saved = pop.state_dict()
    pop.keep(torch.tensor([2, 0]))
    pop.run(30)
    _assert_caches_fresh(pop)
    resumed = _population(synthetic, [8], k=3, margin_weight=0.5, margin=3, flip_ratio=0.1)
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.energies, saved["energies"])
    _assert_caches_fresh(resumed)
    # A state saved without the term (or before it existed): energies recomputed with it.
    plain.run(10)
    resumed.load_state_dict({k: v for k, v in plain.state_dict().items() if k != "margin"})
    assert resumed.energies.gt(plain.energies).all()
    _assert_caches_fresh(resumed)
    with pytest.raises(ValueError, match="margin_weight must be >= 0"):
        _population(synthetic, [8], margin_weight=-1.0)


def test_the_smooth_activation_follows_exchanges_keeps_and_a_state_dict(
        synthetic: DataSplits) -> None:
    pop = _population(synthetic, [8], k=3, smooth_hidden=3.0, flip_ratio=0.1)
    plain = _population(synthetic, [8], k=3, flip_ratio=0.1)
    assert not torch.equal(pop.energies, plain.energies)  # the same weights, another energy
    for _ in range(5):
        pop.run(20)
        pop.exchange(0, 2)
    _assert_caches_fresh(pop)
    saved = pop.state_dict()
    assert saved["smooth_hidden"] == 3.0
    pop.run(30)
    resumed = _population(synthetic, [8], k=3, smooth_hidden=3.0, flip_ratio=0.1)
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.energies, saved["energies"])
    resumed.run(30)
    assert all(torch.equal(a, b) for a, b in zip(resumed.net.weights, pop.net.weights))
    assert torch.equal(resumed.energies, pop.energies)
    # A state of the sign energy: its energies are recomputed with the smooth activation.
    resumed.load_state_dict(plain.state_dict())
    assert not torch.equal(resumed.energies, plain.energies)
    _assert_caches_fresh(resumed)
    with pytest.raises(ValueError, match="width must be >= 0"):
        _population(synthetic, [8], smooth_hidden=-1.0)


def test_a_vanishing_width_is_the_sign_energy() -> None:
    """``round(64 tanh(Z / tau))`` is ``64 sign(Z)`` for a tiny ``tau`` and ``Z != 0`` (an odd
    fan-in), and the logits' factor is ``scale / 64``: the binary net's energy, bit for bit."""
    data = load_dataset(DataConfig(name="synthetic", synthetic_shape=[1, 5, 5]))
    smooth = _population(data, [7], smooth_hidden=1e-9, label_smoothing=0.1)
    plain = _population(data, [7], label_smoothing=0.1)
    assert smooth.cache.activation.levels == 64 and plain.cache.activation.levels == 1
    assert torch.equal(smooth.energies, plain.energies)
    table = smooth.cache.activation.tables[0]
    assert table[25 + 1:].eq(64).all() and table[:25].eq(-64).all() and table[25] == 0
    # Without a hidden layer there is nothing to smooth: the same energy for every width.
    alone, plain = _population(data, [], smooth_hidden=3.0), _population(data, [])
    assert not alone.cache.activation.smooth and torch.equal(alone.energies, plain.energies)
    alone.run(50)
    plain.run(50)
    assert torch.equal(alone.energies, plain.energies)


def test_the_smooth_table_is_a_rounded_tanh() -> None:
    act = HiddenActivation(4.0, [9, 5, 3, 2])
    z0 = torch.arange(-9, 10, dtype=torch.float32)
    assert torch.equal(act(z0, 0), torch.round(64 * torch.tanh(z0.double() / 4)).float())
    z1 = torch.arange(-5 * 64, 5 * 64 + 1, dtype=torch.float32)  # in units of 64
    assert torch.equal(act(z1, 1), torch.round(64 * torch.tanh(z1.double() / 256)).float())
    assert torch.equal(HiddenActivation(0.0, [9, 5, 2])(z0, 0), torch.where(z0 >= 0, 1.0, -1.0))


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_label_smoothing_is_torchs_and_follows_a_state_dict(synthetic: DataSplits,
                                                            eps: float) -> None:
    pop = _population(synthetic, [8], k=3, label_smoothing=eps, flip_ratio=0.1)
    pop.run(200)
    _assert_caches_fresh(pop)
    full = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    for k in range(len(pop)):  # the energy is torch's smoothed cross-entropy
        logits = pop.export(k)(full.inputs)
        loss = float(nn.CrossEntropyLoss(label_smoothing=eps)(logits, full.targets))
        assert math.isclose(loss, float(pop.energies[k]), rel_tol=1e-5, abs_tol=1e-6)
        plain_loss = float(nn.CrossEntropyLoss()(logits, full.targets))
        assert not math.isclose(loss, plain_loss, rel_tol=1e-3)  # not the plain one
    saved = pop.state_dict()
    resumed = _population(synthetic, [8], k=3, label_smoothing=eps, flip_ratio=0.1)
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.energies, saved["energies"])
    resumed.run(50)
    pop.run(50)
    assert all(torch.equal(a, b) for a, b in zip(pop.net.weights, resumed.net.weights))
    # Loaded into a population without smoothing: energies recomputed, not taken.
    plain = _population(synthetic, [8], k=3, flip_ratio=0.1)
    plain.load_state_dict(saved)
    assert torch.equal(plain.energies, plain.full_energies())
    assert not torch.equal(plain.energies, saved["energies"])
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), but got 1.0"):
        _population(synthetic, [8], label_smoothing=1.0)
