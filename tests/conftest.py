"""Fixtures shared by the test folders: an IDX writer independent of the reader under test."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D,
          "float64": 0x0E}

IdxWriter = Callable[..., Path]


def _write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``gz``) and return its path."""
    header = struct.pack(">BBBB", 0, 0, _CODES[array.dtype.name], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.fixture
def write_idx() -> IdxWriter:
    """``write_idx(path, array, gz=False) -> path``."""
    return _write_idx


@pytest.fixture
def write_mnist_like(write_idx: IdxWriter) -> Callable[..., tuple[np.ndarray, ...]]:
    """Write random uint8 images and labels as ``<prefix>-images-idx3-ubyte`` pairs.

    ``write_mnist_like(folder, {"train": 40, "t10k": 12}, gz=False, shape=(7, 7), classes=10)``
    returns the arrays written, in the order ``images, labels`` per prefix.
    """

    def write(folder: Path, sizes: dict[str, int], *, gz: bool = False,
              shape: tuple[int, int] = (7, 7), classes: int = 10, seed: int = 0
              ) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(seed)
        suffix = ".gz" if gz else ""
        arrays: list[np.ndarray] = []
        for prefix, n in sizes.items():
            images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
            labels = (np.arange(n) % classes).astype(np.uint8)
            write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz=gz)
            write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz=gz)
            arrays += [images, labels]
        return tuple(arrays)

    return write
