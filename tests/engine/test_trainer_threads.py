"""``trainer.threads``: how many CPU threads torch uses while a trainer trains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from mcmc_core import Callback, TrainerMCMC, binary_parameters
from mcmc_core.data import DataSplits
from mcmc_core.optim import SamplerConfig
from mcmc_core.trainers import TrainerConfig


class Threads(Callback):
    """torch's thread count at each epoch end."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.seen.append(torch.get_num_threads())


def _train(model: nn.Module, data: DataSplits, threads: int | None,
           **sampler: Any) -> tuple[list[int], list[torch.Tensor]]:
    seen = Threads()
    trainer = TrainerMCMC(model, data=data, device="cpu", callbacks=[seen],
                          sampler=SamplerConfig(temperature=1e-3, flip_ratio=0.05, **sampler),
                          trainer=TrainerConfig(epochs=2, steps_per_epoch=30, verbose=False,
                                                threads=threads))
    trainer.train()
    return seen.seen, [p.detach().clone() for p in binary_parameters(trainer.model)]


@pytest.fixture
def two_threads() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_one_chain_of_the_incremental_kernel_trains_on_one_thread_by_default(
        make_model: Callable[..., nn.Module], synthetic: DataSplits, two_threads: Any) -> None:
    auto, weights = _train(make_model(hidden=[8]), synthetic, None)
    assert auto == [1, 1] and torch.get_num_threads() == 2  # restored after training
    two, weights_two = _train(make_model(hidden=[8]), synthetic, 2)
    assert two == [2, 2]
    assert all(torch.equal(a, b) for a, b in zip(weights, weights_two))  # the same result


def test_the_forward_kernel_keeps_torchs_threads(make_model: Callable[..., nn.Module],
                                                 synthetic: DataSplits, two_threads: Any) -> None:
    seen, _ = _train(make_model(hidden=[8]), synthetic, None, incremental=False)
    assert seen == [2, 2]


def test_threads_below_one_are_refused() -> None:
    assert TrainerConfig(threads=0).errors() == [
        "trainer.threads=0 is not allowed: expected null (auto) or >= 1"]
