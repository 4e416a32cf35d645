"""``x ** n`` by repeated squaring, on floats and on tensors, to the same bits.

IEEE multiplication is exactly rounded wherever it runs, so the scalar and the tensor forms give
identical values (``**`` and ``torch.pow`` may differ in the last bit, and a vectorised
``pow`` may even depend on an element's position): a chain's temperature at a step is the same
whether a lone schedule object computes it or the batched kernel reads a block of steps ahead.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["power", "power_t"]


def power(x: float, n: int) -> float:
    """``x ** n`` for an integer ``n >= 0`` (square-and-multiply, lowest bit first)."""
    result, square = 1.0, float(x)
    while n:
        if n & 1:
            result *= square
        n >>= 1
        if n:
            square *= square
    return result


def power_t(x: Tensor, n: Tensor) -> Tensor:
    """``x ** n`` elementwise by the same squarings as :func:`power`: ``x`` float64 ``[K, 1]``,
    ``n`` int64 ``[L]`` (>= 0); returns ``[K, L]``."""
    result = torch.ones(x.shape[0], n.shape[0], dtype=torch.float64)
    square = x.to(torch.float64).expand(-1, n.shape[0]).clone()
    n = n.clone()
    while bool((n > 0).any()):
        odd = (n & 1).bool()
        result = torch.where(odd, result * square, result)
        n >>= 1
        square = torch.where(n > 0, square * square, square)
    return result
