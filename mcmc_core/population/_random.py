"""Counter-based random streams: one splitmix64 stream per chain, drawn for all chains at once.

A chain's random numbers are a pure function of its seed, the step and a *slot* (what the number
is for): ``mix64(key + ((step << 32) | slot) * GOLDEN)`` with ``key = mix64(seed)``, i.e.
splitmix64 indexed by a counter. Drawing them is a handful of int64 tensor operations for the
whole population, with no per-chain generator calls, and a chain's numbers do not depend on
which other chains share its batch: a chain run alone and in a population of 32 takes the same
steps. The stream's whole state is ``(seed, step)``, so saving and resuming are exact.

Slots are ``j | purpose << 22 | round << 27``: ``j`` < 2**22 indexes the draws of one purpose,
``purpose`` < 32 and ``round`` < 32 (the redraws of colliding flip indices).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["ChainRandom", "draw_bits", "mix64", "slot", "slot_offsets", "step_offsets"]

_MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
J_BITS, PURPOSE_BITS, ROUND_BITS = 22, 5, 5
MAX_J, MAX_PURPOSE, MAX_ROUND = 1 << J_BITS, 1 << PURPOSE_BITS, 1 << ROUND_BITS


def _signed(value: int) -> int:
    """``value`` modulo 2**64 as a signed int64 (torch's int64 arithmetic wraps the same way)."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _lshr(x: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 ``x`` (torch's ``>>`` is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def mix64(x: Tensor) -> Tensor:
    """The splitmix64 finalizer on an int64 tensor (a bijection of 64-bit words)."""
    x = x ^ _lshr(x, 30)
    x = x * _signed(_MIX1)
    x = x ^ _lshr(x, 27)
    x = x * _signed(_MIX2)
    return x ^ _lshr(x, 31)


def slot(j: int, purpose: int, round: int = 0) -> int:
    """The slot number of draw ``j`` of ``purpose`` in redraw ``round``."""
    if not (0 <= j < MAX_J and 0 <= purpose < MAX_PURPOSE and 0 <= round < MAX_ROUND):
        raise ValueError(f"slot out of range: {j=}, {purpose=}, {round=}.")
    return j | purpose << J_BITS | round << (J_BITS + PURPOSE_BITS)


def slot_offsets(slots: Sequence[int] | Tensor, device: torch.device | str = "cpu") -> Tensor:
    """``slot * GOLDEN`` (mod 2**64) as an int64 tensor, ready to add to a chain's step key."""
    s = torch.as_tensor(slots, dtype=torch.int64, device=device)
    return s * _signed(GOLDEN)  # wraps modulo 2**64


def step_offsets(start: int, length: int, device: torch.device | str = "cpu") -> Tensor:
    """``(step << 32) * GOLDEN`` (mod 2**64) for the steps ``start .. start + length - 1``."""
    if not (0 <= start and start + length <= 1 << 32):
        raise ValueError(f"steps must lie in [0, 2**32), but got {start=}, {length=}.")
    values = [_signed((s << 32) * GOLDEN) for s in range(start, start + length)]
    return torch.tensor(values, dtype=torch.int64, device=device)


def draw_bits(keys: Tensor, steps: Tensor, slots: Tensor) -> Tensor:
    """63 random bits (non-negative int64), ``[K, B, S]``, of the chains whose stream keys are
    ``keys`` (``[K]``) at the steps whose :func:`step_offsets` are ``steps`` (``[B]``) for the
    slots whose :func:`slot_offsets` are ``slots`` (``[S]``)."""
    x = keys.view(-1, 1, 1) + steps.view(1, -1, 1)
    return _lshr(mix64(x + slots.view(1, 1, -1)), 1)


class ChainRandom:
    """The random streams of ``K`` chains, one per seed.

    Args:
        seeds: one integer seed per chain (any int64).
        device: where the draws are made.
    """

    def __init__(self, seeds: Tensor, device: torch.device | str = "cpu") -> None:
        self.seeds = seeds.to(dtype=torch.int64, device=device)
        self.keys = mix64(self.seeds)

    def keep(self, index: Tensor) -> None:
        """Keep the chains at ``index`` (a 1-D int64 tensor), in that order."""
        self.seeds, self.keys = self.seeds[index], self.keys[index]

    def bits(self, start: int, length: int, slots: Tensor) -> Tensor:
        """63 random bits (non-negative int64), ``[K, length, len(slots)]``, for the steps
        ``start ..`` and the slots whose :func:`slot_offsets` are ``slots``."""
        return draw_bits(self.keys, step_offsets(start, length, self.keys.device), slots)

    @staticmethod
    def uniform(bits: Tensor) -> Tensor:
        """Float64 uniforms in the open interval ``(0, 1)`` from random bits (their top 52)."""
        return (bits >> 11).to(torch.float64).add_(0.5).mul_(2.0**-52)
