"""The fixed target as the batched kernel sees it (:class:`EnergySet`): the binarized inputs
transposed, the targets, and the mean cross-entropy of ``K`` chains from their last integer
pre-activations; :class:`~mcmc_core.population.ChainCache` keeps those up to date (the fast,
incremental kernel of the energy)."""

from __future__ import annotations

import torch
from torch import Tensor

from mcmc_core.data import Split
from mcmc_core.energy import fixed_subset, needs_shift
from mcmc_core.layers import sign

__all__ = ["EnergySet"]


class EnergySet:
    """The fixed set the energy is measured on, as the first layer sees it.

    The energy of a chain is the mean cross-entropy of its logits over this set: the whole
    ``split``, or a fixed subset of ``samples`` points drawn by a seeded permutation (the same
    subset :class:`~mcmc_core.energy.FullEnergy` takes: :func:`~mcmc_core.energy.fixed_subset`).

    Args:
        split: usually the training split.
        samples: subset size; ``None`` takes the whole split (default: None).
        seed: seed of the subset (default: 0).
        device: where the set is kept (default: ``"cpu"``).
        label_smoothing: ``eps`` in ``[0, 1)``: the cross-entropy against targets mixed with
            the uniform distribution, ``(1 - eps) onehot(y) + eps / C``, as
            ``nn.CrossEntropyLoss(label_smoothing=eps)``; it stops rewarding ever larger
            margins on images already right. Kept exact: the mixture's weights are integers
            over ``SMOOTHING_DENOMINATOR`` (``eps`` rounded to a multiple of ``C`` over it)
            (default: 0, plain cross-entropy).
    """

    #: With label smoothing, the picked sums weigh the classes by integers over this.
    SMOOTHING_DENOMINATOR = 10**6

    def __init__(self, split: Split, *, samples: int | None = None, seed: int = 0,
                 device: torch.device | str = "cpu", label_smoothing: float = 0.0) -> None:
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), but got {label_smoothing}.")
        self.label_smoothing = float(label_smoothing)
        inputs, targets = fixed_subset(split, samples, seed)
        self.input_shape = tuple(inputs.shape[1:])
        #: ``sign(flatten(inputs))`` transposed, ``[features, N]`` (one row per input unit).
        self.inputs_t = sign(inputs.flatten(1).to(device, torch.float32)).t().contiguous()
        self.targets = targets.to(device=device, dtype=torch.int64)
        self._one_hot: Tensor | None = None  # [classes * N], the targets' (class, sample) cells

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def one_hot(self, classes: int, like: Tensor) -> Tensor:
        """``[classes, N]``: 1 at ``(targets[n], n)``, else 0 (float, cached)."""
        if self._one_hot is None or self._one_hot.shape[0] != classes:
            cells = torch.nn.functional.one_hot(self.targets, classes).t()
            self._one_hot = cells.to(like.dtype).contiguous()
        return self._one_hot

    def smoothing_weights(self, classes: int) -> tuple[int, int, int]:
        """``(a, b, d)``: the picked sums are ``a sum_n Z[y_n, n] + b sum_{n, c} Z[c, n]``,
        integers, and the energy takes them over ``d``; ``(1, 0, 1)`` without smoothing."""
        if not self.label_smoothing:
            return 1, 0, 1
        d = self.SMOOTHING_DENOMINATOR
        b = round(self.label_smoothing * d / classes)
        return d - classes * b, b, d

    def picked(self, z_last: Tensor, bound: int) -> Tensor:
        """``sum_n Z[k, y_n, n]`` per chain, float64 ``[K]``, exactly (a sum of integers);
        with label smoothing, the integer mixture of :meth:`smoothing_weights`.

        One matrix-vector product with the targets' one-hot cells when every partial sum stays
        below ``2**24`` in size (``N * bound`` with ``|Z| <= bound``; exact in float32), else a
        gather summed in float64."""
        k, c, n = z_last.shape
        a, b, _ = self.smoothing_weights(c)
        if b:
            index = self.targets.view(1, 1, -1).expand(k, 1, n)
            picked = z_last.gather(1, index).squeeze(1).sum(1, dtype=torch.float64)
            return picked * a + z_last.sum((1, 2), dtype=torch.float64) * b
        if n * bound < 1 << 24:
            return torch.mv(z_last.view(k, -1), self.one_hot(c, z_last).view(-1)).to(torch.float64)
        index = self.targets.view(1, 1, -1).expand(k, 1, n)
        return z_last.gather(1, index).squeeze(1).sum(1, dtype=torch.float64)

    def picked_scale(self, scale: float, classes: int) -> float:
        """The factor of the picked sums in the energy: the last layer's scale ``s`` over
        :meth:`smoothing_weights`' ``d``."""
        return scale / self.smoothing_weights(classes)[2]

    @staticmethod
    def class_sum(values: Tensor, out: Tensor | None = None) -> Tensor:
        """``values`` ``[K, C, N]`` summed over the classes in a fixed pairwise order (halves
        added elementwise, an odd one carried), ``[K, N]``: the same bits for every shape,
        which ``torch.sum`` does not promise, and what the fused kernel computes.
        ``out`` (``[K, ceil(C / 2), N]``) is an optional work buffer."""
        k, c, n = values.shape
        if c == 1:
            return values[:, 0]
        h = c // 2
        buf = values.new_empty((k, h + c % 2, n)) if out is None else out
        torch.add(values[:, :h], values[:, h : 2 * h], out=buf[:, :h])
        if c % 2:
            buf[:, h].copy_(values[:, 2 * h])
        c = h + c % 2
        while c > 1:
            h = c // 2
            torch.add(buf[:, :h], buf[:, h : 2 * h], out=buf[:, :h])
            if c % 2:
                buf[:, h].copy_(buf[:, 2 * h])
            c = h + c % 2
        return buf[:, 0]

    @staticmethod
    def log_partition_of(sums: Tensor, lse_out: Tensor | None = None,
                         lse64_out: Tensor | None = None, top: Tensor | None = None) -> Tensor:
        """``sum_n log sums[k, n]`` per chain, float64 ``[K]``, of the per-sample class sums
        (plus ``top`` ``[K, N]`` per sample, added in float32, for :meth:`shifted_sums`)."""
        lse = torch.log(sums, out=lse_out)
        if top is not None:
            lse.add_(top)
        lse64 = lse.to(torch.float64) if lse64_out is None else lse64_out.copy_(lse)
        return lse64.sum(1)

    @classmethod
    def log_partition(cls, exp_logits: Tensor, lse_out: Tensor | None = None,
                      lse64_out: Tensor | None = None, sums_out: Tensor | None = None
                      ) -> Tensor:
        """``sum_n log sum_c exp_logits[k, c, n]`` per chain, float64 ``[K]``
        (:meth:`class_sum`, then :meth:`log_partition_of`)."""
        return cls.log_partition_of(cls.class_sum(exp_logits, sums_out), lse_out, lse64_out)

    def energies(self, z_last: Tensor, scale: float, bound: int,
                 scratch: Tensor | None = None, lse_out: Tensor | None = None,
                 lse64_out: Tensor | None = None) -> Tensor:
        """Mean cross-entropy per chain, float64 ``[K]``, from the last pre-activations
        ``z_last`` (``[K, classes, N]``, integers of size at most ``bound``) and the factor
        ``s`` (``scale``) that makes them logits.

        ``mean_n(log sum_c exp(s Z[c, n])) - s mean_n(Z[y_n, n])`` (:meth:`log_partition` of
        ``exp(s Z)`` and :meth:`picked`); with large logits (``needs_shift(s * bound)``) each
        sample's largest pre-activation is subtracted first (:meth:`shifted_sums`). The function
        of a chain's ``Z`` is the same whatever the batch. Without shift, ``scratch`` holds
        ``exp(s Z)`` afterwards. ``scratch`` (shaped like ``z_last``), ``lse_out`` and
        ``lse64_out`` (``[K, N]``, float32 and float64) are optional work buffers: on CPU,
        fresh large allocations page-fault at every step.
        """
        n = z_last.shape[-1]
        picked = self.picked(z_last, bound)
        factor = self.picked_scale(scale, z_last.shape[1])
        if not needs_shift(scale * bound):
            logits = torch.mul(z_last, scale, out=scratch)
            return (self.log_partition(logits.exp_(), lse_out, lse64_out) - picked * factor) / n
        sums, top = self.shifted_sums(z_last, scale, scratch)
        return (self.log_partition_of(sums, lse_out, lse64_out, top) - picked * factor) / n

    @classmethod
    def shifted_sums(cls, z_last: Tensor, scale: float, scratch: Tensor | None = None
                     ) -> tuple[Tensor, Tensor]:
        """Per sample, ``sum_c exp(s (Z[c] - top))`` and ``s top`` with ``top`` the largest
        pre-activation (``[K, N]`` each, float32): ``log`` of the first plus the second is the
        log-partition, whatever the size of the logits. The shift is taken on the integers, so
        ``exp`` only ever sees ``s`` times an integer in ``[-2 fan_in, 0]``."""
        top = z_last.amax(1, keepdim=True)
        shifted = torch.sub(z_last, top, out=scratch).mul_(scale).exp_()
        return cls.class_sum(shifted), torch.mul(top.squeeze(1), scale)
