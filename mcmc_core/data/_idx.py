"""IDX files (the format of the original MNIST files): a reader and the ``idx`` dataset."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcmc_core.data._errors import DatasetNotFoundError
from mcmc_core.data._splits import RawData

# IDX type code -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_EXPECTED = (
    "expected an '*images*idx3*' file with its '*labels*idx1*' partner (plain or .gz), "
    "e.g. t10k-images-idx3-ubyte.gz + t10k-labels-idx1-ubyte.gz, optionally with a train-* pair"
)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, plain or gzipped (detected from its first bytes).

    The header is two zero bytes, a type code (``0x08`` ubyte, ``0x09`` sbyte, ``0x0B`` short,
    ``0x0C`` int, ``0x0D`` float, ``0x0E`` double), the number of dimensions, then one
    big-endian uint32 per dimension; the big-endian data follow.

    Example:
        >>> import gzip, struct, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x-labels-idx1-ubyte.gz")
        >>> with gzip.open(path, "wb") as f:
        ...     _ = f.write(struct.pack(">BBBBI", 0, 0, 0x08, 1, 3) + bytes([7, 2, 1]))
        >>> read_idx(path).tolist()
        [7, 2, 1]

    Args:
        path: The file.

    Returns:
        An array of the file's shape in native byte order (uint8, int8, int16, int32,
        float32 or float64).

    Raises:
        ValueError: If the header is malformed or the data size does not match it.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: its first two bytes are {raw[:2]!r}, "
                         f"expected b'\\x00\\x00'.")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise ValueError(f"{path} has IDX type code 0x{code:02X}, expected one of "
                         + ", ".join(f"0x{c:02X}" for c in _DTYPES) + ".")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header needs {header} bytes for {ndim} "
                         f"dimensions, but the file has {len(raw)}.")
    dims = [int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)]
    dtype = _DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path} has {len(raw) - header} bytes of data, but its header "
                         f"(shape {tuple(dims)}, {dtype.name}) needs {expected}.")
    data = np.frombuffer(raw, dtype=dtype, offset=header)
    out: np.ndarray = data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)
    return out


def find_idx_pairs(folder: str | os.PathLike[str]) -> dict[str, tuple[Path, Path]]:
    """Pair each ``*images*idx3*`` file in ``folder`` with its ``*labels*idx1*`` partner.

    Args:
        folder: The folder to look in (not recursive).

    Returns:
        ``{image file name without .gz: (images path, labels path)}``; a plain file is
        preferred over a gzipped one of the same name.
    """
    files = {p.name: p for p in sorted(Path(folder).iterdir()) if p.is_file()}
    pairs: dict[str, tuple[Path, Path]] = {}
    for name in sorted(files, key=lambda n: (n.removesuffix(".gz"), n.endswith(".gz"))):
        if "images" not in name or "idx3" not in name:
            continue
        stem = name.removesuffix(".gz")
        label_stem = stem.replace("images", "labels").replace("idx3", "idx1")
        labels = files.get(label_stem) or files.get(label_stem + ".gz")
        if labels is not None and stem not in pairs:
            pairs[stem] = (files[name], labels)
    return pairs


def _role(stem: str) -> str | None:
    """``train``, ``test`` or ``None`` from an image file's name."""
    lower = stem.lower()
    if "train" in lower:
        return "train"
    if "t10k" in lower or "test" in lower:
        return "test"
    return None


def _read_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as ``(N, 1, H, W)`` and labels as int64, checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path} has shape {images.shape}, expected (N, H, W).")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{labels_path} has shape {labels.shape} and dtype {labels.dtype}, "
                         f"expected integer labels of shape (N,).")
    if len(labels) != len(images):
        raise ValueError(f"{labels_path} has {len(labels)} labels but {images_path} has "
                         f"{len(images)} images.")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{labels_path} has a negative label {labels.min()}, expected >= 0.")
    inputs = torch.from_numpy(images).unsqueeze(1)
    return inputs, torch.from_numpy(labels.astype(np.int64))


def load_idx(root: str) -> RawData:
    """Load the ``idx`` dataset from the folder ``root``.

    A ``train*`` pair and a ``t10k*``/``test*`` pair are the official train and test splits;
    a single pair is split later with ``test_fraction``.

    Args:
        root: Folder of IDX files.

    Returns:
        Raw uint8 (or other IDX dtype) images, int64 labels; ``n_classes`` is the largest
        label + 1.

    Raises:
        DatasetNotFoundError: If the folder is missing or holds no usable pair.
    """
    folder = os.path.abspath(root)
    if not os.path.isdir(folder):
        raise DatasetNotFoundError(f"dataset=idx: folder {folder} does not exist; {_EXPECTED} "
                                   f"(set dataset.root=<folder>, or use dataset=digits).")
    pairs = find_idx_pairs(folder)
    if not pairs:
        raise DatasetNotFoundError(f"dataset=idx: no IDX file pair in {folder}; {_EXPECTED}.")
    by_role: dict[str | None, list[str]] = {}
    for stem in pairs:
        by_role.setdefault(_role(stem), []).append(stem)
    if len(pairs) == 1:
        inputs, targets = _read_pair(*next(iter(pairs.values())))
        test_inputs = test_targets = None
    elif len(pairs) == 2 and len(by_role.get("train", [])) == 1 and len(
        by_role.get("test", [])
    ) == 1:
        inputs, targets = _read_pair(*pairs[by_role["train"][0]])
        test_inputs, test_targets = _read_pair(*pairs[by_role["test"][0]])
        if test_inputs.shape[1:] != inputs.shape[1:]:
            raise ValueError(f"dataset=idx: train images are {tuple(inputs.shape[1:])} but "
                             f"test images are {tuple(test_inputs.shape[1:])} in {folder}.")
    else:
        raise ValueError(f"dataset=idx: ambiguous IDX pairs in {folder} ({', '.join(pairs)}); "
                         f"expected one pair, or one train* pair and one t10k*/test* pair.")
    all_targets = targets if test_targets is None else torch.cat([targets, test_targets])
    value_range = (0.0, 255.0) if inputs.dtype == torch.uint8 else None
    return RawData(
        inputs=inputs,
        targets=targets,
        n_classes=int(all_targets.max()) + 1 if len(all_targets) else 0,
        value_range=value_range,
        test_inputs=test_inputs,
        test_targets=test_targets,
    )
