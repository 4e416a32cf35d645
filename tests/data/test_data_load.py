"""``load_dataset``'s config validation and the package's public names."""

from __future__ import annotations

from typing import Any

import pytest

import mcmc_core.data
from mcmc_core._validation import ConfigError
from mcmc_core.data import DataConfig
from mcmc_core.data import load_dataset


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("name", "imagenet", "dataset.name='imagenet'"),
        ("binarize", "sign", "dataset.binarize='sign'"),
        ("val_fraction", 1.0, "dataset.val_fraction=1.0"),
        ("test_fraction", 0.0, "dataset.test_fraction=0.0"),
        ("synthetic_samples", 5, "dataset.synthetic_samples=5"),
        ("synthetic_shape", [4, 4], "dataset.synthetic_shape=[4, 4]"),
        ("synthetic_classes", 1, "dataset.synthetic_classes=1"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_key(
    field: str, value: Any, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset(DataConfig(**{field: value}))
    # One line, naming the key and the bad value.
    assert len(info.value.errors) == 1 and info.value.errors[0].startswith(key)


def test_every_violation_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset(DataConfig(name="nope", val_fraction=2.0))
    assert len(info.value.errors) == 2


def test_public_names() -> None:
    assert sorted(mcmc_core.data.__all__) == [
        "DataConfig", "DataSplits", "DatasetNotFoundError", "Split", "load_dataset", "read_idx"]
    for name in mcmc_core.data.__all__:
        assert hasattr(mcmc_core.data, name)
