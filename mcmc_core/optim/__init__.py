"""Samplers over binary weights, in the ``torch.optim`` style."""

from mcmc_core.optim._config import SamplerConfig
from mcmc_core.optim._sign_flip import PROPOSALS, SignFlipSampler

__all__ = ["PROPOSALS", "SamplerConfig", "SignFlipSampler"]
