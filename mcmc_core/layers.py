"""Binary layers (weights and activations in {-1, +1}) and :func:`binarize_model`.

A binary layer computes ``op(sign(input), weight) * scale`` with a ±1 ``weight`` and no bias.
The integer pre-activation ``op(sign(input), weight)`` lies in ``[-fan_in, fan_in]``; dividing it
by ``sqrt(fan_in)`` makes it O(1) whatever the width, so one sampler temperature (an energy
difference in loss units) means the same for narrow and wide networks. The last binary layer of a
model is further multiplied by the model's ``output_scale`` (the logit scale).
"""

from __future__ import annotations

import math
from typing import Any
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import nn

__all__ = [
    "OUTPUT_SCALE",
    "BinaryConv1d",
    "BinaryConv2d",
    "BinaryConv3d",
    "BinaryLayer",
    "BinaryLinear",
    "binarize_model",
    "binary_parameters",
    "sign",
]


#: The default logit scale of a model's last binary layer: ``binarize_model``'s and
#: ``mcmc-train``'s ``model.output_scale``, one value for the Python API and the command line.
OUTPUT_SCALE = 4.0


def _hard_sign(x: Tensor) -> Tensor:
    if x.is_floating_point():
        # sign() gives {-1, 0, +1}; shifting by 0.5 and taking sign again sends 0 (and -0.0) to +1.
        # Three cheap elementwise passes: on CPU this is several times faster than torch.where.
        return torch.sign(x).add_(0.5).sign_()
    return torch.where(x >= 0, 1, -1).to(x.dtype)


class _SignSTE(torch.autograd.Function):
    """``sign`` with the straight-through estimator: backward is ``grad * (|x| <= 1)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x.abs() <= 1)
        return _hard_sign(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (mask,) = ctx.saved_tensors
        return grad * mask


def sign(x: Tensor) -> Tensor:
    """Binarize ``x`` to {-1, +1} (``x >= 0`` gives +1, so zero maps to +1), same dtype.

    Without autograd (under ``torch.no_grad()`` or when ``x`` does not require grad) this is a
    plain elementwise op: the MCMC hot path. Otherwise it is a straight-through estimator whose
    backward passes ``grad * (|x| <= 1)``.

    Args:
        x: Any tensor.

    Returns:
        A tensor of the same shape, dtype and device holding only -1 and +1.
    """
    if x.requires_grad and torch.is_grad_enabled():
        return _SignSTE.apply(x)
    return _hard_sign(x)


class BinaryLayer(nn.Module):
    """Base of the binary layers, for ``isinstance`` checks; subclasses also subclass an nn layer.

    A binary layer has a ±1 float ``weight`` (``requires_grad=False`` unless a gradient trainer
    enables it), no bias, and computes ``op(sign(input), weight) * scale`` where
    ``scale = output_factor / sqrt(fan_in)``. The integer pre-activation lies in
    ``[-fan_in, fan_in]``, so dividing by ``sqrt(fan_in)`` keeps it O(1) for any width.
    ``output_factor`` is 1 except for the last binary layer of a model, which gets the model's
    ``output_scale`` (see :func:`binarize_model`). ``scale`` is a plain float set from the
    layer's configuration; it is not part of ``state_dict``.
    """

    _float_cls: ClassVar[type[nn.Module]]
    weight: nn.Parameter
    output_factor: float
    scale: float

    @property
    def fan_in(self) -> int:
        """Inputs per output unit: ``in_features``, or ``in_channels / groups * prod(kernel)``."""
        return math.prod(self.weight.shape[1:])

    def set_output_factor(self, output_factor: float) -> None:
        """Set ``scale = output_factor / sqrt(fan_in)``.

        Args:
            output_factor: 1 for hidden layers, the model's ``output_scale`` for the last layer.
        """
        self.output_factor = float(output_factor)
        self.scale = self.output_factor / math.sqrt(self.fan_in)

    @classmethod
    def _float_kwargs(cls, layer: nn.Module) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_float(cls, layer: nn.Module, *, output_factor: float = 1.0) -> BinaryLayer:
        """Build the binary twin of ``layer``: ``weight = sign(layer.weight)``, no bias.

        The weight is a new ±1 Parameter with ``requires_grad=False`` on the device and dtype of
        ``layer.weight``; ``layer`` is left untouched. No random initialization happens.

        Args:
            layer: An initialized ``nn.Linear`` (for :class:`BinaryLinear`) or conv layer.
            output_factor: See :meth:`set_output_factor`. (default: 1.0)

        Returns:
            The new binary layer.
        """
        if not isinstance(layer, cls._float_cls):
            raise TypeError(f"{cls.__name__}.from_float expects an nn.{cls._float_cls.__name__}, "
                            f"but got {type(layer).__name__}.")
        weight = layer.weight.detach()
        binary = nn.utils.skip_init(cls, **cls._float_kwargs(layer), bias=False,
                                    device=weight.device, dtype=weight.dtype)
        binary.weight = nn.Parameter(sign(weight), requires_grad=False)
        binary.set_output_factor(output_factor)
        return binary

    def binary_input(self, input: Tensor) -> Tensor:
        """``sign(input)``, memoised for an input that does not require grad.

        The energy of a fixed target feeds the same input tensor to the first layer at every
        sampler step; binarizing it costs more than the matmul. The memo keeps a reference to the
        input (so its memory cannot be reused by another tensor) and is valid while the input's
        data pointer, shape, strides and version counter (bumped by in-place writes) are unchanged.
        Inference tensors have no version counter and are never memoised.
        """
        if input.requires_grad or input.is_inference():
            # Inference tensors (made under torch.inference_mode) have no version counter.
            return sign(input)
        key = (input.data_ptr(), input.shape, input.stride(), input.dtype, input._version)
        memo = self.__dict__.get("_sign_memo")
        if memo is not None and memo[0] == key:
            return memo[2]
        out = sign(input)
        self.__dict__["_sign_memo"] = (key, input, out)
        return out

    def __getstate__(self) -> dict[str, Any]:
        # Pickling and deepcopy leave the memo behind: it is a cache, not state.
        state = super().__getstate__()
        state.pop("_sign_memo", None)
        return state

    def _get_name(self) -> str:
        return "[Binary]" + self._float_cls.__name__

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale:.4g}"


class BinaryLinear(BinaryLayer, nn.Linear):
    """Binary ``nn.Linear``: ``F.linear(sign(input), weight) * scale``; see :class:`BinaryLayer`."""

    _float_cls = nn.Linear

    @classmethod
    def _float_kwargs(cls, layer: nn.Module) -> dict[str, Any]:
        return {"in_features": layer.in_features, "out_features": layer.out_features}

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(self.binary_input(input), self.weight).mul_(self.scale)


class _BinaryConvNd(BinaryLayer):
    @classmethod
    def _float_kwargs(cls, layer: nn.Module) -> dict[str, Any]:
        names = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                 "groups", "padding_mode")
        return {name: getattr(layer, name) for name in names}

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(self.binary_input(input), self.weight, None).mul_(self.scale)


class BinaryConv1d(_BinaryConvNd, nn.Conv1d):
    """Binary ``nn.Conv1d`` (no bias, ±1 weight, output times ``scale``); see :class:`BinaryLayer`."""

    _float_cls = nn.Conv1d


class BinaryConv2d(_BinaryConvNd, nn.Conv2d):
    """Binary ``nn.Conv2d`` (no bias, ±1 weight, output times ``scale``); see :class:`BinaryLayer`."""

    _float_cls = nn.Conv2d


class BinaryConv3d(_BinaryConvNd, nn.Conv3d):
    """Binary ``nn.Conv3d`` (no bias, ±1 weight, output times ``scale``); see :class:`BinaryLayer`."""

    _float_cls = nn.Conv3d


# Most derived first: the first isinstance match wins.
_BINARY_CLASSES: tuple[type[BinaryLayer], ...] = (BinaryLinear, BinaryConv1d, BinaryConv2d,
                                                  BinaryConv3d)
_ACTIVATIONS = (nn.ReLU, nn.PReLU)


def _replacement(module: nn.Module, keep_activations: bool) -> nn.Module:
    if isinstance(module, BinaryLayer):
        return module
    for binary_cls in _BINARY_CLASSES:
        if isinstance(module, binary_cls._float_cls):
            if isinstance(module, nn.modules.lazy.LazyModuleMixin) and (
                    module.has_uninitialized_params()):
                raise ValueError(f"Cannot binarize an uninitialized {type(module).__name__}: "
                                 "run one forward pass first.")
            return binary_cls.from_float(module)
    if not keep_activations and isinstance(module, _ACTIVATIONS):
        return nn.Identity()
    return module


def _replace_children(module: nn.Module, keep_activations: bool,
                      memo: dict[int, tuple[nn.Module, nn.Module]]) -> None:
    # ``_modules`` rather than ``named_children()``: the latter hides a child registered twice
    # under the same parent, which must be replaced at both names.
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        if id(child) not in memo:  # a shared module is converted (or visited) only once
            new = _replacement(child, keep_activations)
            memo[id(child)] = (child, new)  # keep ``child`` alive so its id stays unique
            if new is child:
                _replace_children(child, keep_activations, memo)
        new = memo[id(child)][1]
        if new is not child:
            setattr(module, name, new)


def binarize_model(model: nn.Module, *, keep_activations: bool = False,
                   output_scale: float = OUTPUT_SCALE) -> nn.Module:
    """Turn ``model`` into a binary network, in place, and return it.

    Every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` (subclasses included) becomes its binary twin
    (:class:`BinaryLinear`, ...) with ``weight = sign(weight)`` and no bias. ``nn.ReLU`` and
    ``nn.PReLU`` are replaced by ``nn.Identity`` unless ``keep_activations``: the next binary
    layer takes ``sign`` of its input anyway, and a ReLU before it would send every negative to
    0 and so to +1. Replacing (not deleting) keeps ``Sequential`` indices and attributes such as
    ResNet's ``self.relu`` valid. Other layers (BatchNorm, pooling, Dropout, Flatten) stay.

    The last binary layer in module order gets ``scale = output_scale / sqrt(fan_in)``, all
    others ``1 / sqrt(fan_in)``. A module registered at several places is replaced by one
    binary layer everywhere. Binarizing again is a no-op apart from setting the scales from the
    new ``output_scale``. The model's class is unchanged, except when ``model`` itself is a
    layer that gets replaced (e.g. a bare ``nn.Linear``): then the replacement is returned.

    Args:
        model: Any module; modified in place.
        keep_activations: Keep ``ReLU``/``PReLU`` layers. (default: False)
        output_scale: Output factor of the last binary layer (the logit scale). (default: 4.0,
            :data:`OUTPUT_SCALE`)

    Returns:
        ``model`` (or its replacement, see above).
    """
    if not output_scale > 0:
        raise ValueError(f"output_scale must be positive, but got {output_scale=}.")
    root = _replacement(model, keep_activations)
    if root is model:
        _replace_children(model, keep_activations, memo={})
    layers = [m for m in root.modules() if isinstance(m, BinaryLayer)]
    for i, layer in enumerate(layers):
        layer.set_output_factor(output_scale if i == len(layers) - 1 else 1.0)
    return root


def binary_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ±1 weights of the binary layers of ``model``, in module order, each once.

    Args:
        model: A module, typically the result of :func:`binarize_model`.

    Returns:
        The list of weights (what the MCMC sampler flips).
    """
    return [m.weight for m in model.modules() if isinstance(m, BinaryLayer)]
