"""``mcmc-train``: one training run, configured by Hydra (``conf/train.yaml``).

Example::

    mcmc-train model=mlp dataset=digits schedule=exponential schedule.cooling_rate=0.999 \
        sampler.flip_ratio=0.01
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mcmc_core._validation import ConfigError
from mcmc_core.config import TrainConfig, build_trainer, register_configs
from mcmc_core.data import DatasetNotFoundError
from sweeps.tracking import MLflowCallback

__all__ = ["main", "run"]

_logger = logging.getLogger(__name__)

register_configs()


def run(cfg: DictConfig) -> dict[str, Any]:
    """Validate ``cfg``, train, log to MLflow when enabled, and return the final metrics.

    Raises:
        ConfigError: one line per invalid value, before any work starts.
    """
    train_cfg: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    train_cfg.validate()
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    tracker = MLflowCallback(train_cfg.tracking, resolved) if train_cfg.tracking.enabled else None
    trainer = build_trainer(train_cfg, callbacks=[tracker] if tracker else [], config=resolved)
    failed = True
    try:
        final = trainer.train()
        failed = False
        return final
    finally:
        if tracker is not None:
            tracker.close(failed=failed)


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Console entry point; returns the final validation accuracy (for Hydra sweepers)."""
    try:
        final = run(cfg)
    except (ConfigError, DatasetNotFoundError) as err:
        print(f"error: {err}".replace("\n", "\nerror: "), file=sys.stderr)
        raise SystemExit(2) from None
    return float(final["val_accuracy"])


if __name__ == "__main__":
    main()
