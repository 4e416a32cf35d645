"""Training loops: the MCMC chain and the straight-through-estimator baseline."""

from mcmc_core.trainers._base import (
    DEVICES,
    BaseTrainer,
    best_entry,
    final_metrics,
    improves_best,
    resolve_device,
)
from mcmc_core.trainers._callbacks import Callback
from mcmc_core.trainers._checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from mcmc_core.trainers._config import TRAINER_NAMES, TrainerConfig
from mcmc_core.trainers._mcmc import TrainerMCMC, child_seeds
from mcmc_core.trainers._population_engine import run_scheduled
from mcmc_core.trainers._ste import TrainerSTE

__all__ = [
    "BaseTrainer",
    "CHECKPOINT_NAME",
    "Callback",
    "DEVICES",
    "TRAINER_NAMES",
    "TrainerConfig",
    "TrainerMCMC",
    "TrainerSTE",
    "best_entry",
    "child_seeds",
    "final_metrics",
    "improves_best",
    "load_checkpoint",
    "load_latest_checkpoint",
    "resolve_device",
    "run_scheduled",
    "save_checkpoint",
]
