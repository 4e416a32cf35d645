"""Incremental energies: exact agreement with full forward passes, fallback, identical chains."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from mcmc_core import SignFlipSampler, TrainerMCMC, binarize_model, binary_parameters
from mcmc_core import functional as F
from mcmc_core.data import DataSplits
from mcmc_core.energy import FullEnergy
from mcmc_core.energy_incremental import IncrementalEnergy, LinearChainEnergy, linear_chain
from mcmc_core.layers import BinaryLinear, sign
from mcmc_core.models import ModelConfig, build_model
from mcmc_core.optim import SamplerConfig
from mcmc_core.trainers import TrainerConfig

HIDDEN = [(), (8,), (8, 6)]


def _energy(data: DataSplits, **kwargs: object) -> FullEnergy:
    kwargs.setdefault("samples", 300)  # a fixed subset of the 432 training points
    return FullEnergy(nn.CrossEntropyLoss(), data.train, seed=2,
                      **kwargs)  # type: ignore[arg-type]


def _assert_caches_match_a_fresh_forward(model: nn.Module, closure: LinearChainEnergy,
                                         inputs: torch.Tensor) -> None:
    """Every cached ``A_l``, ``Z_l`` equals what the model's own layers compute, bit for bit."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [layer.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
             for layer in closure.layers]
    with torch.no_grad():
        model.eval()(inputs)
    for h in hooks:
        h.remove()
    acts, pres = closure.state_tensors()
    assert len(seen) == len(acts) == len(pres)
    for layer, (x, out), a, z in zip(closure.layers, seen, acts, pres):
        assert torch.equal(a.t(), sign(x.flatten(1)))
        assert torch.equal(z.t() * layer.scale, out)
        assert torch.equal(z, z.round())  # integers


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("proposal", ["layer", "all"])
def test_every_candidate_energy_equals_a_full_forward(make_model: Callable[..., nn.Module],
                                                      synthetic: DataSplits, hidden: tuple[int],
                                                      proposal: str) -> None:
    model = make_model(hidden=hidden, seed=1)
    energy = _energy(synthetic)
    closure = energy.closure(model)
    assert isinstance(closure, LinearChainEnergy)
    weights = binary_parameters(model)
    g = torch.Generator().manual_seed(0)
    outcomes = set()
    for step in range(120):
        assert closure.prepare()
        chosen = weights if proposal == "all" else [weights[step % len(weights)]]
        ratio = (0.002, 0.05, 0.3)[step % 3]  # one flip, a few, many (shared rows)
        flips = [(w, F.propose_flips(w.numel(), ratio, g)) for w in chosen]
        for w, idx in flips:
            F.apply_flips(w, idx)
        candidate = closure.propose(flips)
        assert candidate == closure()  # bit-identical to a full forward of the candidate
        accept = bool(torch.rand((), generator=g) < 0.5)
        outcomes.add(accept)
        if accept:
            closure.accept()
        else:
            for w, idx in flips:
                F.apply_flips(w, idx)
            closure.reject()
        assert closure.is_current() and closure.energy == closure()
        if step % 8 == 0:
            _assert_caches_match_a_fresh_forward(model, closure, energy.inputs)
    assert outcomes == {True, False}


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("proposal", ["layer", "all"])
@pytest.mark.parametrize("acceptance", ["metropolis", "barker"])
def test_incremental_and_full_chains_are_bit_identical(make_model: Callable[..., nn.Module],
                                                       synthetic: DataSplits, hidden: tuple[int],
                                                       proposal: str, acceptance: str) -> None:
    models = [make_model(hidden=hidden, seed=1) for _ in range(2)]
    energies = [_energy(synthetic, batch_size=128) for _ in range(2)]  # chunked forwards too
    samplers = [SignFlipSampler(binary_parameters(m), temperature=0.02, flip_ratio=0.05,
                                proposal=proposal, acceptance=acceptance, cache_energy=True,
                                seed=3, incremental=inc) for m, inc in zip(models, (True, False))]
    closures = [e.closure(m) for e, m in zip(energies, models)]
    for _ in range(150):
        assert samplers[0].step(closures[0]) == samplers[1].step(closures[1])
    assert samplers[0]._incremental is closures[0] and samplers[1]._incremental is None
    proposed, accepted = samplers[0].counts()
    assert 0 < accepted < proposed
    for p, q in zip(binary_parameters(models[0]), binary_parameters(models[1])):
        assert torch.equal(p, q)
    _assert_caches_match_a_fresh_forward(models[0], closures[0], energies[0].inputs)


def test_incremental_steps_run_no_forward_pass(make_model: Callable[..., nn.Module],
                                               synthetic: DataSplits) -> None:
    model = make_model(hidden=[8], seed=1)
    closure = _energy(synthetic).closure(model)
    sampler = SignFlipSampler(binary_parameters(model), temperature=0.02, flip_ratio=0.05,
                              cache_energy=True, seed=0)
    sampler.step(closure)  # the first step measures the energy and builds the caches
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    for _ in range(50):
        sampler.step(closure)
    assert calls == []


@pytest.mark.parametrize("criterion", [nn.CrossEntropyLoss(label_smoothing=0.1),
                                       lambda out, y: nn.functional.cross_entropy(out, y) ** 2])
def test_any_criterion_gives_identical_chains(make_model: Callable[..., nn.Module],
                                              synthetic: DataSplits,
                                              criterion: Callable[..., torch.Tensor]) -> None:
    weights = []
    for incremental in (True, False):
        model = make_model(hidden=[8], seed=1)
        closure = FullEnergy(criterion, synthetic.train).closure(model)
        sampler = SignFlipSampler(binary_parameters(model), temperature=0.02, flip_ratio=0.05,
                                  cache_energy=True, seed=3, incremental=incremental)
        for _ in range(60):
            sampler.step(closure)
        weights.append(binary_parameters(model))
    assert all(torch.equal(p, q) for p, q in zip(*weights))


# -- structure detection and fallback -----------------------------------------------------------
class _Doubled(nn.Module):
    """Looks like a chain, but its forward doubles the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.layers(x)


def _cnn(data: DataSplits) -> nn.Module:
    return build_model(ModelConfig(name="cnn", channels=[4]), data.input_shape, data.n_classes)


def _relu_mlp(data: DataSplits) -> nn.Module:
    cfg = ModelConfig(name="mlp", hidden=[8], keep_activations=True)
    return build_model(cfg, data.input_shape, data.n_classes)


def _doubled(data: DataSplits) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return binarize_model(_Doubled())


@pytest.mark.parametrize("build", [_cnn, _relu_mlp, _doubled])
def test_other_models_fall_back_to_full_forwards(synthetic: DataSplits,
                                                 build: Callable[[DataSplits], nn.Module]) -> None:
    models = [build(synthetic) for _ in range(2)]
    energy = _energy(synthetic)
    closure = energy.closure(models[0])
    if build is _doubled:  # passes the structural check, fails the check against a forward
        assert isinstance(closure, LinearChainEnergy) and not closure.prepare()
    else:
        assert linear_chain(models[0]) is None and not isinstance(closure, IncrementalEnergy)
    samplers = [SignFlipSampler(binary_parameters(m), temperature=0.02, flip_ratio=0.05,
                                cache_energy=True, seed=3, incremental=inc)
                for m, inc in zip(models, (True, False))]
    for _ in range(30):
        assert samplers[0].step(closure) == samplers[1].step(energy.closure(models[1]))
    assert all(torch.equal(p, q) for p, q in zip(*map(binary_parameters, models)))


def test_linear_chain_lists_the_layers_of_an_mlp(make_model: Callable[..., nn.Module]) -> None:
    model = make_model(hidden=[8, 6])
    layers = linear_chain(model)
    assert layers is not None and [type(m) for m in layers] == [BinaryLinear] * 3
    assert [m.weight for m in layers] == binary_parameters(model)
    assert linear_chain(nn.Sequential(nn.Flatten(), nn.ReLU())) is None  # no binary layer


# -- staleness: weights changed behind the caches' back -----------------------------------------
def test_caches_are_rebuilt_after_the_weights_change_outside(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    model, other = make_model(hidden=[8], seed=1), make_model(hidden=[8], seed=2)
    energy = _energy(synthetic)
    closure = energy.closure(model)
    sampler = SignFlipSampler(binary_parameters(model), temperature=0.02, flip_ratio=0.05,
                              cache_energy=True, seed=0)
    sampler.step(closure)
    model.load_state_dict(other.state_dict())  # in-place copy: the version counters move
    assert not closure.is_current()
    sampler.invalidate_energy()
    sampler.step(closure)
    assert closure.is_current() and closure.energy == closure() == sampler.energy
    _assert_caches_match_a_fresh_forward(model, closure, energy.inputs)
    with torch.no_grad():  # a write through .data escapes the version counter...
        binary_parameters(model)[0].data.neg_()
    sampler.invalidate_energy()  # ...so the documented contract is to invalidate
    assert not closure.is_current()
    sampler.step(closure)
    _assert_caches_match_a_fresh_forward(model, closure, energy.inputs)


def test_swap_weights_exchanges_the_caches(make_model: Callable[..., nn.Module],
                                           synthetic: DataSplits) -> None:
    models = [make_model(hidden=[8], seed=s) for s in (1, 2)]
    energy = _energy(synthetic)
    closures = energy.closures(models)
    samplers = [SignFlipSampler(binary_parameters(m), temperature=0.02, flip_ratio=0.05,
                                cache_energy=True, seed=s) for s, m in enumerate(models)]
    for s, c in zip(samplers, closures):
        s.step(c)
    energies = [c.energy for c in closures]
    samplers[0].swap_weights(samplers[1])
    assert all(c.is_current() for c in closures)  # no rebuild needed
    assert [c.energy for c in closures] == energies[::-1]
    for m, c in zip(models, closures):
        assert c.energy == c()
        _assert_caches_match_a_fresh_forward(m, c, energy.inputs)


# -- the trainer ---------------------------------------------------------------------------------
def _train(data: DataSplits, incremental: bool, tmp: Path | None = None, epochs: int = 2,
           **sampler: object) -> TrainerMCMC:
    model = build_model(ModelConfig(name="mlp", hidden=[8, 6]), data.input_shape,
                        data.n_classes, seed=1)
    cfg = SamplerConfig(temperature=1e-2, flip_ratio=0.05, energy_samples=300,
                        incremental=incremental, **sampler)  # type: ignore[arg-type]
    trainer = TrainerConfig(epochs=4, steps_per_epoch=50, verbose=False, resume=tmp is not None,
                            checkpoint_dir=str(tmp) if tmp else None)
    run = TrainerMCMC(model, data=data, sampler=cfg, trainer=trainer, device="cpu", seed=5)
    run.train(n_epoch=epochs)
    return run


@pytest.mark.parametrize("sampler", [{"proposal": "layer"},
                                     {"proposal": "all", "n_replicas": 3, "swap_interval": 5}])
def test_trainer_gives_the_same_weights_with_incremental_on_or_off_and_on_resume(
        synthetic: DataSplits, tmp_path: Path, sampler: dict[str, object],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rebuilds = []
    rebuild = LinearChainEnergy._rebuild
    monkeypatch.setattr(LinearChainEnergy, "_rebuild",
                        lambda self: (rebuilds.append(self), rebuild(self))[1])
    on = _train(synthetic, True, epochs=4, **sampler)
    assert len(rebuilds) == len(on.models)  # once per replica: tempering swaps the caches
    off = _train(synthetic, False, epochs=4, **sampler)
    assert on.samplers[0].incremental and not off.samplers[0].incremental
    assert isinstance(on.samplers[0]._incremental, LinearChainEnergy)
    _train(synthetic, True, tmp_path, epochs=2, **sampler)  # interrupted after 2 epochs...
    resumed = _train(synthetic, True, tmp_path, epochs=4, **sampler)  # ...and resumed
    for run in (off, resumed):
        for a, b in zip(on.models, run.models):
            assert all(torch.equal(p, q) for p, q in zip(binary_parameters(a),
                                                         binary_parameters(b)))
        assert [h["energy"] for h in run.history[-2:]] == [h["energy"] for h in on.history[-2:]]
    if on.tempering is not None:
        assert sum(on.tempering.accepts) > 0  # swaps (and cache swaps) did happen


def test_copied_models_get_their_own_caches(make_model: Callable[..., nn.Module],
                                            synthetic: DataSplits) -> None:
    model = make_model(hidden=[8])
    energy = _energy(synthetic)
    twin = copy.deepcopy(model)
    a, b = energy.closures([model, twin])
    assert a is not b and energy.closure(model) is a
