"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision, offline first."""

from __future__ import annotations

import os
from typing import Any

import torch

from mcmc_core.data._errors import DatasetNotFoundError
from mcmc_core.data._splits import RawData

# dataset name -> (torchvision class name, folder under root where its files live).
_SOURCES = {
    "mnist": ("MNIST", os.path.join("MNIST", "raw")),
    "fashion_mnist": ("FashionMNIST", os.path.join("FashionMNIST", "raw")),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}


def _one_line(err: BaseException) -> str:
    """First and last line of an error: torchvision's MNIST download errors span lines
    (``Error downloading <file>:``, ``Tried <mirror>, got:``, ``<urlopen error ...>``)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def _open(name: str, root: str, *, train: bool, download: bool) -> Any:
    """Open one torchvision split, trying files on disk before any download."""
    import torchvision.datasets

    cls_name, subfolder = _SOURCES[name]
    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(root, train=train, download=False)
    except RuntimeError as err:  # torchvision's "Dataset not found" (files missing or corrupt)
        missing: BaseException = err
    if download:
        try:
            return cls(root, train=train, download=True)
        except (OSError, RuntimeError) as err:  # offline: URLError, timeouts, bad checksums
            reason = f"the download failed ({_one_line(err)})"
            missing = err
    else:
        reason = "download is off (dataset.download=false)"
    folder = os.path.join(os.path.abspath(root), subfolder)
    idx_hint = "" if name == "cifar10" else ", or dataset=idx dataset.root=<folder> for IDX files"
    raise DatasetNotFoundError(
        f"dataset={name}: files not found in {folder} and could not be downloaded: {reason}; "
        f"put the files there, or use dataset=digits (works offline){idx_hint}."
    ) from missing


def _tensors(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, H, W)`` uint8 inputs and int64 targets, taken directly from the dataset."""
    data = ds.data
    if isinstance(data, torch.Tensor):  # MNIST-like: (N, H, W) uint8
        inputs = data.unsqueeze(1)
    else:  # CIFAR: (N, H, W, C) uint8 numpy
        inputs = torch.from_numpy(data).permute(0, 3, 1, 2)
    targets = torch.as_tensor(ds.targets, dtype=torch.int64)
    return inputs.contiguous(), targets


def load_torchvision(name: str, root: str, *, download: bool) -> RawData:
    """Load the official train and test splits of ``mnist``, ``fashion_mnist`` or ``cifar10``.

    Args:
        name: The dataset.
        root: torchvision's root folder (files in ``<root>/MNIST/raw``,
            ``<root>/FashionMNIST/raw`` or ``<root>/cifar-10-batches-py``).
        download: Whether a download may be tried when the files are missing.

    Returns:
        Raw uint8 images in ``[0, 255]`` with their official test split.

    Raises:
        DatasetNotFoundError: If the files are missing and could not be downloaded.
    """
    train = _open(name, root, train=True, download=download)
    test = _open(name, root, train=False, download=download)
    inputs, targets = _tensors(train)
    test_inputs, test_targets = _tensors(test)
    return RawData(
        inputs=inputs,
        targets=targets,
        n_classes=len(train.classes),
        value_range=(0.0, 255.0),
        test_inputs=test_inputs,
        test_targets=test_targets,
    )
