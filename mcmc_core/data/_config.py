"""Typed configuration of a dataset (also the Hydra schema of the ``dataset`` group)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcmc_core._validation import check, check_choice

DATASET_NAMES = ("digits", "mnist", "fashion_mnist", "cifar10", "idx", "synthetic")
BINARIZE_CHOICES = ("mean", "half", "thermometer", "none")


def _key(name: str) -> str:
    """What a dataset name is matched by: case, ``-`` and ``_`` ignored."""
    return name.lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(name): name for name in DATASET_NAMES}


def canonical_dataset_name(name: str) -> str:
    """The name in ``DATASET_NAMES`` that ``name`` spells, ignoring case, ``-`` and ``_``
    (``"MNIST"`` -> ``"mnist"``, ``"FashionMNIST"`` -> ``"fashion_mnist"``, the original's
    torchvision class names); an unknown name is returned unchanged, for
    :meth:`DataConfig.errors` to refuse.

    Example:
        >>> canonical_dataset_name("MNIST"), canonical_dataset_name("Fashion-MNIST")
        ('mnist', 'fashion_mnist')
    """
    return _BY_KEY.get(_key(name), name) if isinstance(name, str) else name


@dataclass
class DataConfig:
    """Which dataset to load and how to split and binarize it.

    Args:
        name: one of ``digits`` (scikit-learn's bundled 8x8 digits, offline), ``mnist``,
            ``fashion_mnist``, ``cifar10`` (torchvision), ``idx`` (a folder of IDX files),
            ``synthetic`` (a seeded teacher-labelled set, for tests); case, ``-`` and ``_``
            are ignored (``MNIST``, ``FashionMNIST``).
        root: folder for torchvision downloads, or the folder of IDX files for ``idx``.
        download: let torchvision download missing files (needs network).
        val_fraction: fraction of the training split carved out (seeded) for validation.
        test_fraction: fraction held out as test where a dataset has no official test split
            (``digits``, ``idx`` with a single file pair, ``synthetic``).
        split_seed: seed of the permutation behind every split.
        binarize: ``mean`` (feature > its training-set mean -> +1, else -1: the original),
            ``half`` (feature > half of its range -> +1), ``thermometer`` (``levels`` ±1 inputs
            per feature, one per evenly spaced threshold: more input bits for a binary net),
            ``none`` (real values scaled to [0, 1]).
        levels: thresholds per feature of ``thermometer``.
        synthetic_samples / synthetic_shape / synthetic_classes: size of ``synthetic``.
    """

    name: str = "digits"
    root: str = "data"
    download: bool = True
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    binarize: str = "mean"
    levels: int = 3
    synthetic_samples: int = 600
    synthetic_shape: list[int] = field(default_factory=lambda: [1, 4, 4])
    synthetic_classes: int = 3

    def __post_init__(self) -> None:
        self.name = canonical_dataset_name(self.name)

    def errors(self, prefix: str = "dataset") -> list[str]:
        """Every violation of this config, one line each (empty when valid)."""
        errors: list[str] = []
        check_choice(errors, f"{prefix}.name", self.name, DATASET_NAMES)
        check_choice(errors, f"{prefix}.binarize", self.binarize, BINARIZE_CHOICES)
        check(errors, self.levels >= 1, f"{prefix}.levels", self.levels, "an integer >= 1")
        check(errors, 0 < self.val_fraction < 1, f"{prefix}.val_fraction", self.val_fraction,
              "0 < val_fraction < 1")
        check(errors, 0 < self.test_fraction < 1, f"{prefix}.test_fraction", self.test_fraction,
              "0 < test_fraction < 1")
        check(errors, self.synthetic_samples >= 10, f"{prefix}.synthetic_samples",
              self.synthetic_samples, "an integer >= 10")
        check(errors, len(self.synthetic_shape) == 3 and all(s >= 1 for s in self.synthetic_shape),
              f"{prefix}.synthetic_shape", list(self.synthetic_shape), "[channels, height, width]")
        check(errors, self.synthetic_classes >= 2, f"{prefix}.synthetic_classes",
              self.synthetic_classes, "an integer >= 2")
        return errors
