"""Per-chain pre-activation caches of a population, updated from the flips alone.

For every chain the cache keeps each layer's integer pre-activations on the whole energy set,
``Z_l = W_l A_l`` with ``A_l = act(Z_{l-1})`` (``sign``, or the energy's smooth activation:
:class:`HiddenActivation`, integers too) and ``A_0`` the shared binarized energy set, stored
transposed (``[K, out_l, N]``) so that the rows a flip touches are contiguous; and, unless the
logits can be large (see :meth:`StackedMLP.needs_shift`), the last layer's ``exp(s Z)`` and the
per-chain sum of the targets' pre-activations, the two parts of the energy. A candidate is
evaluated from its flips (:class:`~mcmc_core.population.LayerFlips`, per flipped layer, for
every chain; padding entries change nothing):

* flipping ``W_l[r, c]`` adds ``-2 w_old A_l[c, :]`` to row ``r`` of ``Z_l``. In the first changed
  layer only the touched rows are gathered and updated (entries of one chain that hit the same
  row all get the row's total change);
* the next layer's inputs changed on those rows only, so its update is
  ``W[:, rows] (A_new - A_old)[rows]``: one batched low-rank product (an outer product for one
  flip). Layers further down are updated densely, ``W (A_new - A_old)``;
* when only last-layer weights flip, the touched rows of ``Z_last`` and ``exp(s Z_last)`` are
  rewritten in place (rejected chains' rows are put back at commit) and the energy needs one
  sum over the cached exponentials;
* the energies come from the updated last pre-activations through the same loss function as a
  full forward (:meth:`~mcmc_core.population.EnergySet.energies`).

All pre-activations are integers below ``2**24`` held in float32 and every other cached value is
the same elementwise function of them as in a full forward, so the caches and energies equal a
fresh forward exactly. :meth:`ChainCache.commit` keeps the accepted chains' candidates and
writes their flips into the weights; rejected chains keep their state.

Large intermediate tensors are written into persistent work buffers (``out=``): on CPU a fresh
allocation of a few hundred kB is served by ``mmap`` and page-faults at every step, which cost
more than the arithmetic. A step may also be run on a contiguous part of the chains at a time
(``part``), to keep the buffers in cache.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from mcmc_core.population._activation import HiddenActivation
from mcmc_core.population._energy_set import EnergySet
from mcmc_core.population._fused import FusedStep, available
from mcmc_core.population._proposal import LayerFlips
from mcmc_core.population._weights import StackedMLP

__all__ = ["ChainCache", "Workspace"]


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


class ChainCache:
    """The weights of a population with their caches, current energies and one candidate.

    Args:
        net: the stacked weights (updated in place by :meth:`commit`).
        energy_set: what the energy is measured on.
        sync_free: commit with masked writes, no host synchronisation (see :meth:`commit`);
            None: on every device but the CPU, where a sync costs nothing and writing only the
            accepted chains' rows is cheaper (default: None).
        margin_weight: the weight ``lam`` of the hidden-margin term added to every energy,
            ``lam * mean_{j, n} relu(margin - |Z_0[j, n]|)`` over the first layer's units and the
            energy samples: it pushes hidden units away from their sign threshold. Kept exact
            (integers) and incremental: a step recomputes it on the flipped rows only. 0 = off;
            a net without a hidden layer has no term (default: 0).
        margin: the pre-activation magnitude (an integer) below which a unit is penalised
            (default: 20).
        smooth_hidden: the width ``tau`` of the hidden units' smooth activation in the energy,
            ``round(64 tanh(Z / tau))`` in place of ``sign(Z)`` (:class:`HiddenActivation`);
            0 = ``sign``, the binary net's own energy (default: 0).
        kernel: ``"fused"``, the compiled kernel of :mod:`._fused` (numba, CPU, MLPs with at
            most one hidden layer, ``proposal="layer"``; other steps take the tensor path),
            ``"torch"``, tensor operations only, or ``"auto"``: fused wherever it applies.
            Both give the same bits (default: ``"auto"``).
    """

    KERNELS = ("auto", "fused", "torch")

    def __init__(self, net: StackedMLP, energy_set: EnergySet,
                 sync_free: bool | None = None, *, margin_weight: float = 0.0,
                 margin: int = 20, smooth_hidden: float = 0.0, kernel: str = "auto") -> None:
        if kernel not in self.KERNELS:
            raise ValueError(f"kernel={kernel!r} is not allowed: expected one of "
                             f"{', '.join(self.KERNELS)}.")
        if kernel == "fused" and not available():
            raise ValueError("kernel='fused' needs numba (pip install numba), which is not "
                             "installed; use kernel='auto' or 'torch'.")
        self.kernel = kernel
        if net.widths[0] != energy_set.inputs_t.shape[0]:
            raise ValueError(f"the net takes {net.widths[0]} inputs, but the energy set has "
                             f"{energy_set.inputs_t.shape[0]} features.")
        self.net, self.energy_set = net, energy_set
        #: How the energy reads the hidden units (``sign``, or the smooth activation).
        self.activation = HiddenActivation(smooth_hidden, net.widths, net.device)
        n = energy_set.inputs_t.shape[1]
        if self.activation.smooth and 2 * self.activation.levels * n >= 1 << 24:
            most = (1 << 23) // HiddenActivation.LEVELS
            raise ValueError(f"smooth_hidden needs fewer than {most} energy samples (exact "
                             f"float32 sums), but the energy set has {n}.")
        self.sync_free = net.device.type != "cpu" if sync_free is None else bool(sync_free)
        self._ws = Workspace()
        # (layer, rows, old rows, new rows, first entry of each row or None) of the changed rows.
        self._rows: list[tuple[int, Tensor, Tensor, Tensor, Tensor | None]] = []
        self._dense: list[tuple[int, Tensor]] = []
        self._flips: list[tuple[int, Tensor, Tensor]] = []
        self._candidate: Tensor | None = None
        self._candidate_picked: Tensor | None = None
        self._last_rows: tuple[Tensor, ...] | None = None
        self._lowrank_update: tuple[Tensor, Tensor] | None = None
        self._part = slice(0, len(net))
        self.margin_weight, self.margin = float(margin_weight), int(margin)
        self._candidate_margin: Tensor | None = None
        self.exp_last: Tensor | None = None
        self.picked: Tensor | None = None
        #: Per-sample sums over the classes of ``exp_last`` or, with shifted logits, the
        #: sums and ``s top`` of :meth:`EnergySet.shifted_sums`, ``[K, N]`` (fused kernel only).
        self.partition: Tensor | None = None
        self.tops: Tensor | None = None
        self._fused: FusedStep | None = None
        self._fused_pending = False
        self._tables: tuple[tuple[float, int], tuple[object, ...]] | None = None
        self.rebuild()

    @torch.no_grad()
    def rebuild(self) -> None:
        """Recompute every cache and energy from the weights (a full batched forward)."""
        net, energy_set = self.net, self.energy_set
        #: ``Z_l`` of every chain, ``[K, out_l, N]``.
        self.pre: list[Tensor] = net.preactivations(energy_set.inputs_t, self.activation)
        self._shift = net.needs_shift()
        #: Current energy of every chain, float64 ``[K]``.
        self.energies: Tensor
        if self._shift:
            self.exp_last = self.picked = None
            self.energies = energy_set.energies(self.pre[-1], self.scale, self.bound)
        else:
            #: ``exp(s Z_last)`` and ``sum_n Z_last[y_n, n]`` (what the energy is made of).
            self.exp_last = torch.mul(self.pre[-1], self.scale).exp_()
            self.picked = energy_set.picked(self.pre[-1], self.bound)
            sums = EnergySet.class_sum(self.exp_last)
            self.energies = self._energy(EnergySet.log_partition_of(sums), self.picked)
        fused = self.kernel != "torch" and not self.sync_free and FusedStep.supports(net)
        if self.kernel == "fused" and not fused:
            raise ValueError(f"kernel='fused' covers binary MLPs on the CPU with at most one "
                             f"hidden layer, stepped with host syncs, not "
                             f"widths {net.widths} on {net.device.type} with sync_free="
                             f"{self.sync_free}; use kernel='auto' or 'torch'.")
        self._fused = FusedStep(self) if fused else None
        self._fused_pending = False
        self.partition = self.tops = None
        if fused:
            self._refresh_partition(slice(0, len(net)))
        #: Per chain, ``sum relu(margin - |Z_0|)``, float64 ``[K]`` (None without the term).
        self.margin_sums: Tensor | None = None
        if self.margin_weight > 0 and len(self.pre) > 1:
            self.margin_sums = self.margin_sum(self.pre[0])
            self.energies = self.energies + self.margin_sums * self.margin_scale()
        self._candidate = None
        self._last_rows = None
        self._ws.clear()

    @contextmanager
    def separate_buffers(self) -> Iterator[object]:
        """Work buffers of their own for the steps run inside, allocated there (it yields them:
        a captured CUDA graph keeps writing to the addresses it captured, so hold on to them).
        The shared buffers are freed first."""
        saved, self._ws = self._ws, Workspace()
        saved.clear()
        try:
            yield self._ws
        finally:
            self._ws = saved

    @property
    def scale(self) -> float:
        """The factor from the last integer pre-activations to the logits: the net's
        ``scale`` over the hidden values' :attr:`HiddenActivation.levels`."""
        return self.net.scale / self.activation.levels

    @property
    def bound(self) -> int:
        """The largest ``|Z_last|``: the last fan-in times the hidden values' levels."""
        return self.net.weights[-1].shape[2] * self.activation.levels

    @property
    def fused(self) -> bool:
        """Whether steps of one layer run on the fused kernel."""
        return self._fused is not None

    def tables(self) -> tuple[object, ...]:
        """``(exp, shifted, linear, bound)`` for the fused kernel: ``exp[z + bound] = exp(s z)``
        and ``linear[z + bound] = s z`` for the integers ``|z| <= bound`` (the last fan-in),
        ``shifted[d + 2 bound] = exp(s d)`` for ``-2 bound <= d <= 0``; float32 numpy arrays
        computed by the same tensor operations as :attr:`exp_last` and
        :meth:`EnergySet.shifted_sums`, so the same bits."""
        s, bound = self.scale, self.bound
        if self._tables is None or self._tables[0] != (s, bound):
            z = torch.arange(-bound, bound + 1, dtype=torch.float32)
            d = torch.arange(-2 * bound, 1, dtype=torch.float32)
            self._tables = (s, bound), (torch.mul(z, s).exp_().numpy(),
                                        torch.mul(d, s).exp_().numpy(),
                                        torch.mul(z, s).numpy(), bound)
        return self._tables[1]

    def _refresh_partition(self, part: slice) -> None:
        """The fused kernel's caches of the chains ``part`` from the pre-activations (after a
        step of the tensor path, which does not keep them)."""
        z = self.pre[-1][part]
        if self._shift:
            sums, tops = EnergySet.shifted_sums(z, self.scale)
            picked = self.energy_set.picked(z, self.bound)
            if self.partition is None or self.tops is None or self.picked is None:
                self.partition, self.tops, self.picked = sums.contiguous(), tops, picked
            else:
                self.partition[part], self.tops[part], self.picked[part] = sums, tops, picked
        else:
            assert self.exp_last is not None
            sums = EnergySet.class_sum(self.exp_last[part])
            if self.partition is None:
                self.partition = sums.contiguous()
            else:
                self.partition[part] = sums

    def log_partition_of(self, sums: Tensor, tops: Tensor | None) -> Tensor:
        """:meth:`EnergySet.log_partition_of` into this cache's work buffers."""
        k, n = sums.shape
        return EnergySet.log_partition_of(sums, self._ws("lse", (k, n), sums),
                                          self._ws("lse64", (k, n), sums, torch.float64), tops)

    def _energy(self, log_partition: Tensor, picked: Tensor) -> Tensor:
        """The energy from its two parts, as :meth:`EnergySet.energies` combines them."""
        return (log_partition - picked * self.picked_scale()) / self.energy_set.inputs_t.shape[1]

    def picked_scale(self) -> float:
        """The factor of the picked sums in the energy (:meth:`EnergySet.picked_scale`)."""
        return self.energy_set.picked_scale(self.scale, self.net.n_classes)

    def margin_sum(self, z0: Tensor) -> Tensor:
        """``sum_{j, n} relu(margin - |z0|)`` per chain of ``z0`` ``[K, out, N]``, float64."""
        return (self.margin - z0.abs()).clamp_(min=0).sum((1, 2), dtype=torch.float64)

    def margin_scale(self) -> float:
        """The factor of the margin sums in the energy: ``margin_weight / (out_0 * N)``."""
        return self.margin_weight / (self.pre[0].shape[1] * self.pre[0].shape[2])

    def _margin_change(self, old_z: Tensor, new_z: Tensor, first: Tensor | None) -> Tensor:
        """How the margin sums ``[K']`` change when rows of ``Z_0`` go from ``old_z`` to
        ``new_z`` (``[K', M, N]``; entries of a chain that hit the same row hold its total, so
        only its ``first`` entry counts, :meth:`_aggregate`'s mask)."""
        hinge = (self.margin - new_z.abs()).clamp_(min=0)
        hinge -= (self.margin - old_z.abs()).clamp_(min=0)
        change = hinge.sum(2, dtype=torch.float64)
        if first is not None:
            change.mul_(first)
        return change.sum(1)

    def keep(self, index: Tensor) -> None:
        """Keep the chains at ``index`` (1-D int64), in that order (weights included)."""
        self.net.keep(index)
        self.pre = [z[index] for z in self.pre]
        self.energies = self.energies[index]
        if self.exp_last is not None:
            self.exp_last = self.exp_last[index]
        if self.picked is not None:
            self.picked = self.picked[index]
        if self.margin_sums is not None:
            self.margin_sums = self.margin_sums[index]
        if self.partition is not None:
            self.partition = self.partition[index]
        if self.tops is not None:
            self.tops = self.tops[index]
        self._candidate = None
        self._last_rows = None
        self._ws.clear()

    def exchange(self, i: int, j: int) -> None:
        """Swap chains ``i`` and ``j``: weights, caches and energies, in place."""
        pair, swapped = [i, j], [j, i]
        tensors = [*self.net.weights, *self.pre, self.energies]
        if self.exp_last is not None and self.picked is not None:
            tensors += [self.exp_last, self.picked]
        if self.margin_sums is not None:
            tensors.append(self.margin_sums)
        tensors += [t for t in (self.partition, self.tops) if t is not None]
        if self._shift and self.picked is not None:
            tensors.append(self.picked)
        for t in tensors:
            t[pair] = t[swapped]
        self._candidate = None
        self._last_rows = None

    # ------------------------------------------------------------------------------ helpers
    def _gather_rows(self, name: str, t: Tensor, rows: Tensor) -> Tensor:
        """``t.view(-1, N)[rows]`` into the work buffer ``name``: ``[len(rows), N]``."""
        t = t.view(-1, t.shape[-1])
        out = self._ws(name, (rows.numel(), t.shape[1]), t)
        return torch.index_select(t, 0, rows.view(-1), out=out)

    def _sources(self, i: int, source: Tensor) -> Tensor:
        """The flipped weights' inputs ``A_i`` (rows ``source`` ``[K, M]``): ``[K, M, N]``."""
        k, m = source.shape
        if i == 0:
            return self._gather_rows("src", self.energy_set.inputs_t, source).view(k, m, -1)
        rows = self._gather_rows("src", self.pre[i - 1], source)
        return self.activation(rows, i - 1, out=rows).view(k, m, -1)

    def _aggregate(self, rows: Tensor, old_z: Tensor, delta: Tensor, new_z: Tensor
                   ) -> Tensor | None:
        """``new_z = old_z + delta`` where every entry gets the total change of its row (entries
        of a chain may hit the same row). Returns the ``[K, M]`` mask of each row's first entry,
        or None when ``M == 1``."""
        k, m, n = delta.shape
        if m == 1:
            torch.add(old_z, delta, out=new_z)
            return None
        same = rows.unsqueeze(2) == rows.unsqueeze(1)  # [K, M, M]
        if m <= 16:  # a small batched matmul sums the repeats
            torch.baddbmm(old_z, same.to(delta.dtype), delta, out=new_z)
            later = torch.ones(m, m, dtype=torch.bool, device=rows.device).tril_(-1)
            return ~(same & later).any(2)
        # Many entries: sum each row's changes at its first entry, then hand the sums out.
        first_at = same.to(torch.uint8).argmax(2)  # index of the first entry of the same row
        slots = (torch.arange(k, device=rows.device).unsqueeze(1) * m + first_at).view(-1)
        totals = self._ws("totals", (k * m, n), delta).zero_().index_add_(
            0, slots, delta.view(-1, n))
        each = torch.index_select(totals, 0, slots, out=self._ws("each", (k * m, n), delta))
        torch.add(old_z, each.view(k, m, n), out=new_z)
        return first_at == torch.arange(m, device=rows.device)

    def _columns(self, i: int, column: Tensor) -> Tensor:
        """``[K, out_i, U]`` columns of ``W_i`` whose output-0 entries are at ``column``."""
        w = self.net.weights[i]
        offsets = torch.arange(0, w.shape[1] * w.shape[2], w.shape[2], device=w.device)
        return w.view(-1).take(column.unsqueeze(1) + offsets.view(1, -1, 1))

    # ------------------------------------------------------------------------------ steps
    @torch.no_grad()
    def propose(self, flips: Mapping[int, LayerFlips], part: slice | None = None) -> Tensor:
        """Energies float64 ``[K']`` of the candidates that differ from the current weights by
        ``flips`` (``{layer: LayerFlips}``), for the chains ``part`` (default: all; the flips
        are those chains' rows). Nothing changes until :meth:`commit`."""
        self._candidate_margin = None
        self._fused_pending = self._fused is not None and self._fused.handles(flips)
        if self._fused_pending:
            return self._propose_fused(flips, part)
        loss = self._propose_loss(flips, part)
        if self.margin_sums is None or not flips:  # no term, or the current energies
            return loss
        sums = self.margin_sums[self._part]
        for i, _, old_z, new_z, first in self._rows:  # Z_0 changes on its flipped rows only
            if i == 0:
                sums = sums + self._margin_change(old_z, new_z, first)
        self._candidate_margin = sums
        self._candidate = loss + sums * self.margin_scale()
        return self._candidate

    def _propose_fused(self, flips: Mapping[int, LayerFlips], part: slice | None) -> Tensor:
        """:meth:`propose` by the fused kernel (:class:`FusedStep`)."""
        assert self._fused is not None and self.picked is not None
        self._rows, self._dense, self._flips, self._last_rows = [], [], [], None
        self._lowrank_update = None
        self._part = part = slice(0, len(self.net)) if part is None else part
        sums, tops, picked_change, margin_change = self._fused.propose(flips, part)
        picked = self.picked[part] + picked_change
        self._candidate_picked = picked
        self._candidate = self._energy(self.log_partition_of(sums, tops), picked)
        if self.margin_sums is not None:  # Z_0 changed on hidden flips only
            margins = self.margin_sums[part]
            if margin_change is not None:
                margins = self._candidate_margin = margins + margin_change
            self._candidate = self._candidate + margins * self.margin_scale()
        return self._candidate

    @torch.no_grad()
    def advance(self, flips: Mapping[int, LayerFlips], part: slice, threshold: Tensor,
                tie: Tensor | None, n_accepted: Tensor) -> Tensor | None:
        """A whole step of the chains ``part`` by the fused kernel, when it handles ``flips``:
        :meth:`propose`, the decision of :meth:`Population._advance
        <mcmc_core.population.Population>` and :meth:`commit` in one, with the same results;
        ``n_accepted`` (``[K']``) counts in place. Returns None where the kernel does not
        apply (nothing happened), else True."""
        if self._fused is None or not self._fused.handles(flips):
            return None
        self._candidate = self._candidate_margin = None
        self._fused.advance(flips, part, threshold, tie, n_accepted)
        return True

    def advance_at(self, block: ProposalBlock, b: int, n_accepted: Tensor) -> bool:
        """:meth:`advance` of step ``b`` of ``block`` for every chain, straight from the
        block's numpy views (:meth:`ProposalBlock.host_draws`); False (nothing happened) where
        the fused kernel does not apply: no kernel, or every layer flipped at once."""
        if self._fused is None or block.layers is None:
            return False
        self._candidate = self._candidate_margin = None
        self._fused.step(block, b, n_accepted)
        return True

    def _propose_loss(self, flips: Mapping[int, LayerFlips], part: slice | None) -> Tensor:
        """The candidates' mean cross-entropy (:meth:`propose` without the margin term)."""
        self._rows, self._dense, self._flips, self._last_rows = [], [], [], None
        self._lowrank_update: tuple[Tensor, Tensor] | None = None
        self._part = part = slice(0, len(self.net)) if part is None else part
        ws = self._ws
        k, n_layers = part.stop - part.start, len(self.net.weights)
        n = self.energy_set.inputs_t.shape[1]
        # How the current layer's input changed: None; ("rows", units, columns, d), d of the
        # units at global rows `units` [K, U] of the previous layer, [K, U, N], and the next
        # weights' columns of those units [K, out, U]; or ("dense", None, None, d [K, in, N]).
        # d = A_new - A_old: in {0, +-2} for signs, integers up to 2 * LEVELS for smooth units.
        up: tuple[str, Tensor | None, Tensor | None, Tensor] | None = None
        first: Tensor | None = None  # [K, U]: the first entry of each changed unit in `up`
        z_new: Tensor | None = None
        for i in range(min(flips, default=n_layers), n_layers):
            f = flips.get(i)
            # This part's chains; the flips' indices address the whole stacked tensors.
            w, z, last = self.net.weights[i][part], self.pre[i][part], i == n_layers - 1
            delta = None
            if f is not None:
                m = f.weight.shape[1]
                coef = self.net.weights[i].view(-1).index_select(0, f.weight.view(-1)).mul_(-2.0)
                if f.valid is not None:
                    coef.mul_(f.valid.view(-1))
                self._flips.append((i, f.weight, coef))
                src = self._sources(i, f.source)  # [K, M, N]
                if up is not None:  # proposal="all": the flipped weights' inputs changed too
                    if up[0] == "dense":  # up[3] holds this part's chains only
                        local = f.source - part.start * w.shape[2]
                        src += self._gather_rows("up", up[3], local).view(k, m, n)
                    else:  # each changed unit once (up[2]'s repeated columns are zero)
                        same = f.source.unsqueeze(2) == up[1].unsqueeze(1)  # [K, M, U]
                        if first is not None:
                            same &= first.unsqueeze(1)
                        src.baddbmm_(same.to(src.dtype), up[3])
                delta = src.mul_(coef.view(k, m, 1))  # the change of Z_i's rows f.row
            if up is None and not last:
                # The first changed layer, a hidden one: gather and update the touched rows only.
                assert f is not None and delta is not None and f.column is not None
                old_z = self._gather_rows("old_z", self.pre[i], f.row).view(k, m, n)
                new_z = ws("new_z", (k, m, n), z)
                columns = self._columns(i + 1, f.column)  # [K, out, M]
                first = self._aggregate(f.row, old_z, delta, new_z)
                if first is not None:  # count each changed row once downstream
                    columns.mul_(first.unsqueeze(1))
                d = self.activation(new_z, i, out=ws("d", (k, m, n), z))
                d.sub_(self.activation(old_z, i, out=delta))  # delta is spent
                self._rows.append((i, f.row, old_z, new_z, first))
                up = ("rows", f.row, columns, d)
                continue
            if up is None and not self._shift:
                # Only the last layer changed, on the flipped rows: evaluate in place.
                assert f is not None and delta is not None
                return self._propose_last_rows(f, delta)
            if last and f is None and up[0] == "rows" and not self._shift:
                return self._propose_last_lowrank(up[2], up[3])  # type: ignore[arg-type]
            # A dense update of Z_i, into the work buffer of layer i.
            z_new = ws(f"z{i}", z.shape, z)
            if up is None:
                z_new.copy_(z)
            elif up[0] == "dense":
                torch.baddbmm(z, w, up[3], out=z_new)
            else:
                self._lowrank(z, up[2], up[3], z_new)  # type: ignore[arg-type]
            if delta is not None:
                assert f is not None
                local = f.row.view(-1) - part.start * z.shape[1]
                z_new.view(-1, n).index_add_(0, local, delta.view(-1, n))
            self._dense.append((i, z_new))
            if not last:
                d_next = self.activation(z_new, i, out=ws("d_dense", z.shape, z))
                d_old = self.activation(z, i, out=ws("d_tmp", z.shape, z))
                up = ("dense", None, None, d_next.sub_(d_old))
        if z_new is None:
            self._candidate = self.energies[part].clone()
        elif self._shift:
            self._candidate = self.energy_set.energies(
                z_new, self.scale, self.bound, scratch=ws("logits", z_new.shape, z_new),
                lse_out=ws("lse", (k, n), z_new),
                lse64_out=ws("lse64", (k, n), z_new, torch.float64))
        else:
            picked = self.energy_set.picked(z_new, self.bound)
            exp_new = torch.mul(z_new, self.scale, out=ws("logits", z_new.shape, z_new))
            self._dense.append((-1, exp_new.exp_()))
            self._candidate = self._energy(self._log_partition(exp_new), picked)
            self._candidate_picked = picked
        return self._candidate

    # ------------------------------------------------------------------------------ last layer
    def _log_partition(self, exp_logits: Tensor) -> Tensor:
        k, c, n = exp_logits.shape
        return EnergySet.log_partition(exp_logits, self._ws("lse", (k, n), exp_logits),
                                       self._ws("lse64", (k, n), exp_logits, torch.float64),
                                       self._ws("class_sum", (k, (c + 1) // 2, n), exp_logits))

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
        picked = self.energy_set.picked(buffer, self.bound)
        exp_new = buffer.mul_(self.scale).exp_()
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
        new_e = torch.mul(new_z, self.scale, out=ws("new_e", (k, m, n), z)).exp_()
        # The picked sums change by the targets' cells of the changed rows (integers: exact):
        # per row, its change summed over each class's samples, then the row's own class.
        diff = torch.sub(new_z, old_z, out=delta).view(-1, n)
        per_class = torch.mm(diff, self.energy_set.one_hot(classes, z).t())  # [K * M, classes]
        change = per_class.gather(1, (f.row % classes).view(-1, 1)).view(k, m)
        a, b, _ = self.energy_set.smoothing_weights(classes)
        if b:  # label smoothing: every class's cells, weighted (integers still)
            total = diff.view(k, m, n).sum(2, dtype=torch.float64)
            change = change.to(torch.float64) * a + total * b
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

    # ------------------------------------------------------------------------------ commit
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
        if self._fused_pending:
            assert self._fused is not None
            self._fused.commit(accepted)
        elif self.sync_free:
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
        if self.picked is not None and (self._fused_pending or not self._shift and (
                self._dense or self._last_rows is not None)):
            picked = self.picked[part]
            picked.copy_(torch.where(accepted, self._candidate_picked, picked))
        for i, index, coef in self._flips:
            change = coef.view(k, -1).mul_(accepted.unsqueeze(1)).view(-1)
            self.net.weights[i].view(-1).index_add_(0, index.view(-1), change)
        energies = self.energies[part]
        energies.copy_(torch.where(accepted, self._candidate, energies))
        if self._candidate_margin is not None and self.margin_sums is not None:
            sums = self.margin_sums[part]
            sums.copy_(torch.where(accepted, self._candidate_margin, sums))
        if self.partition is not None and not self._fused_pending:  # a step of the tensor path
            self._refresh_partition(part)
        self._candidate_margin = None
        self._fused_pending = False
        self._rows, self._dense, self._flips, self._candidate = [], [], [], None
        self._last_rows = self._lowrank_update = None

    def _commit_selected(self, accepted: Tensor) -> None:
        """Write the accepted chains' rows and dense caches, put the rejected chains' last-layer
        rows back: index operations on the chains that need them (a host sync for the count)."""
        part, k = self._part, len(accepted)
        sel = accepted.nonzero().squeeze(1)
        if len(sel):
            for i, rows, _, new_z, _ in self._rows:
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
        for i, rows, old_z, new_z, _ in self._rows:
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
