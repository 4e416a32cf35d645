"""Incremental energies: a sign-flip candidate evaluated by updating cached pre-activations.

For a model that is a chain of :class:`~mcmc_core.layers.BinaryLinear` layers (with only
``Flatten``, ``Identity`` or ``Dropout`` between them: the binary MLP), layer ``l`` computes the
integer pre-activation ``Z_l = W_l A_l`` of its ±1 input ``A_l = sign(Z_{l-1})`` (``A_0 =
sign(x)``), and the logits are ``Z_last * scale``. :class:`LinearChainEnergy` keeps ``A_l`` and
``Z_l`` for the whole energy set (stored transposed, ``units x samples``, so the rows a flip
touches are contiguous) and evaluates a candidate from its flips alone:

* flipping ``W_l[r, c]`` adds ``2 w_new A_l[c, :]`` (= ``-2 w_old x``) to row ``r`` of ``Z_l``:
  a gather of the flipped input rows and an ``index_add`` into the affected output rows;
* a layer whose input signs changed on rows ``U`` gets ``W_new[:, U] (A_new - A_old)[U]``, a
  rank-``|U|`` update (with ``proposal="all"`` its own flips add ``(W_new - W_old) A_old``);
* the loss is computed from the updated logits by the energy's own loss function.

Everything is an integer below ``2**24`` held in float32, so the caches equal a fresh forward
exactly, and so do the logits (``Z * scale`` is the same float multiply as the layer's).
:meth:`LinearChainEnergy.accept` commits the candidate's rows; :meth:`~LinearChainEnergy.reject`
drops them (the sampler restores the weights; nothing is recomputed).

The caches are rebuilt from the weights whenever they may be stale: on first use, after
:meth:`~IncrementalEnergy.invalidate`, and whenever a weight tensor's storage or version counter
changed other than through propose/accept/reject (``load_state_dict``, a swap of ``.data``).
Writes through ``param.data`` bypass the version counter: call ``invalidate()`` after them (the
sampler's ``invalidate_energy()`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mcmc_core.layers import BinaryLinear, sign

__all__ = ["IncrementalEnergy", "LinearChainEnergy", "linear_chain"]

Flips = Sequence[tuple[Tensor, Tensor]]

# Leaf modules that are the identity on a 2-D activation in eval mode (the energy runs in eval).
_PASS_THROUGH = (nn.Flatten, nn.Identity, nn.Dropout)


class IncrementalEnergy:
    """An energy closure that can also evaluate a candidate from the flips that made it.

    :class:`~mcmc_core.optim.SignFlipSampler` (with ``incremental=True`` and a cached energy) uses
    it instead of calling the closure for the candidate. Per step::

        if closure.prepare():        # caches match the current weights; False: not supported
            ...apply the flips to the weights...
            candidate = closure.propose(flips)
            closure.accept()         # or: ...flip the weights back...; closure.reject()

    Calling the object itself is always the plain full evaluation.
    """

    def __call__(self) -> float:
        """The energy of the current weights by a full forward pass (never uses the caches)."""
        raise NotImplementedError

    def prepare(self) -> bool:
        """Make the caches match the current weights (rebuild if needed); False: unsupported."""
        raise NotImplementedError

    def propose(self, flips: Flips) -> float:
        """Energy of the weights as they are now, given that they differ from the prepared state
        exactly by ``flips``: ``(param, flat indices)`` pairs, each param at most once. Params that
        are not in the model do not change its output and are ignored."""
        raise NotImplementedError

    def accept(self) -> None:
        """The proposed candidate became the current state: commit its caches."""
        raise NotImplementedError

    def reject(self) -> None:
        """The candidate was rejected and the weights restored: discard its caches."""
        raise NotImplementedError

    def is_current(self) -> bool:
        """Whether the caches are valid for the weights as they are now."""
        raise NotImplementedError

    def swap_cache(self, other: IncrementalEnergy) -> None:
        """Exchange caches with ``other`` right after the two models exchanged their weights
        (parallel tempering); both must have been current before the exchange. Caches that
        cannot be exchanged (another kind, another target) are invalidated instead."""
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget the caches: the next :meth:`prepare` rebuilds them."""
        raise NotImplementedError


def linear_chain(model: nn.Module) -> list[BinaryLinear] | None:
    """The :class:`BinaryLinear` layers of ``model`` in module order, if it looks like a chain.

    Every leaf module must be a ``BinaryLinear``, ``Flatten``, ``Identity`` or ``Dropout``, and
    the model's parameters must be exactly those layers' weights. The order in which ``forward``
    applies them is not visible here: :class:`LinearChainEnergy` checks it once against a real
    forward pass.

    Returns:
        The layers, or None when the model has any other leaf or parameter.
    """
    layers: list[BinaryLinear] = []
    for module in model.modules():
        if isinstance(module, BinaryLinear):
            layers.append(module)
        elif module._modules:  # a container: what its forward does is checked later
            continue
        elif not isinstance(module, _PASS_THROUGH):
            return None
    weights = {id(layer.weight) for layer in layers}
    if not layers or {id(p) for p in model.parameters()} != weights or (
            next(model.buffers(), None) is not None):
        return None
    return layers


class LinearChainEnergy(IncrementalEnergy):
    """Incremental energy of a chain of binary linear layers on a fixed energy set.

    Built by :class:`~mcmc_core.energy.FullEnergy` for models :func:`linear_chain` accepts. On
    the first :meth:`prepare` the chain is computed from the cached input signs and its logits
    are compared (exactly) with the model's own forward pass; if they differ the model is not
    what it looks like and :meth:`prepare` returns False from then on (the sampler falls back to
    full passes).

    Args:
        model: the binary model.
        layers: its layers in the order ``forward`` applies them (see :func:`linear_chain`).
        target: the energy set and loss, e.g. a :class:`~mcmc_core.energy.FullEnergy`:
            ``target.logits(model)`` gives the model's ``(N, classes)`` logits by a full forward,
            ``target.input_signs_t()`` the ``(features, N)`` signs of the flattened inputs
            (shared by every replica), ``target.loss_t(logits_t)`` the energy of ``(classes, N)``
            contiguous logits (one function for both paths, so they give identical numbers).
    """

    def __init__(self, model: nn.Module, layers: Sequence[BinaryLinear], target: Any) -> None:
        self.model, self.layers, self.target = model, list(layers), target
        self.weights = [layer.weight for layer in self.layers]
        self._index = {id(w): i for i, w in enumerate(self.weights)}
        self.supported: bool | None = None  # None until checked against a real forward
        self.energy: float | None = None  # of the cached state
        self._act: list[Tensor] = []  # A_l, (in_l, N); _act[0] is the shared input
        self._pre: list[Tensor] = []  # Z_l, (out_l, N)
        self._pending: tuple[list[tuple[int, Tensor | None, Tensor, Tensor | None]], float] | None
        self._pending = None
        self._fingerprint: tuple[tuple[int, int], ...] | None = None

    def __call__(self) -> float:
        return self.target.loss_t(self.target.logits(self.model).t().contiguous())

    def _current_fingerprint(self) -> tuple[tuple[int, int], ...]:
        return tuple((w.data_ptr(), w._version) for w in self.weights)

    def is_current(self) -> bool:
        return self._fingerprint is not None and self._fingerprint == self._current_fingerprint()

    def invalidate(self) -> None:
        self._fingerprint, self._pending = None, None

    @torch.no_grad()
    def _rebuild(self) -> None:
        act = self.target.input_signs_t()
        dims_ok = act.shape[0] == self.layers[0].in_features and all(
            a.out_features == b.in_features for a, b in zip(self.layers, self.layers[1:]))
        if not dims_ok:
            self.supported = False
            return
        acts, pres = [act], []
        for i, w in enumerate(self.weights):
            pres.append(w @ acts[-1])  # exact: integer sums of ±1 products
            if i < len(self.weights) - 1:
                acts.append(sign(pres[-1]))
        logits = pres[-1] * self.layers[-1].scale
        if self.supported is None:
            full = self.target.logits(self.model)
            self.supported = full.shape == logits.t().shape and torch.equal(full, logits.t())
            if not self.supported:
                return
        self._act, self._pre = acts, pres
        self.energy = self.target.loss_t(logits)
        self._pending = None
        self._fingerprint = self._current_fingerprint()

    def prepare(self) -> bool:
        if self.supported is False:
            return False
        if not self.is_current():
            self._rebuild()
        return bool(self.supported)

    @torch.no_grad()
    def propose(self, flips: Flips) -> float:
        by_layer = {self._index[id(p)]: idx for p, idx in flips if id(p) in self._index}
        n = len(self.weights)
        pending: list[tuple[int, Tensor | None, Tensor, Tensor | None]] = []
        d_rows: Tensor | None = None  # rows of the current layer's input that changed (None: all)
        d_act: Tensor | None = None  # A_new - A_old on those rows (values 0, ±2), or None
        for i in range(min(by_layer, default=n), n):
            idx = by_layer.get(i)
            if d_act is None and idx is None:
                continue  # this layer's output is unchanged
            w, z, last = self.weights[i], self._pre[i], i == n - 1
            rows: Tensor | None = None  # rows of Z_i in `new` (None: all of them)
            if d_act is not None:
                new = torch.addmm(z, w if d_rows is None else w.index_select(1, d_rows), d_act)
            if idx is not None:
                r, c = idx // w.shape[1], idx % w.shape[1]
                delta = self._act[i].index_select(0, c).mul_(w.view(-1)[idx].mul(2).unsqueeze(1))
                if d_act is not None:
                    new.index_add_(0, r, delta)
                elif last:
                    new = z.index_add(0, r, delta)
                else:
                    rows, inverse = torch.unique(r, return_inverse=True)
                    new = z.index_select(0, rows).index_add_(0, inverse, delta)
            signs = None
            if not last:
                signs = sign(new)
                old = self._act[i + 1]
                d_act = signs - (old if rows is None else old.index_select(0, rows))
                d_rows = rows
                if rows is None:  # keep only the units whose sign changed for some sample
                    changed = d_act.any(1).nonzero().squeeze(1)
                    if len(changed) == 0:
                        d_act = None
                    elif len(changed) < len(d_act):
                        d_rows, d_act = changed, d_act.index_select(0, changed)
            pending.append((i, rows, new, signs))
        if pending and pending[-1][0] == n - 1:
            energy = self.target.loss_t(pending[-1][2] * self.layers[-1].scale)
        else:
            energy = self.energy  # the logits did not change
        self._pending = (pending, energy)  # type: ignore[assignment]
        return energy  # type: ignore[return-value]

    def accept(self) -> None:
        if self._pending is None:
            raise RuntimeError("accept() without a proposed candidate")
        pending, self.energy = self._pending
        for i, rows, new, signs in pending:
            if rows is None:
                self._pre[i] = new
                if signs is not None:
                    self._act[i + 1] = signs
            else:
                self._pre[i].index_copy_(0, rows, new)
                self._act[i + 1].index_copy_(0, rows, signs)  # type: ignore[arg-type]
        self._pending = None
        self._fingerprint = self._current_fingerprint()

    def reject(self) -> None:
        self._pending = None
        self._fingerprint = self._current_fingerprint()

    def swap_cache(self, other: IncrementalEnergy) -> None:
        if not isinstance(other, LinearChainEnergy) or other.target is not self.target:
            self.invalidate()  # caches of another target are no use here
            other.invalidate()
            return
        self._act, other._act = other._act, self._act
        self._pre, other._pre = other._pre, self._pre
        self.energy, other.energy = other.energy, self.energy
        for energy in (self, other):
            energy._pending = None
            energy._fingerprint = energy._current_fingerprint()

    def state_tensors(self) -> tuple[list[Tensor], list[Tensor]]:
        """The cached ``(A_l, Z_l)`` lists (transposed, ``units x N``), for tests and debugging."""
        return self._act, self._pre
