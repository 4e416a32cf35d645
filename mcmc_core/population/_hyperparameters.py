"""Every chain's own hyperparameters (:class:`ChainHyperparameters`, a base of
:class:`~mcmc_core.population.Population`): temperature and flip ratio, float64 ``[K]``
tensors, validated whenever one is assigned."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["HYPERPARAMETERS", "ChainHyperparameters", "per_chain"]

#: The per-chain hyperparameters, float64 ``[K]`` tensors.
HYPERPARAMETERS = ("temperature", "flip_ratio")


def per_chain(value: float | Sequence[float] | Tensor, k: int, name: str,
              device: torch.device) -> Tensor:
    """``value`` (one, or one per chain) as a float64 ``[k]`` tensor on ``device``."""
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(k)
    if t.numel() != k:
        raise ValueError(f"{name} must be one value or one per chain ({k}), but got {t.numel()}.")
    return t.clone().to(device)


class ChainHyperparameters:
    """The :attr:`temperature` and :attr:`flip_ratio` properties of a
    :class:`~mcmc_core.population.Population`: assigning one (a value or one per chain)
    validates it and takes effect at the next step."""

    _temperature: Tensor
    _flip_ratio: Tensor
    _layout: Callable[[], None]

    def _check_hyper(self) -> None:
        t, fr = self._temperature, self._flip_ratio
        checks = {"temperature": (t >= 0, ">= 0"),
                  "flip_ratio": ((fr > 0) & (fr <= 1), "in (0, 1]")}
        for name, (ok, what) in checks.items():
            if not bool(ok.all()):
                bad = getattr(self, f"_{name}").tolist()
                raise ValueError(f"{name} must be {what} for every chain, but got {bad}.")

    def _set_hyper(self, name: str, value: float | Sequence[float] | Tensor) -> None:
        old = getattr(self, f"_{name}")
        setattr(self, f"_{name}", per_chain(value, len(old), name, old.device))
        try:
            self._check_hyper()
        except ValueError:
            setattr(self, f"_{name}", old)
            raise
        self._layout()

    temperature = property(lambda self: self._temperature,
                           lambda self, v: self._set_hyper("temperature", v),
                           doc="Every chain's temperature without a ``schedule``, float64 ``[K]``.")
    flip_ratio = property(lambda self: self._flip_ratio,
                          lambda self, v: self._set_hyper("flip_ratio", v),
                          doc="Flip ratio of every chain, float64 ``[K]``.")
