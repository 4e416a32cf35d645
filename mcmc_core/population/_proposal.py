"""Proposals and acceptance of population steps, drawn a block of steps at a time.

Every chain draws its flips and acceptance uniforms from its own stream (:mod:`._random`), so a
chain's moves do not depend on the other chains in the batch. With ``proposal="layer"`` all
chains flip the same layer at a given step (which one is a uniform pseudo-random function of the
step and a ``layer_seed``, not of any chain), so a step is one batched update of one layer,
padded only where chains' flip counts differ. Drawing a block of ``B`` steps costs the same few
tensor operations as drawing one; the draws are laid out ``[B, K, ...]`` so that a step's slice
is contiguous.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mcmc_core.population._random import (
    MAX_J,
    MAX_ROUND,
    ChainRandom,
    draw_bits,
    mix64,
    slot,
    slot_offsets,
    step_offsets,
)

__all__ = [
    "LayerFlips",
    "ProposalBlock",
    "acceptance_probability_t",
    "acceptance_thresholds",
    "distinct_indices",
    "layer_schedule",
]

# Slot purposes: 0 = the acceptance uniform, 1 + l = flip indices of layer l (1 for every layer
# with proposal="layer": a step flips one layer).
DENSE_ROUND = MAX_ROUND - 1  # the round whose slots key the "random permutation" draws
_BLOCK_ELEMENTS = 1 << 20  # bound on the random draws held per block


@dataclass
class LayerFlips:
    """The flips of one layer in one step, for all ``K`` chains, padded to ``M`` per chain.

    All indices are global: they already include the chain's offset into the stacked tensors.

    Attributes:
        weight: ``[K, M]`` int64 indices into ``W_l.view(-1)`` (``W_l`` is ``[K, out, in]``).
        row: ``[K, M]`` int64 indices into ``Z_l.view(-1, N)``: the touched output rows.
        source: ``[K, M]`` int64 rows holding the flipped weights' inputs: of the shared
            ``[in_0, N]`` inputs for layer 0, else of ``Z_{l-1}.view(-1, N)`` (their signs).
        column: ``[K, M]`` int64, for a hidden layer: ``W_{l+1}.view(-1)`` index of the column
            of unit ``row`` in output 0 of the next layer (None for the last layer).
        valid: ``[K, M]`` bool, or None when every entry is valid. A chain's valid entries are
            distinct; the others are padding and flip nothing.
    """

    weight: Tensor
    row: Tensor
    source: Tensor
    column: Tensor | None
    valid: Tensor | None


def layer_schedule(layer_seed: int, start: int, length: int, n_layers: int) -> list[int]:
    """The layer flipped at steps ``start .. start + length - 1`` with ``proposal="layer"``:
    uniform pseudo-random (splitmix64 of the step) and the same for every chain."""
    if n_layers == 1:
        return [0] * length
    key = mix64(torch.tensor([layer_seed], dtype=torch.int64))
    bits = draw_bits(key, step_offsets(start, length), slot_offsets([slot(1, 0)]))
    return (bits.view(-1) % n_layers).tolist()


def _later_duplicates(idx: Tensor, valid: Tensor) -> Tensor:
    """Bool, shaped like ``idx`` (``[..., M]``): valid entries equal to an earlier valid entry
    of the same row."""
    m = idx.shape[-1]
    pad = -1 - torch.arange(m, device=idx.device)  # distinct negative values for padding
    values, order = torch.where(valid, idx, pad).sort(dim=-1, stable=True)
    dup = torch.zeros_like(valid)
    # Stable sort: within a run of equal values the earliest entry comes first, the rest repeat.
    dup.scatter_(-1, order[..., 1:], values[..., 1:] == values[..., :-1])
    return dup


def distinct_indices(keys: Tensor, steps: Tensor, purpose: int, bits: Tensor, numel: int,
                     counts: list[int]) -> Tensor:
    """Flat indices ``[K, B, M]`` into a layer of ``numel`` weights: for each chain ``k`` and
    step, the first ``counts[k]`` are a uniformly random set of distinct indices, the rest
    padding.

    Sparse draws (``4 * count <= numel``) take ``bits % numel`` and redraw entries that repeat an
    earlier one from fresh slots until none does. The process treats all index values alike,
    so the resulting set is uniform; an entry only depends on the entries before it, so a chain's
    set does not depend on ``M`` or on the other chains. Dense draws (``4 * count > numel``) take
    the first ``M`` entries of a random permutation (argsort of one random key per weight).

    Args:
        keys: ``[K]`` the chains' stream keys (:attr:`ChainRandom.keys`).
        steps: ``[B]`` the steps' :func:`step_offsets`.
        purpose: the slot purpose of these draws.
        bits: ``[K, B, M]`` random bits of the round-0 slots ``slot(j, purpose)``.
        numel: size of the layer.
        counts: valid entries per chain.
    """
    m = bits.shape[-1]
    idx = bits % numel
    dense = [k for k, c in enumerate(counts) if c > 1 and 4 * c > numel]
    if m > 1 and len(dense) < len(counts):
        j = torch.arange(m, device=bits.device)
        valid = j < torch.tensor(counts, device=bits.device).view(-1, 1, 1)  # [K, 1, M]
        if dense:
            valid[dense] = False
        valid = valid.expand(idx.shape)
        for round in range(1, DENSE_ROUND + 1):
            dup = _later_duplicates(idx, valid)
            if not bool(dup.any()):
                break
            if round == DENSE_ROUND:
                raise RuntimeError("could not draw distinct flips (too many collisions).")
            slots = slot_offsets([slot(i, purpose, round) for i in range(m)], bits.device)
            idx = torch.where(dup, draw_bits(keys, steps, slots) % numel, idx)
    for k in dense:
        if numel > MAX_J:
            raise ValueError(f"a layer of {numel} weights is too large for flip counts above "
                             f"a quarter of it (at most {MAX_J}).")
        slots = slot_offsets(torch.arange(numel, device=bits.device)
                             | slot(0, purpose, DENSE_ROUND), bits.device)
        idx[k] = draw_bits(keys[k : k + 1], steps, slots)[0].argsort(dim=-1)[:, :m]
    return idx


def acceptance_probability_t(delta: Tensor, kt: Tensor, rule: str) -> Tensor:
    """Elementwise :func:`mcmc_core.functional.acceptance_probability` on float64 tensors.

    ``metropolis``: ``min(1, exp(-dE / kT))``; ``barker``: ``1 / (1 + exp(dE / kT))``; at
    ``kT == 0`` both are greedy (a tie gives 1 and 1/2).
    """
    z = torch.where(delta == 0, torch.zeros_like(delta), delta / kt)  # 0/0 -> 0
    if rule == "metropolis":
        return torch.exp(torch.clamp(-z, max=0.0))
    return torch.sigmoid(-z)


def acceptance_thresholds(u: Tensor, kt: Tensor, rule: str) -> tuple[Tensor, Tensor | None]:
    """``(threshold, tie)`` such that a move is accepted iff ``dE < threshold``, or ``dE <= 0``
    (Metropolis), or ``dE == 0 and tie`` (Barker): the decision
    ``u < acceptance_probability(dE, kT)`` up to rounding, with the logarithms taken once per
    block instead of an exponential per step.

    Metropolis: ``u < exp(-dE / kT)`` iff ``dE < -kT log u``. Barker:
    ``u < 1 / (1 + exp(dE / kT))`` iff ``dE < kT log((1 - u) / u)``; a tie is accepted with
    probability 1/2 (``u < 1/2``), also at ``kT == 0``. ``u`` must lie in ``(0, 1)``.
    """
    if rule == "metropolis":
        return kt * -torch.log(u), None
    return kt * (torch.log1p(-u) - torch.log(u)), u < 0.5


class ProposalBlock:
    """Everything random of steps ``start .. start + length - 1`` of every chain.

    Args:
        random: the chains' streams.
        start: the first step.
        length: number of steps.
        layers: the layer flipped at each step (``proposal="layer"``), or None for every layer.
        counts: ``counts[k][l]``, flips of layer ``l`` in a proposal of chain ``k``.
        shapes: ``(out, in)`` of every layer.
        kt: ``[K, length]`` float64, ``k T`` of every chain at each step.
        rule: the acceptance rule.
    """

    def __init__(self, random: ChainRandom, start: int, length: int, layers: list[int] | None,
                 counts: list[list[int]], shapes: list[tuple[int, int]], kt: Tensor,
                 rule: str) -> None:
        device = random.keys.device
        n_layers, k = len(shapes), len(counts)
        self.start, self.length, self.layers = start, length, layers
        most = [max(c[i] for c in counts) for i in range(n_layers)]
        purposes = [1] * n_layers if layers is not None else [1 + i for i in range(n_layers)]
        slots = [slot(0, 0)]
        starts = []
        for i in range(n_layers):
            starts.append(len(slots) if layers is None or i == 0 else 1)
            if layers is None or i == 0:
                slots += [slot(j, purposes[i]) for j in range(max(most) if layers else most[i])]
        steps = step_offsets(start, length, device)
        bits = draw_bits(random.keys, steps, slot_offsets(slots, device))  # [K, B, S]
        u = ChainRandom.uniform(bits[:, :, 0])
        threshold, tie = acceptance_thresholds(u, kt, rule)
        self.threshold = threshold.t().contiguous()  # [B, K]
        self.tie = None if tie is None else tie.t().contiguous()
        chain = torch.arange(k, device=device).view(-1, 1, 1)
        self._flips: list[tuple[Tensor, ...]] = []
        self._valid: list[Tensor | None] = []
        for i, (out, fan_in) in enumerate(shapes):
            if layers is not None and i not in layers:
                self._flips.append(())
                self._valid.append(None)
                continue
            layer_counts = [c[i] for c in counts]
            idx = distinct_indices(random.keys, steps, purposes[i],
                                   bits[:, :, starts[i] : starts[i] + most[i]], out * fan_in,
                                   layer_counts)  # [K, B, M]
            row, col = idx // fan_in, idx % fan_in
            parts = [chain * (out * fan_in) + idx, chain * out + row,
                     col if i == 0 else chain * fan_in + col]
            if i < n_layers - 1:
                next_out = shapes[i + 1][0]
                parts.append(chain * (next_out * out) + row)
            self._flips.append(tuple(p.transpose(0, 1).contiguous() for p in parts))  # [B, K, M]
            valid = None
            if min(layer_counts) < most[i]:
                valid = (torch.arange(most[i], device=device)
                         < torch.tensor(layer_counts, device=device).unsqueeze(1))  # [K, M]
            self._valid.append(valid)
        self._host: dict[int, tuple] = {}

    @staticmethod
    def block_length(k: int, counts: list[list[int]], numels: list[int]) -> int:
        """Steps per block: up to 64, keeping the draws of a block near ``2**20`` numbers."""
        per_step = k * (1 + sum(max(c[i] for c in counts) for i in range(len(numels))))
        dense = max((n for i, n in enumerate(numels)
                     if any(c[i] > 1 and 4 * c[i] > n for c in counts)), default=0)
        return max(1, min(64, _BLOCK_ELEMENTS // max(per_step, dense, 1)))

    def flips(self, b: int | Tensor, layer: int | None = None) -> dict[int, LayerFlips]:
        """``{layer: LayerFlips}`` of step ``start + b``. ``b`` may also be a one-element int64
        tensor on the draws' device (read there, not on the host: what a CUDA graph replays);
        then with ``proposal="layer"`` the step's ``layer`` must be given."""
        if self.layers is None:
            layers: Sequence[int] = range(len(self._flips))
        elif isinstance(b, Tensor):
            if layer is None:
                raise ValueError("flips(b) with a tensor b needs the step's layer.")
            layers = (layer,)
        else:
            layers = (self.layers[b],)
        out = {}
        for i in layers:
            parts = [_at(p, b) for p in self._flips[i]]
            column = parts[3] if len(parts) > 3 else None
            out[i] = LayerFlips(parts[0], parts[1], parts[2], column, self._valid[i])
        return out

    def host_draws(self, layer: int) -> tuple:
        """Numpy views of a CPU block's draws for the fused kernel: ``(weight, row, source,
        valid, threshold, tie)``, the first three ``[B, K, M]`` (:class:`LayerFlips`' fields
        of every step), ``valid`` ``[K, M]`` or None, ``threshold`` ``[B, K]``, ``tie``
        ``[B, K]`` or None. Made once per block and layer."""
        draws = self._host.get(layer)
        if draws is None:
            weight, row, source = (t.numpy() for t in self._flips[layer][:3])
            valid = self._valid[layer]
            draws = self._host[layer] = (
                weight, row, source, None if valid is None else valid.numpy(),
                self.threshold.numpy(), None if self.tie is None else self.tie.numpy())
        return draws

    def threshold_at(self, b: int | Tensor) -> Tensor:
        """The acceptance thresholds of step ``start + b`` (``b`` as in :meth:`flips`): ``[K]``."""
        return _at(self.threshold, b)

    def tie_at(self, b: int | Tensor) -> Tensor | None:
        """Barker's level-move decisions of step ``start + b``, ``[K]``; None for Metropolis."""
        return None if self.tie is None else _at(self.tie, b)

    def clone(self) -> ProposalBlock:
        """A copy with tensors of its own (see :meth:`copy_`)."""
        block = copy.copy(self)
        block._host = {}
        block.threshold = self.threshold.clone()
        block.tie = None if self.tie is None else self.tie.clone()
        block._flips = [tuple(p.clone() for p in parts) for parts in self._flips]
        block._valid = [None if v is None else v.clone() for v in self._valid]
        return block

    def copy_(self, other: ProposalBlock) -> None:
        """Take ``other``'s draws, a block of the same population layout, into this block's
        tensors in place: their addresses, which a captured CUDA graph reads, stay. A layer
        this block has no draws of yet (``proposal="layer"``) gets new tensors."""
        if other.threshold.shape != self.threshold.shape or (other.tie is None) != (
                self.tie is None) or len(other._flips) != len(self._flips):
            raise ValueError("copy_() needs a block of the same population layout.")
        self.start, self.length, self.layers = other.start, other.length, other.layers
        self._host = {}
        self.threshold.copy_(other.threshold)
        if self.tie is not None and other.tie is not None:
            self.tie.copy_(other.tie)
        for i, parts in enumerate(other._flips):
            if not parts:
                continue
            if not self._flips[i]:
                self._flips[i] = tuple(p.clone() for p in parts)
                valid = other._valid[i]
                self._valid[i] = None if valid is None else valid.clone()
                continue
            for mine, theirs in zip(self._flips[i], parts, strict=True):
                mine.copy_(theirs)
            mine_valid, theirs_valid = self._valid[i], other._valid[i]
            if mine_valid is not None and theirs_valid is not None:
                mine_valid.copy_(theirs_valid)


def _at(t: Tensor, b: int | Tensor) -> Tensor:
    """``t[b]``; for a one-element tensor ``b``, gathered on ``t``'s device."""
    return t[b] if not isinstance(b, Tensor) else t.index_select(0, b).squeeze(0)
