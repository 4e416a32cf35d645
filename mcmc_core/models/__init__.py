"""The model zoo: binary MLP, small CNN, AlexNet and ResNet-18 built from a ``ModelConfig``."""

from __future__ import annotations

from mcmc_core.models._adapt import ModelMismatchError
from mcmc_core.models._adapt import fit_model
from mcmc_core.models._build import build_model
from mcmc_core.models._cnn import SmallCNN
from mcmc_core.models._config import MODEL_NAMES
from mcmc_core.models._config import ModelConfig
from mcmc_core.models._init import INITS
from mcmc_core.models._init import data_weights
from mcmc_core.models._mlp import MLP

__all__ = [
    "INITS",
    "MLP",
    "MODEL_NAMES",
    "ModelConfig",
    "ModelMismatchError",
    "SmallCNN",
    "build_model",
    "data_weights",
    "fit_model",
]
