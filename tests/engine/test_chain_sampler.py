"""ChainSampler: K chains as param groups, stepped by the forward or the incremental kernel."""

from __future__ import annotations

import copy
import doctest
from collections.abc import Callable

import pytest
import torch
from torch import nn

from mcmc_core import SignFlipSampler, binarize_model, binary_parameters
from mcmc_core.data import DataSplits
from mcmc_core.energy import Energy, FullEnergy, MinibatchEnergy
from mcmc_core.functional import flip_count
from mcmc_core.optim import ChainSampler
from mcmc_core.optim import _chain_sampler
from mcmc_core.population import EnergySet, Population, StackedMLP
from mcmc_core.schedules import ChainSchedules, FlipRatioScheduleConfig, TemperatureScheduleConfig

SEEDS = [11, 12, 13]


def _models(make_model: Callable[..., nn.Module], k: int = 3) -> list[nn.Module]:
    return [make_model(hidden=[8], seed=s) for s in range(k)]


def _sampler(models: list[nn.Module], energy: Energy, **kwargs: object) -> ChainSampler:
    groups = [{"params": binary_parameters(m), "seed": s, "temperature": 1e-3 * (k + 1)}
              for k, (m, s) in enumerate(zip(models, SEEDS))]
    return ChainSampler(groups, flip_ratio=0.05, models=models, energy=energy, **kwargs)


def _weights(models: list[nn.Module]) -> list[torch.Tensor]:
    return [p.detach().clone() for m in models for p in binary_parameters(m)]


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_auto_picks_the_incremental_kernel_where_it_applies_else_says_why(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    full = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    sampler = _sampler(_models(make_model), full)
    # A binary MLP on the plain cross-entropy full energy: one population of every chain.
    assert (sampler.kernel, sampler.kernel_reason) == ("incremental", None)
    assert len(sampler.population) == 3 and isinstance(sampler.energy, EnergySet)
    minibatch = _sampler(_models(make_model), MinibatchEnergy(nn.CrossEntropyLoss(),
                                                                synthetic.train))
    assert (minibatch.kernel, minibatch.kernel_reason) == ("forward", "sampler.energy=minibatch")
    assert len(minibatch.samplers) == 3
    coupled = _sampler(_models(make_model), full, coupled=True)
    assert (coupled.kernel, coupled.kernel_reason) == ("forward", "sampler.coupled=true")
    forced = _sampler(_models(make_model), full, kernel="forward")
    assert (forced.kernel, forced.kernel_reason) == ("forward", "kernel='forward'")


def test_a_kernel_that_cannot_run_or_does_not_exist_is_refused(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    full = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    cnn = binarize_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)))
    with pytest.raises(ValueError, match="kernel='incremental' does not apply: .*binary MLP"):
        ChainSampler([{"params": binary_parameters(cnn)}], 1e-3, models=[cnn], energy=full,
                     kernel="incremental")
    with pytest.raises(ValueError, match="kernel must be one of .* but got kernel='fused'"):
        _sampler(_models(make_model), full, kernel="fused")
    models = _models(make_model, 2)
    groups = [{"params": binary_parameters(models[0])},
              {"params": binary_parameters(models[1]), "flip_ratio": 1.5}]
    # The bad group is named by its index, with its value.
    with pytest.raises(ValueError, match=r"param_groups\[1\].*flip_ratio'\]=1.5"):
        ChainSampler(groups, 1e-3, models=models, energy=full)


def test_the_forward_kernel_steps_each_group_as_a_sign_flip_sampler_of_its_own(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    models = _models(make_model)
    alone = copy.deepcopy(models)
    energy = FullEnergy(nn.CrossEntropyLoss(), synthetic.train)
    sampler = _sampler(models, energy, kernel="forward")
    sampler.run(30)
    for k, (model, seed) in enumerate(zip(alone, SEEDS)):
        one = SignFlipSampler(binary_parameters(model), temperature=1e-3 * (k + 1),
                              flip_ratio=0.05, cache_energy=True, seed=seed)
        for _ in range(30):
            one.step(energy.closure(model))
        # Chain k's weights and counts are those of a SignFlipSampler of its seed alone.
        assert _equal(_weights([models[k]]), _weights([model]))
        assert sampler.counts(k) == one.counts()
    assert sampler.n_steps == 30


def test_the_incremental_kernel_is_a_population_of_the_groups(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    models = _models(make_model)
    pop = Population(StackedMLP.from_models(models, synthetic.input_shape),
                     EnergySet(synthetic.train), temperature=[1e-3, 2e-3, 3e-3],
                     flip_ratio=0.05, seeds=SEEDS)
    sampler = _sampler(models, FullEnergy(nn.CrossEntropyLoss(), synthetic.train))
    before = _weights(models)
    sampler.run(40)
    pop.run(40)
    # The params change only at sync(), then hold the population's weights.
    assert _equal(_weights(models), before)
    sampler.sync()
    assert _equal(_weights(models), [w[k].view_as(p) for k in range(3)
                                     for w, p in zip(pop.net.weights,
                                                     binary_parameters(models[k]))])
    assert [sampler.counts(k) for k in range(3)] == [(40, int(a)) for a in pop.n_accepted]
    assert sampler.current_energy(2) == float(pop.energies[2])


@pytest.mark.parametrize("kernel", ["forward", "incremental"])
def test_a_step_takes_the_groups_values_and_a_scheduled_run_leaves_the_next_steps(
        make_model: Callable[..., nn.Module], synthetic: DataSplits, kernel: str) -> None:
    models = _models(make_model)
    sampler = _sampler(models, FullEnergy(nn.CrossEntropyLoss(), synthetic.train),
                       kernel=kernel)
    sampler.param_groups[1]["flip_ratio"] = 0.5
    sampler.param_groups[2]["temperature"] = 0.0
    sampler.step()
    if kernel == "incremental":  # the group's flip ratio reached the batched kernel
        numels = [w[0].numel() for w in sampler.population.net.weights]
        assert sampler.population.flip_counts()[1] == [flip_count(0.5, n) for n in numels]
        assert sampler.population.temperature.tolist() == [1e-3, 2e-3, 0.0]
    schedules = ChainSchedules([0.1, 0.2, 0.3], [0.05] * 3,
                               TemperatureScheduleConfig(name="exponential", cooling_rate=0.9),
                               FlipRatioScheduleConfig(name="exponential", unit="epochs",
                                                       cooling_rate=0.5),
                               epochs=4, steps_per_epoch=5)
    sampler.run(11, schedules)
    assert sampler.n_steps == 12
    assert sampler.temperatures() == schedules.at(12)[0] == pytest.approx(
        [t * 0.9**12 for t in (0.1, 0.2, 0.3)])
    assert [g["flip_ratio"] for g in sampler.param_groups] == [0.05 * 0.5**2] * 3


@pytest.mark.parametrize("energy_name", ["full", "minibatch"])
@pytest.mark.parametrize("kernel", ["forward", "auto"])
def test_state_dict_continues_bit_identically(make_model: Callable[..., nn.Module],
                                              synthetic: DataSplits, kernel: str,
                                              energy_name: str) -> None:
    def build() -> tuple[ChainSampler, list[nn.Module]]:
        models = _models(make_model)
        energy = (FullEnergy(nn.CrossEntropyLoss(), synthetic.train) if energy_name == "full"
                  else MinibatchEnergy(nn.CrossEntropyLoss(), synthetic.train, batch_size=32))
        return _sampler(models, energy, kernel=kernel, proposal="all"), models

    straight, straight_models = build()
    straight.run(15)
    straight.sync()
    # As with torch.optim, the params are the model's to save (the forward kernel's state
    # holds the streams, counts and cached energies).
    weights = copy.deepcopy([m.state_dict() for m in straight_models])
    state = copy.deepcopy(straight.state_dict())
    straight.run(15)
    straight.sync()
    resumed, resumed_models = build()
    for model, w in zip(resumed_models, weights):
        model.load_state_dict(w)
    resumed.load_state_dict(state)
    resumed.run(15)
    resumed.sync()
    assert _equal(_weights(resumed_models), _weights(straight_models))
    assert [resumed.counts(k) for k in range(3)] == [straight.counts(k) for k in range(3)]
    # The groups are still the kernel's: a changed temperature reaches it.
    resumed.param_groups[0]["temperature"] = 0.5
    if resumed.kernel == "forward":
        assert resumed.samplers[0].param_groups[0]["temperature"] == 0.5


def test_doctest() -> None:
    assert doctest.testmod(_chain_sampler).failed == 0
