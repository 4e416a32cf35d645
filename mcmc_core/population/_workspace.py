"""Work buffers and sign helpers of the incremental kernel (:class:`Workspace`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from mcmc_core.energy import EnergySet
    from mcmc_core.population._weights import StackedMLP

__all__ = ["CacheFields", "Workspace", "sign_", "sign_into"]


def sign_(z: Tensor) -> Tensor:
    """In place: ``sign`` with 0 -> +1 of an integer-valued float tensor."""
    return z.add_(0.5).sign_()


def sign_into(z: Tensor, out: Tensor) -> Tensor:
    """``sign`` with 0 -> +1 of an integer-valued float tensor, written into ``out``."""
    return torch.add(z, 0.5, out=out).sign_()


class Workspace:
    """Named, reused buffers (each grows to the largest size asked for)."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}
        self._views: dict[tuple[object, ...], Tensor] = {}

    def __call__(self, name: str, shape: Sequence[int], like: Tensor,
                 dtype: torch.dtype | None = None) -> Tensor:
        dtype = like.dtype if dtype is None else dtype
        key = (name, tuple(shape), dtype, like.device)
        view = self._views.get(key)
        if view is not None:
            return view
        n, t = math.prod(shape), self._buffers.get(name)
        if t is None or t.numel() < n or t.dtype != dtype or t.device != like.device:
            t = self._buffers[name] = torch.empty(n, dtype=dtype, device=like.device)
            self._views = {k: v for k, v in self._views.items() if k[0] != name}
        view = self._views[key] = t[:n].view(*shape)
        return view

    def clear(self) -> None:
        self._buffers.clear()
        self._views.clear()


class CacheFields:
    """What a :class:`~mcmc_core.population.ChainCache` holds, as the parts of it in other
    modules (:mod:`._last_layer`, :mod:`._commit`) read it."""

    net: StackedMLP
    energy_set: EnergySet
    pre: list[Tensor]
    exp_last: Tensor | None
    picked: Tensor | None
    energies: Tensor
    _ws: Workspace
    _part: slice
