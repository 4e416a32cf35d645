"""Samplers over binary weights, in the ``torch.optim`` style: :class:`ChainSampler` (``K``
chains, one param group each, stepped by the ``forward`` or the ``incremental`` kernel) and
:class:`SignFlipSampler` (one chain's tensors: the forward kernel's step)."""

from mcmc_core.optim._chain_sampler import ChainSampler
from mcmc_core.optim._config import SamplerConfig
from mcmc_core.optim._kernels import INCREMENTAL_TERMS, KERNELS, run_scheduled
from mcmc_core.optim._sign_flip import PROPOSALS, SignFlipSampler

__all__ = ["INCREMENTAL_TERMS", "KERNELS", "PROPOSALS", "ChainSampler", "SamplerConfig", "SignFlipSampler",
           "run_scheduled"]
