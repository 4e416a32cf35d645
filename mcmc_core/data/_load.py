"""``load_dataset``: validate the config, load the named dataset, split and binarize it."""

from __future__ import annotations

from mcmc_core._validation import raise_if_any
from mcmc_core.data._config import DataConfig
from mcmc_core.data._digits import load_digits
from mcmc_core.data._idx import load_idx
from mcmc_core.data._splits import DataSplits
from mcmc_core.data._splits import RawData
from mcmc_core.data._splits import make_splits
from mcmc_core.data._synthetic import load_synthetic
from mcmc_core.data._torchvision import load_torchvision


def _load_raw(cfg: DataConfig) -> RawData:
    """Dispatch on ``cfg.name`` (already validated)."""
    if cfg.name == "digits":
        return load_digits()
    if cfg.name == "idx":
        return load_idx(cfg.root)
    if cfg.name == "synthetic":
        return load_synthetic(cfg.synthetic_samples, list(cfg.synthetic_shape),
                              cfg.synthetic_classes, cfg.split_seed)
    return load_torchvision(cfg.name, cfg.root, download=cfg.download)


def load_dataset(cfg: DataConfig) -> DataSplits:
    """Load a dataset as binarized train / val / test splits.

    Validation is carved from the training data by a permutation seeded with
    ``cfg.split_seed``; datasets without an official test split (``digits``, ``idx`` with one
    file pair, ``synthetic``) first lose ``cfg.test_fraction`` of the samples to test, from
    the same permutation. The ``mean`` threshold is computed on the training split only.

    Example:
        >>> splits = load_dataset(DataConfig(name="digits"))
        >>> len(splits.train), len(splits.val), len(splits.test), splits.input_shape
        (1294, 144, 359, (1, 8, 8))
        >>> sorted(splits.train.inputs.unique().tolist())
        [-1.0, 1.0]

    Args:
        cfg: Which dataset, where its files are, how to split and binarize it.

    Returns:
        The splits, with float32 inputs ``(N, C, H, W)`` and int64 targets ``(N,)``.

    Raises:
        ConfigError: If ``cfg`` has invalid values, one line per violation.
        DatasetNotFoundError: If the dataset's files are missing and cannot be downloaded.
    """
    raise_if_any(cfg.errors())
    return make_splits(_load_raw(cfg), cfg)
