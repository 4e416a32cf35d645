"""``build_model``: a binary network from a :class:`ModelConfig` and the data's shape."""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence

import torch
from torch import Tensor
from torch import nn

from mcmc_core._validation import raise_if_any
from mcmc_core.layers import binarize_model
from mcmc_core.models._cnn import SmallCNN
from mcmc_core.models._config import ModelConfig
from mcmc_core.models._init import init_from_data_
from mcmc_core.models._mlp import MLP
from mcmc_core.models._torchvision import alexnet
from mcmc_core.models._torchvision import resnet18

__all__ = ["build_model"]

_FloatBuilder = Callable[[ModelConfig, tuple[int, int, int], int], nn.Module]

# One float-model builder per name in MODEL_NAMES.
_BUILDERS: dict[str, _FloatBuilder] = {
    "mlp": lambda cfg, shape, n: MLP(math.prod(shape), list(cfg.hidden), n),
    "cnn": lambda cfg, shape, n: SmallCNN(shape, list(cfg.channels), n),
    "alexnet": lambda cfg, shape, n: alexnet(shape, n),
    "resnet18": lambda cfg, shape, n: resnet18(shape, n),
}


def build_model(cfg: ModelConfig, input_shape: Sequence[int], n_classes: int, *,
                seed: int = 0, inputs: Tensor | None = None) -> nn.Module:
    """Build the binary network described by ``cfg`` for the given data.

    The float model is built (on CPU, in training mode) and passed through
    :func:`mcmc_core.layers.binarize_model` with ``cfg.keep_activations`` and
    ``cfg.output_scale``. Its random initialization, hence its ±1 weights, depends only on
    ``seed`` (and with ``cfg.init="data"`` on the training ``inputs``): the global RNG state
    is left as it was.

    Example:
        >>> import torch
        >>> from mcmc_core.models import ModelConfig, build_model
        >>> model = build_model(ModelConfig(name="mlp", hidden=[32]), (1, 8, 8), 10, seed=1)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])

    Args:
        cfg: Which network; invalid values raise :class:`~mcmc_core._validation.ConfigError`.
        input_shape: ``(channels, height, width)`` of one input.
        n_classes: Number of output logits.
        seed: Seed of the weight initialization. (default: 0)
        inputs: the training inputs, needed by ``cfg.init="data"``
            (:func:`~mcmc_core.models.data_weights`).

    Returns:
        The binarized model (e.g. an ``MLP`` or a torchvision ``AlexNet``).
    """
    raise_if_any(cfg.errors())
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width) of positive sizes, "
                         f"but got {input_shape=}.")
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, but got {n_classes=}.")
    with torch.random.fork_rng(devices=[]):
        # Only the CPU generator: torch.manual_seed would also reseed (and not restore) CUDA's.
        torch.default_generator.manual_seed(seed)
        model = _BUILDERS[cfg.name](cfg, shape, int(n_classes))  # type: ignore[arg-type]
    model = binarize_model(model, keep_activations=cfg.keep_activations,
                           output_scale=cfg.output_scale)
    if cfg.init == "data":
        if inputs is None:
            raise ValueError("model.init=data needs the training inputs: pass inputs=.")
        init_from_data_(model, inputs, seed)
    return model
