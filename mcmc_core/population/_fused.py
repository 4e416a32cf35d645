"""The fused incremental step on the CPU: one compiled pass per proposal instead of dozens of
small tensor operations (numba; optional, :func:`available`).

It computes what :class:`~mcmc_core.population.ChainCache`'s tensor path computes, with the same
bits: pre-activations are integers (exact in any order), ``exp(s Z_last)`` is read from a table
built by the same tensor operation (:meth:`ChainCache.tables`), the per-sample sums over the
classes follow :meth:`EnergySet.class_sum`'s fixed pairwise order, and the logarithms and the
sum over the samples are left to torch (:meth:`EnergySet.log_partition_of`). Unlike the tensor
path it only touches what a flip changes: a hidden flip recomputes the last layer on the samples
whose hidden units changed (10-20 % of them for a few flips of ``sign`` units, more with a
smooth activation), not on all of them. Large logits (:meth:`StackedMLP.needs_shift`) are
shifted by each sample's largest pre-activation, on the integers, as
:meth:`EnergySet.shifted_sums` does: no exponentials are cached then, and every changed sample's
class sum is recomputed from its pre-activations.

Covered: binary MLPs with at most one hidden layer (the last layer, or the hidden layer whose
next layer is the last), one layer flipped per step (``proposal="layer"``), the hidden-margin
term, the smooth hidden activation (a table of integers). Everything else takes the tensor path.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import Tensor

__all__ = ["FusedStep", "available"]


def available() -> bool:
    """Whether numba is installed (the fused kernel's only requirement)."""
    return importlib.util.find_spec("numba") is not None


_KERNELS = ("_tree_sum_rows", "_shift_block", "_new_rows", "_new_last_sparse", "_new_last_dense",
            "propose_hidden", "commit_hidden",
            "propose_last", "commit_last", "accept")
_compiled = False


def _compile() -> None:
    """Replace the kernels by their numba versions (compiled at their first call and cached on
    disk), helpers first so that the kernels calling them see compiled ones. numba is imported
    here, not with the package: it costs most processes nothing."""
    global _compiled
    if _compiled:
        return
    import numba

    for name in _KERNELS:
        globals()[name] = numba.njit(cache=True, nogil=True)(globals()[name])
    _compiled = True


_TILE = 512  # samples per tile of the class sums (a [C, _TILE] block stays in L1/L2)


def _tree_sum_rows(block, c, width):  # type: ignore[no-untyped-def]
    """The rows of ``block[:c, :width]`` summed elementwise in :meth:`EnergySet.class_sum`'s
    pairwise order (halves added, an odd one carried), into row 0."""
    while c > 1:
        h = c // 2
        for i in range(h):
            for t in range(width):
                block[i, t] = block[i, t] + block[i + h, t]
        if c % 2:
            for t in range(width):
                block[h, t] = block[2 * h, t]
        c = h + c % 2


def _shift_block(block, c, width, tables, tops):  # type: ignore[no-untyped-def]
    """``block[:c, :width]`` holds pre-activations: replace them by ``exp(s (z - top))`` of
    each column's largest ``top`` (:meth:`EnergySet.shifted_sums`, from ``tables``) and write
    ``s top`` into ``tops[:width]``."""
    _, shifted, linear, bound = tables
    for t in range(width):  # row by row: vectorised over the samples
        tops[t] = block[0, t]
    for i in range(1, c):
        for t in range(width):
            tops[t] = max(tops[t], block[i, t])
    for i in range(c):
        for t in range(width):
            block[i, t] = shifted[int(block[i, t] - tops[t]) + 2 * bound]
    for t in range(width):
        tops[t] = linear[int(tops[t]) + bound]


def _new_rows(k, z, src, src_signs, act, weights, weight, row, source, valid, new_z, first,
              coef):  # type: ignore[no-untyped-def]
    """Chain ``k``'s flipped rows: ``coef``, ``first`` (an entry is the first of its row) and
    ``new_z`` (each first entry's row with the changes of all entries of that row). The rows
    of ``src`` are the flipped weights' inputs or, with ``src_signs``, pre-activations whose
    activations are: ``sign`` (``act`` empty) or ``act[Z + bound]`` (a hidden activation
    table, :class:`~mcmc_core.population.HiddenActivation`)."""
    m, n = row.shape[1], z.shape[1]
    for j in range(m):
        coef[k, j] = -2.0 * weights[weight[k, j]] if valid[k, j] else 0.0
        first[k, j] = True
        for i in range(j):
            if row[k, i] == row[k, j]:
                first[k, j] = False
                break
    for j in range(m):
        if not first[k, j]:
            continue
        out, old = new_z[k, j], z[row[k, j]]
        for t in range(n):
            out[t] = old[t]
        for i in range(j, m):
            if row[k, i] != row[k, j] or coef[k, i] == 0.0:
                continue
            c, a = coef[k, i], src[source[k, i]]
            if src_signs and act.shape[0]:
                mid = act.shape[0] // 2  # act[Z + mid]
                for t in range(n):
                    out[t] += c * act[int(a[t]) + mid]
            elif src_signs:
                for t in range(n):
                    out[t] += np.float32(c if a[t] >= 0 else -c)
            else:
                for t in range(n):
                    out[t] += c * a[t]


def _new_last_sparse(k, z1, w1, row, first, d, any_change, changed, starts, moved, step,
                     new_z1):  # type: ignore[no-untyped-def]
    """Chain ``k``'s last pre-activations on the samples whose hidden units changed
    (``any_change``; their indices packed into ``changed[k]``, the new values into
    ``new_z1[k]``), from per sample the units that moved and how (``d``): few units per sample,
    as flips of ``sign`` units move them. Returns the count of changed samples."""
    m, n = d.shape
    n_classes, hidden = z1.shape[1], w1.shape[2]
    count, p = 0, 0
    for t in range(n):
        if not any_change[t]:
            continue
        changed[k, count] = t
        starts[count] = p
        for j in range(m):
            if first[k, j] and d[j, t] != 0:
                moved[p] = row[k, j] % hidden
                step[p] = d[j, t]
                p += 1
        count += 1
    starts[count] = p
    cols = changed[k]
    for c in range(n_classes):
        zc, wc, nz = z1[k, c], w1[k, c], new_z1[k, c]
        for i in range(count):
            z = zc[cols[i]]
            for q in range(starts[i], starts[i + 1]):
                z += wc[moved[q]] * step[q]
            nz[i] = z
    return count


def _new_last_dense(k, z1, w1, row, first, d, any_change, changed, packed,
                    new_z1):  # type: ignore[no-untyped-def]
    """:func:`_new_last_sparse` where most changed samples moved on every flipped unit (a
    smooth activation): per unit, one vectorised pass over the changed samples (``packed``
    ``[M * N]`` holds each unit's moves on them)."""
    m, n = d.shape
    n_classes, hidden = z1.shape[1], w1.shape[2]
    count = 0
    for t in range(n):
        if any_change[t]:
            changed[k, count] = t
            count += 1
    cols = changed[k]
    for j in range(m):
        if first[k, j]:
            dj = d[j]
            for i in range(count):
                packed[j * n + i] = dj[cols[i]]
    for c in range(n_classes):
        zc, wc, nz = z1[k, c], w1[k, c], new_z1[k, c]
        for i in range(count):
            nz[i] = zc[cols[i]]
        for j in range(m):
            if first[k, j]:
                wj, base = wc[row[k, j] % hidden], j * n
                for i in range(count):
                    nz[i] += wj * packed[base + i]
    return count


def propose_hidden(a, z0, w0, z1, w1, e1, part_sums, part_tops, tables, shift, targets,
                   act, margin, weight, row, source, valid,
                   coef, first, d, any_change, block, starts, moved, step, tops, new_z0,
                   changed, n_changed, new_z1, new_e1, new_sums, new_tops, picked_change,
                   margin_change, weights_ab):  # type: ignore[no-untyped-def]
    """Flips of the hidden layer of a one-hidden-layer MLP, for the chains of a part.

    ``a`` the inputs ``[in, N]``; ``z0`` ``[K * H, N]`` and ``w0`` (flat) the whole hidden
    layer; ``z1``, ``w1``, ``e1``, ``part_sums`` this part's last layer ``[K', C, N]``,
    ``[K', C, H]``, its exponentials and per-sample class sums ``[K', N]`` (with ``shift``, no
    exponentials but the samples' ``s top``, ``part_tops``: :meth:`EnergySet.shifted_sums`);
    ``tables`` the exponentials and products by ``s`` of integers (:meth:`ChainCache.tables`);
    ``act`` the hidden units' activation table (empty: ``sign``, see :func:`_new_rows`).
    The rest are the flips ``[K', M]``, work arrays (``d`` ``[M, N]`` int16, ``any_change``
    ``[N]`` bool, ``block`` ``[C, _TILE]``, ``starts`` ``[N + 1]``, ``moved``/``step``
    ``[M * N]``, ``tops`` ``[_TILE]``) and outputs (the changed samples' columns packed first
    in ``new_z1``/``new_e1``); ``weights_ab`` the picked sums' integer weights ``(a, b)``
    (:meth:`EnergySet.smoothing_weights`)."""
    k_part, m = row.shape
    n_classes, n = z1.shape[1], z1.shape[2]
    table, bound = tables[0], tables[3]
    for k in range(k_part):
        _new_rows(k, z0, a, False, act, w0, weight, row, source, valid, new_z0, first, coef)
        any_change[:] = False
        hinge = 0
        for j in range(m):
            if not first[k, j]:
                continue
            new, old, dj = new_z0[k, j], z0[row[k, j]], d[j]
            if act.shape[0]:
                mid = act.shape[0] // 2  # act[Z + mid]
                for t in range(n):
                    dj[t] = np.int16(act[int(new[t]) + mid] - act[int(old[t]) + mid])
            else:
                for t in range(n):
                    dj[t] = (1 if new[t] >= 0 else -1) - (1 if old[t] >= 0 else -1)
            for t in range(n):
                any_change[t] |= dj[t] != 0
            if margin > 0:
                for t in range(n):
                    hinge += (max(margin - abs(np.int32(new[t])), 0)
                              - max(margin - abs(np.int32(old[t])), 0))
        margin_change[k] = hinge
        new_sums[k, :] = part_sums[k, :]
        if shift:
            new_tops[k, :] = part_tops[k, :]
        # The changed samples' new last pre-activations (integers: exact in any order).
        if act.shape[0]:
            count = _new_last_dense(k, z1, w1, row, first, d, any_change, changed, step,
                                    new_z1)
        else:
            count = _new_last_sparse(k, z1, w1, row, first, d, any_change, changed, starts,
                                     moved, step, new_z1)
        n_changed[k] = count
        cols = changed[k]
        if not shift:
            for c in range(n_classes):
                nz, ne = new_z1[k, c], new_e1[k, c]
                for i in range(count):
                    ne[i] = table[int(nz[i]) + bound]
        for i0 in range(0, count, _TILE):  # their class sums
            width = min(_TILE, count - i0)
            source_block = new_z1 if shift else new_e1
            for c in range(n_classes):
                for i in range(width):
                    block[c, i] = source_block[k, c, i0 + i]
            if shift:
                _shift_block(block, n_classes, width, tables, tops)
                for i in range(width):
                    new_tops[k, cols[i0 + i]] = tops[i]
            _tree_sum_rows(block, n_classes, width)
            for i in range(width):
                new_sums[k, cols[i0 + i]] = block[0, i]
        picked, total = 0.0, 0.0  # sums of integers: exact, in any order
        for i in range(count):
            y = targets[cols[i]]
            picked += new_z1[k, y, i] - z1[k, y, cols[i]]
            if weights_ab[1]:
                for c in range(n_classes):
                    total += new_z1[k, c, i] - z1[k, c, cols[i]]
        picked_change[k] = picked * weights_ab[0] + total * weights_ab[1]


def commit_hidden(accepted, z0, w0, z1, e1, part_sums, part_tops, shift, weight, row, valid,
                  first, new_z0, changed, n_changed, new_z1, new_e1, new_sums,
                  new_tops):  # type: ignore[no-untyped-def]
    """Write the accepted chains' candidates of :func:`propose_hidden`."""
    k_part, m = row.shape
    n_classes = z1.shape[1]
    for k in range(k_part):
        if not accepted[k]:
            continue
        for j in range(m):
            if first[k, j]:
                z0[row[k, j], :] = new_z0[k, j, :]
            if valid[k, j]:
                w0[weight[k, j]] = -w0[weight[k, j]]
        for i in range(n_changed[k]):
            t = changed[k, i]
            for c in range(n_classes):
                z1[k, c, t] = new_z1[k, c, i]
                if not shift:
                    e1[k, c, t] = new_e1[k, c, i]
            part_sums[k, t] = new_sums[k, t]
            if shift:
                part_tops[k, t] = new_tops[k, t]


def propose_last(src, src_signs, act, z1, e1, w1, n_classes, tables, shift, targets,
                 weight, row, source, valid,
                 coef, first, block, tops, new_z, new_e, new_sums, new_tops,
                 picked_change, weights_ab):  # type: ignore[no-untyped-def]
    """Flips of the last layer, for the chains of a part: ``src`` holds the flipped weights'
    inputs (the inputs ``[in, N]``, or the previous layer's ``Z`` ``[K * H, N]`` whose
    activations, ``act`` as :func:`_new_rows`', are the inputs when ``src_signs``); ``z1``,
    ``e1`` ``[K * C, N]`` and ``w1`` (flat) the whole last layer and its exponentials (none
    with ``shift``: then ``new_tops`` gets each sample's ``s top``,
    :meth:`EnergySet.shifted_sums`); ``block`` ``[C, _TILE]`` and ``tops`` ``[_TILE]`` work
    arrays; ``weights_ab`` as :func:`propose_hidden`'s."""
    k_part, m = row.shape
    n = z1.shape[1]
    table, bound = tables[0], tables[3]
    slot = np.empty(n_classes, dtype=np.int64)
    for k in range(k_part):
        _new_rows(k, z1, src, src_signs, act, w1, weight, row, source, valid, new_z, first,
                  coef)
        slot[:] = -1
        base = (row[k, 0] // n_classes) * n_classes  # this chain's first row of z1
        picked, total = 0.0, 0.0
        for j in range(m):
            if not first[k, j]:
                continue
            cls = row[k, j] - base
            slot[cls] = j
            out, new, old = new_e[k, j], new_z[k, j], z1[row[k, j]]
            if not shift:
                for t in range(n):
                    out[t] = table[int(new[t]) + bound]
            for t in range(n):
                if targets[t] == cls:
                    picked += new[t] - old[t]
            if weights_ab[1]:
                for t in range(n):
                    total += new[t] - old[t]
        h = n_classes // 2
        for t0 in range(0, n, _TILE):
            width = min(_TILE, n - t0)
            if shift:
                for c in range(n_classes):
                    s = slot[c]
                    values = new_z[k, s] if s >= 0 else z1[base + c]
                    for t in range(width):
                        block[c, t] = values[t0 + t]
                _shift_block(block, n_classes, width, tables, tops)
                for t in range(width):
                    new_tops[k, t0 + t] = tops[t]
                _tree_sum_rows(block, n_classes, width)
            else:  # the tree's first level straight from the rows (no copy of the block)
                for i in range(h):
                    s = slot[i]
                    x = new_e[k, s] if s >= 0 else e1[base + i]
                    s = slot[i + h]
                    y = new_e[k, s] if s >= 0 else e1[base + i + h]
                    for t in range(width):
                        block[i, t] = x[t0 + t] + y[t0 + t]
                if n_classes % 2:  # the odd row, carried
                    s = slot[2 * h]
                    x = new_e[k, s] if s >= 0 else e1[base + 2 * h]
                    for t in range(width):
                        block[h, t] = x[t0 + t]
                _tree_sum_rows(block, h + n_classes % 2, width)
            for t in range(width):
                new_sums[k, t0 + t] = block[0, t]
        picked_change[k] = picked * weights_ab[0] + total * weights_ab[1]


def commit_last(accepted, w1, z1, e1, part_sums, part_tops, shift, weight, row, valid, first,
                new_z, new_e, new_sums, new_tops):  # type: ignore[no-untyped-def]
    """Write the accepted chains' candidates of :func:`propose_last`."""
    k_part, m = row.shape
    for k in range(k_part):
        if not accepted[k]:
            continue
        for j in range(m):
            if first[k, j]:
                z1[row[k, j], :] = new_z[k, j, :]
                if not shift:
                    e1[row[k, j], :] = new_e[k, j, :]
            if valid[k, j]:
                w1[weight[k, j]] = -w1[weight[k, j]]
        part_sums[k, :] = new_sums[k, :]
        if shift:
            part_tops[k, :] = new_tops[k, :]


def accept(lp, scale, n, margin_scale, has_margin, threshold, tie, has_tie, energies, picked,
           picked_change, margin_sums, margin_change, n_accepted,
           accepted):  # type: ignore[no-untyped-def]
    """The candidates' energies from ``lp`` (their log-partition sums), each chain's decision
    (as :meth:`Population._advance` decides) and the accepted chains' energies, picked and
    margin sums and acceptance counts: the same float64 operations, in the same order, as the
    tensor path's."""
    for k in range(lp.shape[0]):
        p = picked[k] + picked_change[k]
        e = (lp[k] - p * scale) / n
        ms = 0.0
        if has_margin:
            ms = margin_sums[k] + margin_change[k]
            e = e + ms * margin_scale
        delta = e - energies[k]
        ok = delta < threshold[k]
        if has_tie:
            ok = ok or (delta == 0 and tie[k])
        else:
            ok = ok or delta <= 0
        accepted[k] = ok
        if ok:
            energies[k], picked[k] = e, p
            if has_margin:
                margin_sums[k] = ms
            n_accepted[k] += 1


class FusedStep:
    """The fused kernel's side of a :class:`~mcmc_core.population.ChainCache`: work arrays,
    numpy views of the cache's tensors and the one pending candidate. The cache keeps the
    per-sample class sums (``partition``) this kernel reads and writes."""

    def __init__(self, cache) -> None:  # type: ignore[no-untyped-def]
        _compile()
        self.cache = cache
        #: The picked sums' integer weights ``(a, b)`` (:meth:`EnergySet.smoothing_weights`).
        self.weights_ab = np.array(
            cache.energy_set.smoothing_weights(cache.net.n_classes)[:2], np.float64)
        #: The hidden units' activation table (:func:`_new_rows`; empty for ``sign``).
        self.act_table = (cache.activation.tables[0].numpy() if cache.activation.smooth
                          else np.zeros(0, np.float32))
        self._arrays: dict[tuple[int, int, int], dict] = {}
        self._last: dict = {}  # the work arrays of the pending step
        self._last_views: dict[str, object] = {}  # ... and the views it used
        self._views: dict[tuple[int, ...], dict[str, object]] = {}
        self._pending: tuple | None = None

    @staticmethod
    def supports(net) -> bool:  # type: ignore[no-untyped-def]
        """Whether the kernel covers every single-layer step of ``net``."""
        return available() and net.device.type == "cpu" and len(net.weights) <= 2

    @staticmethod
    def handles(flips) -> bool:  # type: ignore[no-untyped-def]
        """One flipped layer (``proposal="layer"``)."""
        return len(flips) == 1

    def _views_of(self, part: slice) -> dict[str, object]:
        """Numpy views of the cache's tensors (whole, or this part's chains)."""
        cache, net = self.cache, self.cache.net
        # The tensors' identities: a view holds its tensor, so an id is not reused meanwhile.
        key = (part.start, part.stop, *map(id, (
            cache.energies, cache.picked, cache.margin_sums, cache.partition, cache.tops,
            cache.exp_last, *cache.pre, *net.weights)))
        views = self._views.get(key)
        if views is None:
            self._views.clear()
            n = cache.energy_set.inputs_t.shape[1]
            views = self._views[key] = {
                "inputs": cache.energy_set.inputs_t.numpy(),
                "targets": cache.energy_set.targets.numpy(),
                "pre": [z.view(-1, n).numpy() for z in cache.pre],
                "weights": [w.view(-1).numpy() for w in net.weights],
                "sums": cache.partition[part].numpy(),
                "tops": (cache.tops[part].numpy() if cache.tops is not None
                         else np.zeros((1, 1), np.float32)),
                "exp": (cache.exp_last.view(-1, n).numpy() if cache.exp_last is not None
                        else np.zeros((1, 1), np.float32)),
                "e1": (cache.exp_last[part].numpy() if cache.exp_last is not None
                       else np.zeros((1, 1, 1), np.float32)),
                "z1": cache.pre[-1][part].numpy(),
                "w1": net.weights[-1][part].numpy(),
                "energies": cache.energies[part].numpy(), "picked": cache.picked[part].numpy(),
                "margin_sums": (cache.margin_sums[part].numpy()
                                if cache.margin_sums is not None else np.zeros(0)),
            }
        return views

    def _work(self, layer: int, k: int, m: int) -> dict:
        """The work arrays of a step of ``layer`` with ``k`` chains and ``m`` flips each (and
        tensors sharing the memory of those torch reads)."""
        key = (layer, k, m)
        work = self._arrays.get(key)
        if work is None:
            n, c = self.cache.energy_set.inputs_t.shape[1], self.cache.net.n_classes
            shapes = {"valid": ((k, m), np.bool_), "coef": ((k, m), np.float32),
                      "first": ((k, m), np.bool_), "sums": ((k, n), np.float32),
                      "picked": ((k,), np.float64), "margins": ((k,), np.float64),
                      "accepted": ((k,), np.bool_), "block": ((c, _TILE), np.float32),
                      "new_tops": ((k, n), np.float32), "tile_tops": ((_TILE,), np.float32)}
            if layer == len(self.cache.net.weights) - 1:
                shapes |= {"new_z": ((k, m, n), np.float32), "new_e": ((k, m, n), np.float32)}
            else:
                shapes |= {"new_z0": ((k, m, n), np.float32), "changed": ((k, n), np.int64),
                           "n_changed": ((k,), np.int64), "new_z1": ((k, c, n), np.float32),
                           "new_e1": ((k, c, n), np.float32), "d": ((m, n), np.int16),
                           "any_change": ((n,), np.bool_), "starts": ((n + 1,), np.int64),
                           "moved": ((m * n,), np.int64), "step": ((m * n,), np.float32)}
            work = self._arrays[key] = {name: np.zeros(shape, dtype)
                                        for name, (shape, dtype) in shapes.items()}
            work["valid"][:] = True
            shift = self.cache.tops is not None
            work |= {"sums_t": torch.from_numpy(work["sums"]),
                     "tops_t": torch.from_numpy(work["new_tops"]) if shift else None,
                     "picked_t": torch.from_numpy(work["picked"]),
                     "margins_t": torch.from_numpy(work["margins"])}
        return work

    def propose(self, flips, part: slice  # type: ignore[no-untyped-def]
                ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """The candidates' class sums ``[K', N]`` and, where the logits are shifted, the
        samples' ``s top`` (float32, :meth:`EnergySet.shifted_sums`; else None), the
        picked-sum changes ``[K']`` and margin-sum changes ``[K']`` (float64; None without the
        term) for ``flips``."""
        w = self._propose_flips(flips, part)
        margin_change = w["margins_t"] if self.cache.margin_sums is not None else None
        return w["sums_t"], w["tops_t"], w["picked_t"], margin_change

    def _propose_flips(self, flips, part: slice) -> dict:  # type: ignore[no-untyped-def]
        """:meth:`_propose` of ``{layer: LayerFlips}`` (one layer)."""
        (layer, f), = flips.items()
        return self._propose(layer, f.weight.numpy(), f.row.numpy(), f.source.numpy(),
                             None if f.valid is None else f.valid.numpy(), part)

    def _propose(self, layer: int, weight: np.ndarray, row: np.ndarray, source: np.ndarray,
                 valid: np.ndarray | None, part: slice) -> dict:
        """:meth:`propose` on numpy arrays (``[K', M]``, :class:`LayerFlips`' fields); returns
        the step's work arrays, the candidate's pending commit set."""
        cache, v = self.cache, self._views_of(part)
        k, m = row.shape
        w = self._work(layer, k, m)
        if valid is None:
            valid = w["valid"]
        coef, first, new_sums, picked = w["coef"], w["first"], w["sums"], w["picked"]
        margins, new_tops = w["margins"], w["new_tops"]
        tables, shift = cache.tables(), cache.tops is not None
        act = self.act_table
        weights_ab = self.weights_ab
        if layer == len(cache.net.weights) - 1:
            src, signs = (v["inputs"], False) if layer == 0 else (v["pre"][layer - 1], True)
            w1, z1, e1 = v["weights"][layer], v["pre"][layer], v["exp"]
            propose_last(src, signs, act, z1, e1, w1, cache.net.n_classes, tables, shift,
                         v["targets"], weight, row, source, valid, coef, first, w["block"],
                         w["tile_tops"], w["new_z"], w["new_e"], new_sums, new_tops, picked,
                         weights_ab)
            self._pending = (commit_last, (w1, z1, e1, v["sums"], v["tops"], shift, weight, row,
                                           valid, first, w["new_z"], w["new_e"], new_sums,
                                           new_tops))
        else:
            margin = cache.margin if cache.margin_sums is not None else 0
            z0, w0 = v["pre"][0], v["weights"][0]
            propose_hidden(v["inputs"], z0, w0, v["z1"], v["w1"], v["e1"], v["sums"], v["tops"],
                           tables, shift, v["targets"], act, margin, weight, row, source, valid,
                           coef, first, w["d"], w["any_change"], w["block"], w["starts"],
                           w["moved"], w["step"], w["tile_tops"], w["new_z0"], w["changed"],
                           w["n_changed"], w["new_z1"], w["new_e1"], new_sums, new_tops, picked,
                           margins, weights_ab)
            self._pending = (commit_hidden, (z0, w0, v["z1"], v["e1"], v["sums"], v["tops"],
                                             shift, weight, row, valid, first, w["new_z0"],
                                             w["changed"], w["n_changed"], w["new_z1"],
                                             w["new_e1"], new_sums, new_tops))
        self._last, self._last_views = w, v
        return w

    def commit(self, accepted: Tensor | np.ndarray) -> None:
        """Write the accepted chains' weights and caches (not the energies, picked and margin
        sums: :meth:`accept` or the cache does)."""
        if self._pending is None:
            raise RuntimeError("commit() without a proposed candidate.")
        kernel, args = self._pending
        self._pending = None
        kernel(accepted.numpy() if isinstance(accepted, Tensor) else accepted, *args)

    def advance(self, flips, part: slice, threshold: Tensor, tie: Tensor | None,
                n_accepted: Tensor) -> None:  # type: ignore[no-untyped-def]
        """A whole step of the chains ``part``: propose, the logarithms by torch, then
        :func:`accept` and :meth:`commit` (``n_accepted`` ``[K']`` is counted in place)."""
        self._propose_flips(flips, part)
        self._decide(threshold.numpy(), None if tie is None else tie.numpy(), n_accepted.numpy())

    def step(self, block, b: int, n_accepted: Tensor) -> None:  # type: ignore[no-untyped-def]
        """Step ``b`` of ``block`` (a :class:`ProposalBlock` with ``proposal="layer"``) for
        every chain: :meth:`advance` on the block's numpy views, without per-step tensors."""
        layer = block.layers[b]
        weight, row, source, valid, threshold, tie = block.host_draws(layer)
        self._propose(layer, weight[b], row[b], source[b], valid, slice(0, weight.shape[1]))
        self._decide(threshold[b], None if tie is None else tie[b], n_accepted.numpy())

    def _decide(self, threshold: np.ndarray, tie: np.ndarray | None,
                n_accepted: np.ndarray) -> None:
        """The proposed step's logarithms (torch), :func:`accept` and :meth:`commit`."""
        cache, w, v = self.cache, self._last, self._last_views
        lp = cache.log_partition_of(w["sums_t"], w["tops_t"])
        accepted, has_tie = w["accepted"], tie is not None
        accept(lp.numpy(), cache.picked_scale(), w["sums"].shape[1], cache.margin_scale(),
               cache.margin_sums is not None, threshold, tie if has_tie else accepted, has_tie,
               v["energies"], v["picked"], w["picked"], v["margin_sums"], w["margins"],
               n_accepted, accepted)
        self.commit(accepted)
