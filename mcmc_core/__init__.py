"""mcmc_core: gradient-free training of binary neural networks by sign-flip MCMC.

Example:
    >>> from torch import nn
    >>> from mcmc_core import binarize_model, TrainerMCMC
    >>> model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    >>> trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), "digits",
    ...                       temperature=1e-3, flip_ratio=0.01)
    >>> metrics = trainer.train(n_epoch=10)  # doctest: +SKIP
"""

from mcmc_core._validation import ConfigError
from mcmc_core.layers import binarize_model, binary_parameters
from mcmc_core.optim import SignFlipSampler
from mcmc_core.trainers import Callback, TrainerMCMC, TrainerSTE

__all__ = [
    "Callback",
    "ConfigError",
    "SignFlipSampler",
    "TrainerMCMC",
    "TrainerSTE",
    "binarize_model",
    "binary_parameters",
]
