"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision, offline, on tiny files in tmp_path."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mcmc_core.data import DataConfig
from mcmc_core.data import DatasetNotFoundError
from mcmc_core.data import load_dataset


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"),
                                              ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_loads_offline_from_raw_idx_files(
    tmp_path: Path, write_mnist_like: Callable[..., tuple[np.ndarray, ...]], name: str,
    folder: str,
) -> None:
    # torchvision wants the four uncompressed files in <root>/<Class>/raw.
    train_x, _, test_x, test_y = write_mnist_like(
        tmp_path / folder / "raw", {"train": 40, "t10k": 12})
    splits = load_dataset(DataConfig(name=name, root=str(tmp_path), download=False,
                                     binarize="none"))
    assert splits.input_shape == (1, 7, 7)
    assert splits.n_classes == 10
    # Official test split; validation carved from the 40 training images.
    assert (len(splits.train), len(splits.val), len(splits.test)) == (36, 4, 12)
    assert torch.allclose(splits.test.inputs, torch.from_numpy(test_x).unsqueeze(1) / 255)
    assert torch.equal(splits.test.targets, torch.from_numpy(test_y).long())
    train_rows = torch.cat([splits.train.inputs, splits.val.inputs]) * 255
    train_rows = train_rows.round().to(torch.uint8)
    assert sorted(r.numpy().tobytes() for r in train_rows) == sorted(
        x.tobytes() for x in train_x[:, None])


def test_cifar10_is_converted_to_channels_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets import cifar

    # Real CIFAR files are checked by md5: accept the tiny fakes written below.
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
        entry = {"data": batches[name].reshape(2, -1), "labels": [1, 9]}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [str(i) for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))

    splits = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False,
                                     binarize="none", val_fraction=0.2))
    assert splits.input_shape == (3, 32, 32)
    assert splits.n_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 2)
    # (N, H, W, C) numpy -> (N, C, H, W), pixel for pixel.
    assert torch.allclose(splits.test.inputs, torch.from_numpy(batches["test_batch"]) / 255)
    assert splits.test.targets.tolist() == [1, 9]


@pytest.mark.parametrize(("name", "folder"), [
    ("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw"),
    ("cifar10", "cifar-10-batches-py")])
def test_missing_files_without_download_is_a_one_line_error(
    tmp_path: Path, name: str, folder: str
) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(DataConfig(name=name, root=str(tmp_path), download=False))
    message = str(info.value)
    assert "\n" not in message
    assert f"dataset={name}" in message
    assert str(tmp_path / folder) in message
    assert "could not be downloaded" in message and "dataset=digits" in message
    if name != "cifar10":
        assert "dataset=idx dataset.root=" in message


def test_failed_download_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    def offline(self: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x, got:\n"
                           "<urlopen error [Errno -2] Name or service not known>\n")

    # Stands in for the network being unreachable (and keeps the test offline).
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path), download=True))
    message = str(info.value)
    assert "\n" not in message
    assert ("download failed (Error downloading train-images-idx3-ubyte.gz: "
            "<urlopen error [Errno -2] Name or service not known>)") in message
    assert str(tmp_path / "MNIST" / "raw") in message and "dataset=digits" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_dataset_not_found_is_a_file_not_found_error() -> None:
    assert issubclass(DatasetNotFoundError, FileNotFoundError)
