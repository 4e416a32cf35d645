"""What Hydra writes about a run, with its secrets masked (:mod:`mcmc_core.secrets`).

Hydra saves the composed config, its own config and the command-line overrides in the run's
``.hydra/`` folder (``outputs/train/<time>/`` for ``mcmc-train``) before the task function
starts, its
logging handlers write the console and the job's ``<name>.log``, and a task that raises has its
overrides printed (``Error executing job with overrides: [...]``). :class:`MaskSecrets`, a Hydra
callback that ``conf/train.yaml`` registers (``hydra.callbacks``), masks
all three; the task itself keeps the real values.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mcmc_core.secrets import mask_config, mask_text

__all__ = ["MaskSecrets", "MaskingFilter", "mask_hydra_output", "mask_yaml_file"]

#: The files Hydra writes into the run's output subfolder (``.hydra``).
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


class MaskingFilter(logging.Filter):
    """A handler filter that masks URL passwords and secret ``key=value`` pairs in each record's
    message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


def mask_yaml_file(path: Path) -> bool:
    """Rewrite the YAML file ``path`` with its secrets masked (in place, atomically; untouched
    when it holds none). Returns whether it changed."""
    tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    masked = mask_config(tree)
    if masked == tree:
        return False
    tmp = path.with_name(f".{path.name}.masking")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(masked)))
    os.replace(tmp, path)
    return True


def mask_hydra_output(hydra_cfg: DictConfig) -> None:
    """Mask the ``.hydra/*.yaml`` files of the run whose Hydra config (``cfg.hydra``) is
    ``hydra_cfg``, and add a :class:`MaskingFilter` to every handler of the root logger (Hydra's
    console and job log file)."""
    if hydra_cfg.output_subdir is not None:
        folder = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir
        for name in HYDRA_FILES:
            if (folder / name).is_file():
                mask_yaml_file(folder / name)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


class MaskSecrets(Callback):
    """Hydra callback: once Hydra has written the job's files, :func:`mask_hydra_output`; when
    the job ends, mask the overrides Hydra prints for a job that raised."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        mask_hydra_output(config.hydra)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if job_return.overrides is not None:
            job_return.overrides = [mask_text(str(o)) for o in job_return.overrides]
