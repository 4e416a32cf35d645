"""Accepting candidates into the incremental kernel's caches (:class:`CacheCommit`, a base of
:class:`~mcmc_core.population.ChainCache`): masked writes without a host synchronisation, or
writes of the accepted chains' rows only."""

from __future__ import annotations

import torch
from torch import Tensor

from mcmc_core.population._workspace import CacheFields

__all__ = ["CacheCommit"]


class CacheCommit(CacheFields):
    """:meth:`commit` of a :class:`~mcmc_core.population.ChainCache` (its caches and the
    proposed candidate are read and written here)."""

    sync_free: bool
    _rows: list[tuple[int, Tensor, Tensor, Tensor]]
    _dense: list[tuple[int, Tensor]]
    _flips: list[tuple[int, Tensor, Tensor]]
    _candidate: Tensor | None
    _candidate_picked: Tensor | None
    _last_rows: tuple[Tensor, ...] | None
    _lowrank_update: tuple[Tensor, Tensor] | None

    @torch.no_grad()
    def commit(self, accepted: Tensor) -> None:
        """Chains where ``accepted`` (bool, one per chain of the proposed part) take their
        candidate (weights, caches, energy); the others keep their current state.

        With :attr:`sync_free` every cache write is masked (``where(accepted, new, old)``) and
        takes the same tensor operations whatever was accepted; otherwise only the accepted
        chains' rows are written, which needs their count on the host (``nonzero``)."""
        if self._candidate is None:
            raise RuntimeError("commit() without a proposed candidate.")
        part, k = self._part, len(accepted)
        if self.sync_free:
            self._commit_masked(accepted)
        else:
            self._commit_selected(accepted)
        if self._lowrank_update is not None:
            # Z_last += columns @ d for the accepted chains (d zeroed for the others): in place.
            columns, d = self._lowrank_update
            d.mul_(accepted.view(-1, 1, 1))
            z = self.pre[-1][part]
            if d.shape[1] == 1:
                z.addcmul_(columns, d)
            else:
                z.baddbmm_(columns, d)
        if self.picked is not None and (self._dense or self._last_rows is not None):
            picked = self.picked[part]
            picked.copy_(torch.where(accepted, self._candidate_picked, picked))
        for i, index, coef in self._flips:
            change = coef.view(k, -1).mul_(accepted.unsqueeze(1)).view(-1)
            self.net.weights[i].view(-1).index_add_(0, index.view(-1), change)
        energies = self.energies[part]
        energies.copy_(torch.where(accepted, self._candidate, energies))
        self._rows, self._dense, self._flips, self._candidate = [], [], [], None
        self._last_rows = self._lowrank_update = None

    def _commit_selected(self, accepted: Tensor) -> None:
        """Write the accepted chains' rows and dense caches, put the rejected chains' last-layer
        rows back: index operations on the chains that need them (a host sync for the count)."""
        part, k = self._part, len(accepted)
        sel = accepted.nonzero().squeeze(1)
        if len(sel):
            for i, rows, _, new_z in self._rows:
                n = new_z.shape[-1]
                values = self._gather_rows("commit_rows", new_z.view(k, -1), sel)
                self.pre[i].view(-1, n).index_copy_(0, rows.index_select(0, sel).view(-1),
                                                    values.view(-1, n))
            for i, z_new in self._dense:
                target = (self.pre[i] if i >= 0 else self.exp_last)[part]  # type: ignore[index]
                picked = self._gather_rows("commit", z_new.view(k, -1), sel)
                target.index_copy_(0, sel, picked.view(-1, *z_new.shape[1:]))
        if self._last_rows is not None:
            rejected = (~accepted).nonzero().squeeze(1)
            if len(rejected):
                rows, old_z, _, old_e, _ = self._last_rows
                n = old_z.shape[-1]
                rows = rows.view(k, -1).index_select(0, rejected).view(-1)
                for cache, old in ((self.pre[-1], old_z), (self.exp_last, old_e)):
                    values = self._gather_rows("commit_rows", old.view(k, -1), rejected)
                    cache.view(-1, n).index_copy_(0, rows, values.view(-1, n))  # type: ignore

    def _commit_masked(self, accepted: Tensor) -> None:
        """The same writes as :meth:`_commit_selected` as masked selections of every chain's
        candidate or old values: no host sync. Entries of a chain that hit the same row hold
        the same values, so writing them all is well defined."""
        part = self._part
        keep = accepted.view(-1, 1, 1)
        for i, rows, old_z, new_z in self._rows:
            n = new_z.shape[-1]
            values = torch.where(keep, new_z, old_z,
                                 out=self._ws("commit_rows", new_z.shape, new_z))
            self.pre[i].view(-1, n).index_copy_(0, rows.view(-1), values.view(-1, n))
        for i, z_new in self._dense:
            target = (self.pre[i] if i >= 0 else self.exp_last)[part]  # type: ignore[index]
            torch.where(keep, z_new, target, out=target)
        if self._last_rows is not None:
            rows, old_z, new_z, old_e, new_e = self._last_rows
            n = old_z.shape[-1]
            for cache, old, new in ((self.pre[-1], old_z, new_z), (self.exp_last, old_e, new_e)):
                values = torch.where(keep, new, old, out=self._ws("commit_rows", new.shape, new))
                cache.view(-1, n).index_copy_(0, rows, values.view(-1, n))  # type: ignore
