"""Datasets as binarized train, val and test tensors: digits, MNIST, CIFAR-10, IDX, synthetic."""

from __future__ import annotations

from mcmc_core.data._config import DataConfig
from mcmc_core.data._errors import DatasetNotFoundError
from mcmc_core.data._idx import read_idx
from mcmc_core.data._load import load_dataset
from mcmc_core.data._splits import DataSplits
from mcmc_core.data._splits import Split

__all__ = [
    "DataConfig",
    "DataSplits",
    "DatasetNotFoundError",
    "Split",
    "load_dataset",
    "read_idx",
]
