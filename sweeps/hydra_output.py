"""What Hydra writes about a run, with its secrets masked (:mod:`mcmc_core.secrets`).

Hydra saves the composed config, its own config and the command-line overrides in the run's
``.hydra/`` folder (``outputs/train/<time>/`` for ``mcmc-train``,
``outputs/sweeps/_launches/<time>/`` for ``mcmc-sweep``) before the task function starts, and
its logging handlers write the console and the job's ``<name>.log``. :func:`mask_hydra_output`,
called first thing in the task function, rewrites those files masked and masks what the handlers
write from then on. The task itself keeps the real values.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import OmegaConf

from mcmc_core.secrets import mask_config, mask_text

__all__ = ["MaskingFilter", "mask_hydra_output", "mask_yaml_file"]

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


def mask_hydra_output() -> None:
    """Mask the current Hydra run's ``.hydra/*.yaml`` files, and add a :class:`MaskingFilter` to
    every handler of the root logger (Hydra's console and job log file). Call it first thing
    in a ``@hydra.main`` task function; a no-op outside one."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is not None:
        folder = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir
        for name in HYDRA_FILES:
            if (folder / name).is_file():
                mask_yaml_file(folder / name)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
