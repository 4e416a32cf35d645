"""The incremental kernel's candidates that change the last layer (:class:`LastLayerProposals`,
a base of :class:`~mcmc_core.population.ChainCache`): a low-rank update of its inputs, or
rows of its weights flipped in place; their energies from the cached exponentials."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mcmc_core.energy import EnergySet

from mcmc_core.population._workspace import CacheFields

if TYPE_CHECKING:
    from mcmc_core.population._proposal import LayerFlips

__all__ = ["LastLayerProposals"]


class LastLayerProposals(CacheFields):
    """Proposals whose last step is the last layer; :class:`ChainCache` holds the caches."""

    _dense: list[tuple[int, Tensor]]
    _candidate: Tensor | None
    _candidate_picked: Tensor | None
    _last_rows: tuple[Tensor, ...] | None
    _lowrank_update: tuple[Tensor, Tensor] | None

    def _log_partition(self, exp_logits: Tensor) -> Tensor:
        k, _, n = exp_logits.shape
        return EnergySet.log_partition(exp_logits, self._ws("lse", (k, n), exp_logits),
                                       self._ws("lse64", (k, n), exp_logits, torch.float64))

    @staticmethod
    def _lowrank(z: Tensor, columns: Tensor, d: Tensor, out: Tensor) -> Tensor:
        """``z + columns @ d`` into ``out`` (an outer product when rank 1)."""
        if d.shape[1] == 1:
            return torch.addcmul(z, columns, d, out=out)
        return torch.baddbmm(z, columns, d, out=out)

    def _propose_last_lowrank(self, columns: Tensor, d: Tensor) -> Tensor:
        """Candidates whose last layer's inputs changed on a few units: the new ``Z_last`` is
        only kept long enough to take its picked sums and exponentials; :meth:`commit` adds the
        same low-rank update to the accepted chains' ``Z_last`` in place."""
        z = self.pre[-1][self._part]
        buffer = self._lowrank(z, columns, d, self._ws("logits", z.shape, z))
        picked = self.energy_set.picked(buffer, self.net.weights[-1].shape[2])
        exp_new = buffer.mul_(self.net.scale).exp_()
        self._dense.append((-1, exp_new))
        self._lowrank_update = (columns, d)
        self._candidate_picked = picked
        self._candidate = self._energy(self._log_partition(exp_new), picked)
        return self._candidate

    def _propose_last_rows(self, f: LayerFlips, delta: Tensor) -> Tensor:
        """Candidates that flip only last-layer weights: the touched rows of ``Z_last`` and
        ``exp(s Z_last)`` are written in place (the old ones kept for :meth:`commit`), and the
        energy is ``log_partition`` of the cached exponentials plus an exact update of the
        picked sums."""
        ws, z, exp_last = self._ws, self.pre[-1], self.exp_last
        assert exp_last is not None and self.picked is not None
        part = self._part
        k, m, n = delta.shape
        classes = z.shape[1]
        old_z = self._gather_rows("old_z", z, f.row).view(k, m, n)
        new_z = ws("new_z", (k, m, n), z)
        first = self._aggregate(f.row, old_z, delta, new_z)
        old_e = self._gather_rows("old_e", exp_last, f.row).view(k, m, n)
        new_e = torch.mul(new_z, self.net.scale, out=ws("new_e", (k, m, n), z)).exp_()
        # The picked sums change by the targets' cells of the changed rows (integers: exact):
        # per row, its change summed over each class's samples, then the row's own class.
        diff = torch.sub(new_z, old_z, out=delta).view(-1, n)
        per_class = torch.mm(diff, self.energy_set.one_hot(classes, z).t())  # [K * M, classes]
        change = per_class.gather(1, (f.row % classes).view(-1, 1)).view(k, m)
        if first is not None:
            change.mul_(first)
        picked = self.picked[part] + change.sum(1, dtype=torch.float64)
        rows = f.row.view(-1)
        z.view(-1, n).index_copy_(0, rows, new_z.view(-1, n))
        exp_last.view(-1, n).index_copy_(0, rows, new_e.view(-1, n))
        self._last_rows = (rows, old_z, new_z, old_e, new_e)
        self._candidate, self._candidate_picked = self._energy(
            self._log_partition(exp_last[part]), picked), picked
        return self._candidate
