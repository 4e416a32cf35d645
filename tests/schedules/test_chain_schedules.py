"""Every chain's schedules read a block ahead (ChainSchedules): the same bits as each schedule
object's own value, whatever the batch, the block's start or the kind of schedule."""

from __future__ import annotations

import random

import pytest
import torch

from mcmc_core.schedules import ChainSchedules, FlipRatioScheduleConfig, TemperatureScheduleConfig
from mcmc_core.schedules._power import power, power_t

KINDS = [
    TemperatureScheduleConfig(name="exponential", cooling_rate=0.999, min_temperature=1e-5),
    TemperatureScheduleConfig(name="exponential", cooling_rate=0.9, unit="epochs"),
    TemperatureScheduleConfig(name="step", step_size=3, gamma=0.5, unit="epochs"),
    TemperatureScheduleConfig(name="step", step_size=40, gamma=0.7),
    TemperatureScheduleConfig(name="linear", total=70, min_temperature=1e-4),
    TemperatureScheduleConfig(name="cosine", total=900),
    TemperatureScheduleConfig(name="constant"),
]


def _schedules(configs: list[TemperatureScheduleConfig], seed: int = 0) -> ChainSchedules:
    rng = random.Random(seed)
    temperatures = [10 ** rng.uniform(-4, -1) for _ in configs]
    return ChainSchedules(temperatures, [0.01] * len(configs), configs,
                          FlipRatioScheduleConfig(), epochs=20, steps_per_epoch=50)


def _one_by_one(chains: ChainSchedules, start: int, length: int) -> torch.Tensor:
    return torch.tensor([[chains._at(s, t) for t in range(start, start + length)]
                         for s in chains.temperature], dtype=torch.float64)


@pytest.mark.parametrize("start", [0, 37, 990, 123_456])
def test_block_of_temperatures_equals_each_schedules_value_bitwise(start: int) -> None:
    chains = _schedules(KINDS * 3)
    block = chains.temperatures(start, 64)
    # Exactly the values each chain's own schedule object gives, step by step.
    assert torch.equal(block, _one_by_one(chains, start, 64))


def test_a_chains_temperatures_do_not_depend_on_the_batch() -> None:
    together = _schedules(KINDS)
    for i, config in enumerate(KINDS):
        alone = ChainSchedules([together.temperature[i].base_values[0]], [0.01], [config],
                               FlipRatioScheduleConfig(), epochs=20, steps_per_epoch=50)
        # Row i of the batch is the chain's block alone, for any block start.
        for start in (0, 11, 500):
            assert torch.equal(together.temperatures(start, 32)[i], alone.temperatures(start, 32)[0])


def test_power_by_squaring_is_the_same_on_floats_and_tensors_and_close_to_pow() -> None:
    xs = [0.999, 0.5, 0.99995, 0.9, 1.0]
    ns = list(range(130)) + [random.Random(1).randrange(10**7) for _ in range(100)]
    table = power_t(torch.tensor(xs, dtype=torch.float64).unsqueeze(1), torch.tensor(ns))
    for i, x in enumerate(xs):
        for j, n in enumerate(ns):
            # Bit for bit the scalar form; within rounding of x ** n.
            assert table[i, j].item() == power(x, n)
            assert power(x, n) == pytest.approx(x**n, rel=1e-9, abs=1e-300)


def test_exponential_cools_every_chain_with_its_own_rate_and_floor() -> None:
    chains = ChainSchedules.exponential([1.0, 0.5, 2.0], [0.5, 1.0, 0.9], [0.1, 0.0, 0.0])
    expected = torch.tensor([[max(0.1, 0.5**t), 0.5, 2.0 * 0.9**t] for t in range(6)],
                            dtype=torch.float64).t()
    torch.testing.assert_close(chains.temperatures(0, 6), expected, rtol=1e-12, atol=0)
