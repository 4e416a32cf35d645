"""``read_idx`` and the ``idx`` dataset, on small IDX files written into ``tmp_path``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mcmc_core.data import DataConfig
from mcmc_core.data import DatasetNotFoundError
from mcmc_core.data import load_dataset
from mcmc_core.data import read_idx
from mcmc_core.data._splits import split_indices


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_read_idx_round_trips_every_dtype(
    tmp_path: Path, write_idx: Callable[..., Path], dtype: str, gz: bool
) -> None:
    info = np.iinfo(dtype) if dtype.startswith(("u", "i")) else np.finfo(dtype)
    array = np.array([[info.min, -1 if info.min < 0 else 0, 1], [2, 3, info.max]], dtype=dtype)
    path = write_idx(tmp_path / "x-idx2.gz" if gz else tmp_path / "x-idx2", array, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, array)


def test_read_idx_agrees_with_torchvision(tmp_path: Path, write_idx: Callable[..., Path]) -> None:
    from torchvision.datasets.mnist import read_image_file

    images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    path = write_idx(tmp_path / "a-images-idx3-ubyte", images)
    np.testing.assert_array_equal(read_idx(path), read_image_file(str(path)).numpy())


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "first two bytes"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "type code 0x07"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x07", "has 2 bytes of data"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x07", "needs 1"),
        (b"", "not an IDX file"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path: Path, payload: bytes, match: str) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    # The message is one line naming the file.
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_idx_single_pair_is_split_with_test_fraction(
    tmp_path: Path, write_mnist_like: Callable[..., tuple[np.ndarray, ...]]
) -> None:
    images, labels = write_mnist_like(tmp_path, {"t10k": 100}, gz=True, shape=(5, 6), classes=4)
    cfg = DataConfig(name="idx", root=str(tmp_path), test_fraction=0.2, binarize="none")
    splits = load_dataset(cfg)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (72, 8, 20)
    assert splits.input_shape == (1, 5, 6)
    assert splits.n_classes == 4  # largest label + 1
    _, _, test_idx = split_indices(100, val_fraction=0.1, test_fraction=0.2, seed=0)
    expected = torch.from_numpy(images[test_idx.numpy()]).unsqueeze(1).float() / 255
    assert torch.allclose(splits.test.inputs, expected)
    assert torch.equal(splits.test.targets, torch.from_numpy(labels[test_idx.numpy()]).long())


def test_idx_train_and_t10k_pairs_are_the_official_splits(
    tmp_path: Path, write_mnist_like: Callable[..., tuple[np.ndarray, ...]]
) -> None:
    _, train_y, test_x, test_y = write_mnist_like(
        tmp_path, {"train": 50, "t10k": 20}, shape=(4, 4), classes=3)
    splits = load_dataset(DataConfig(name="idx", root=str(tmp_path), binarize="half"))
    # The test split is the t10k pair as is; validation is carved from the train pair.
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45, 5, 20)
    assert torch.equal(splits.test.targets, torch.from_numpy(test_y).long())
    expected = torch.where(torch.from_numpy(test_x).unsqueeze(1) > 127.5, 1.0, -1.0)
    assert torch.equal(splits.test.inputs, expected)
    assert sorted(torch.cat([splits.train.targets, splits.val.targets]).tolist()) == sorted(
        train_y.tolist())
    assert splits.n_classes == 3


def test_idx_on_the_real_file_names_ignores_other_files(
    tmp_path: Path, write_mnist_like: Callable[..., tuple[np.ndarray, ...]]
) -> None:
    write_mnist_like(tmp_path, {"t10k": 30}, gz=True)
    (tmp_path / "README.md").write_text("not data")
    splits = load_dataset(DataConfig(name="idx", root=str(tmp_path)))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 30


def test_idx_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(DataConfig(name="idx", root=str(folder)))
    message = str(info.value)
    assert "\n" not in message
    assert str(folder) in message and "images-idx3" in message and "dataset=digits" in message


def test_idx_folder_without_a_pair_is_a_one_line_error(
    tmp_path: Path, write_idx: Callable[..., Path]
) -> None:
    # Images without their labels are not a pair.
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 2, 2), dtype=np.uint8))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(DataConfig(name="idx", root=str(tmp_path)))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "labels-idx1" in message


def test_idx_label_count_mismatch_is_an_error(
    tmp_path: Path, write_idx: Callable[..., Path]
) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"4 labels but .* has 3 images"):
        load_dataset(DataConfig(name="idx", root=str(tmp_path)))
