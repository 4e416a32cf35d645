"""Fixtures of the engine tests: tiny binary models on the seeded ``synthetic`` dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from mcmc_core.data import DataConfig, DataSplits, load_dataset
from mcmc_core.models import ModelConfig, build_model


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Run on one intra-op thread: the tensors here are tiny, and on a busy 2-core machine
    OpenMP's thread hand-off costs ~100x the work itself (e.g. 10 ms per 432x3 cross-entropy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def synthetic() -> DataSplits:
    """The default ``synthetic`` set: 600 teacher-labelled 1x4x4 bit images, 3 classes
    (432 train / 48 val / 120 test), learnable exactly by a binary 16 -> 3 linear layer."""
    return load_dataset(DataConfig(name="synthetic"))


ModelFactory = Callable[..., nn.Module]


@pytest.fixture
def make_model(synthetic: DataSplits) -> ModelFactory:
    """``make_model(hidden=(), seed=0)``: a binary MLP for :func:`synthetic`, with logit scale 1
    (``output_scale``: the scale these tests' temperatures and thresholds were tuned for)."""

    def make(hidden: tuple[int, ...] | list[int] = (), seed: int = 0) -> nn.Module:
        cfg = ModelConfig(name="mlp", hidden=list(hidden), output_scale=1.0)
        return build_model(cfg, synthetic.input_shape, synthetic.n_classes, seed=seed)

    return make
