"""How the energy reads a hidden unit of a population's nets (:class:`HiddenActivation`): the
binary net's own ``sign(Z)``, or a smooth ``tanh`` of it kept in integers, so that every cached
pre-activation stays an exact integer sum."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["HiddenActivation"]


def sign_into(z: Tensor, out: Tensor | None = None) -> Tensor:
    """``sign`` with 0 -> +1 of an integer-valued float tensor (into ``out`` when given)."""
    return torch.add(z, 0.5, out=out).sign_()


class HiddenActivation:
    """The value ``A = act(Z)`` the energy gives a hidden unit with integer pre-activation ``Z``.

    ``width`` 0 is ``sign(Z)`` (0 -> +1): the energy of the binary net itself. A ``width``
    ``tau > 0`` gives ``round(LEVELS * tanh(z / tau))`` with ``z = Z / u`` the pre-activation in
    units of its layer's input level ``u`` (1 for the first layer's ±1 inputs, ``LEVELS`` after
    a smooth hidden layer): a unit near its threshold counts for less than a saturated one, so
    a flip that moves many images' units towards their thresholds changes the energy before any
    sign changes. Only the energy sees it; the net, its exports and accuracies stay binary.

    The values are integers in ``[-LEVELS, LEVELS]`` read from a table per hidden layer, so the
    next layer's pre-activations are exact integer sums as with signs; the logits are the last
    ``Z`` times ``scale / levels`` (:attr:`levels` is 1 for ``sign``): a net whose hidden units
    all saturate has the binary net's logits. A net without a hidden layer has nothing to
    smooth: its energy is the same for every ``width``.

    Args:
        width: ``tau`` (>= 0; 0 = ``sign``).
        widths: the nets' ``[in_0, out_0, ..., classes]`` (:attr:`StackedMLP.widths`).
        device: where the tables live.
    """

    LEVELS = 64

    def __init__(self, width: float, widths: Sequence[int],
                 device: torch.device | str = "cpu") -> None:
        if not width >= 0:
            raise ValueError(f"the hidden activation's width must be >= 0 (0 = sign), but got "
                             f"{width}.")
        self.width = float(width)
        self.widths = [int(w) for w in widths]
        n_hidden = len(self.widths) - 2
        #: The largest hidden value: ``LEVELS``, or 1 for ``sign`` (or no hidden layer).
        self.levels = self.LEVELS if self.width and n_hidden > 0 else 1
        #: Per hidden layer, its value at every pre-activation ``Z`` as ``table[Z + bound]``
        #: (float32; none for ``sign``).
        self.tables = [self._table(i, device) for i in range(n_hidden)] if self.smooth else []

    @property
    def smooth(self) -> bool:
        """Whether hidden units are read through the smooth ``tanh`` (not ``sign``)."""
        return self.levels > 1

    def bound(self, layer: int) -> int:
        """The largest ``|Z|`` of ``layer`` (its fan-in times its inputs' level)."""
        return self.widths[layer] * (1 if layer == 0 else self.levels)

    def _table(self, layer: int, device: torch.device | str) -> Tensor:
        bound = self.bound(layer)
        z = torch.arange(-bound, bound + 1, dtype=torch.float64)
        unit = 1 if layer == 0 else self.levels
        values = torch.tanh(z / (unit * self.width)).mul_(self.levels).round_()
        return values.to(device, torch.float32)

    def __call__(self, z: Tensor, layer: int, out: Tensor | None = None) -> Tensor:
        """``act`` of ``layer``'s pre-activations ``z`` (integer-valued float32), into ``out``
        (same shape) when given."""
        if not self.smooth:
            return sign_into(z, out)
        index = z.add(self.bound(layer)).long().view(-1)
        values = torch.index_select(self.tables[layer], 0, index,
                                    out=None if out is None else out.view(-1))
        return values.view(z.shape)
