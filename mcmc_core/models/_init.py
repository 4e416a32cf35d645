"""Data-dependent start weights: a binary MLP's first hidden layer from its training inputs."""

from __future__ import annotations

import torch
from torch import Tensor
from torch import nn

from mcmc_core.layers import BinaryLinear, sign

__all__ = ["INITS", "data_weights", "init_from_data_"]

#: ``model.init`` choices: random signs (the float init's), or :func:`data_weights`.
INITS = ("random", "data")
#: Training inputs :func:`data_weights` combines at most (a seeded random subset beyond).
MAX_SAMPLES = 10_000


def data_weights(inputs: Tensor, out_features: int, seed: int) -> Tensor:
    """``sign(R (X - mean X))``: ``out_features`` random combinations of the centred inputs.

    ``X`` is the sign of the flattened ``inputs`` (what a binary layer sees; at most
    :data:`MAX_SAMPLES` of them, a seeded subset), ``R`` a standard normal ``[out_features,
    len(X)]``, both drawn from ``seed`` alone. Each unit then starts as a direction along which
    the data varies, instead of a random one. Inputs the data never varies (zero after centring)
    get random signs.

    Returns:
        float32 ±1 weights ``[out_features, in_features]`` on the CPU.
    """
    gen = torch.Generator().manual_seed(int(seed))
    x = sign(inputs.detach().flatten(1).to("cpu", torch.float64))
    if len(x) > MAX_SAMPLES:
        x = x[torch.randperm(len(x), generator=gen)[:MAX_SAMPLES]]
    r = torch.randn(out_features, len(x), generator=gen, dtype=torch.float64)
    w = r @ (x - x.mean(0))
    coin = torch.randint(0, 2, w.shape, generator=gen).to(torch.float64) * 2 - 1
    return torch.where(w == 0, coin, w.sign()).to(torch.float32)


def init_from_data_(model: nn.Module, inputs: Tensor, seed: int) -> nn.Module:
    """Set the first :class:`~mcmc_core.layers.BinaryLinear` of ``model`` (a binary MLP's first
    hidden layer) to :func:`data_weights` of ``inputs`` and ``seed``, in place.

    Returns:
        ``model``.
    """
    first = next((m for m in model.modules() if isinstance(m, BinaryLinear)), None)
    if first is None:
        raise ValueError("model has no BinaryLinear layer to start from the data.")
    with torch.no_grad():
        first.weight.copy_(data_weights(inputs, first.out_features, seed))
    return model
