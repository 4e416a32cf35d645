"""Training loops: the MCMC chain and the straight-through-estimator baseline."""

from mcmc_core.optim import run_scheduled
from mcmc_core.trainers._base import DEVICES, BaseTrainer, Callback, resolve_device
from mcmc_core.trainers._checkpoint import (
    CHECKPOINT_NAME,
    RunSeeds,
    child_seeds,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from mcmc_core.trainers._config import TRAINER_NAMES, TrainerConfig
from mcmc_core.trainers._mcmc import TrainerMCMC
from mcmc_core.trainers._population import TrainerPopulation, flip_groups, population_errors
from mcmc_core.trainers._record import ChainRecord, best_entry, final_metrics, improves_best
from mcmc_core.trainers._ste import TrainerSTE

__all__ = [
    "BaseTrainer",
    "CHECKPOINT_NAME",
    "Callback",
    "ChainRecord",
    "RunSeeds",
    "DEVICES",
    "TRAINER_NAMES",
    "TrainerConfig",
    "TrainerMCMC",
    "TrainerPopulation",
    "TrainerSTE",
    "best_entry",
    "child_seeds",
    "final_metrics",
    "flip_groups",
    "improves_best",
    "load_checkpoint",
    "load_latest_checkpoint",
    "population_errors",
    "resolve_device",
    "run_scheduled",
    "save_checkpoint",
]
