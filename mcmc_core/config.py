"""The typed configuration of a whole training run, and building a trainer from it.

The dataclasses are the Hydra schema of ``conf/train.yaml`` (registered in
:func:`register_configs`): OmegaConf rejects unknown keys and wrong types at compose time, and
:meth:`TrainConfig.errors` checks every range before any work starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mcmc_core._validation import check, raise_if_any
from mcmc_core.data import DataConfig, DataSplits, load_dataset
from mcmc_core.models import ModelConfig, build_model
from mcmc_core.optim import SamplerConfig
from mcmc_core.schedules import FlipRatioScheduleConfig, TemperatureScheduleConfig
# The trainers' own modules, not the package: its TrainerPopulation takes TrainConfigs.
from mcmc_core.trainers._base import DEVICES, BaseTrainer, Callback
from mcmc_core.trainers._config import TrainerConfig
from mcmc_core.trainers._mcmc import TrainerMCMC
from mcmc_core.trainers._ste import TrainerSTE

__all__ = ["TrackingConfig", "TrainConfig", "build_trainer", "register_configs"]


@dataclass
class TrackingConfig:
    """MLflow tracking of a run.

    Args:
        enabled: log to MLflow at all.
        uri: tracking URI; null = ``sqlite:///mlflow.db`` in the working directory.
        experiment: MLflow experiment name.
        run_name: MLflow run name; null lets MLflow pick one.
        log_model: log the final model as an artifact.
        retry_seconds: how long a sweep waits out an MLflow server or a storage database that
            cannot be reached (training goes on, MLflow writes queued and sent in order once
            it is back) before its trials stop, queued to resume.
    """

    enabled: bool = True
    uri: str | None = None
    experiment: str = "mcmc-train"
    run_name: str | None = None
    log_model: bool = True
    retry_seconds: float = 300.0


@dataclass
class TrainConfig:
    """One training run: model, data, sampler, schedules, trainer and tracking.

    Args:
        seed: seed of the model's initial weights and of the chain's random stream.
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    schedule: TemperatureScheduleConfig = field(default_factory=TemperatureScheduleConfig)
    flip_schedule: FlipRatioScheduleConfig = field(default_factory=FlipRatioScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0
    device: str = "auto"

    def errors(self) -> list[str]:
        """Every violation in the whole configuration, one line each."""
        errors = (self.model.errors() + self.dataset.errors() + self.sampler.errors()
                  + self.schedule.errors() + self.flip_schedule.errors() + self.trainer.errors())
        check(errors, self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device) is not None,
              "device", self.device, "one of " + ", ".join(DEVICES) + " or cuda:N")
        check(errors, self.seed >= 0, "seed", self.seed, ">= 0")
        return errors

    def validate(self) -> TrainConfig:
        """Raise :class:`~mcmc_core.ConfigError` listing every violation; return self if valid."""
        raise_if_any(self.errors())
        return self


def build_trainer(
    cfg: TrainConfig, *, callbacks: list[Callback] | None = None,
    config: dict[str, Any] | None = None, data: DataSplits | None = None,
) -> BaseTrainer:
    """Validate ``cfg``, load the data (unless ``data`` is given: it must match
    ``cfg.dataset``), build the binary model and return its trainer."""
    cfg.validate()
    data = data if data is not None else load_dataset(cfg.dataset)
    model = build_model(cfg.model, data.input_shape, data.n_classes, seed=cfg.seed,
                        inputs=data.train.inputs)
    common: dict[str, Any] = dict(data=data, trainer=cfg.trainer, seed=cfg.seed, device=cfg.device,
                                  callbacks=callbacks or [], config=config)
    if cfg.trainer.name == "ste":
        return TrainerSTE(model, **common)
    return TrainerMCMC(model, sampler=cfg.sampler, schedule=cfg.schedule,
                       flip_schedule=cfg.flip_schedule, **common)


def register_configs() -> None:
    """Register ``train_schema`` (:class:`TrainConfig`) in Hydra's ConfigStore: the first entry of
    ``conf/train.yaml``'s defaults, so that the composed config is typed throughout (each group's
    options merge into its typed node). It is a primary config, not a group option, so it shows
    neither in ``--help`` nor in tab completion."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
