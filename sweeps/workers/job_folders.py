"""Hydra's multirun folder layout for the trials of a ``mcmc-train -m`` sweep.

Hydra's own sweepers give every job ``<hydra.sweep.dir>/<job number>/.hydra/`` with the job's
overrides and config. Our trials run in worker processes without Hydra, so each trial writes
them itself when it starts: ``<hydra.sweep.dir>/<trial number>/.hydra/overrides.yaml`` (the
sweep's command-line overrides, then the trial's sampled values as ``key=value``) and
``config.yaml`` (the config it runs), secrets masked. Trial numbers are the study's, so a
launch that resumes a study continues the numbering instead of restarting it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mcmc_core.secrets import mask_config, mask_text

__all__ = ["JobFolders", "override_value"]

_PLAIN = re.compile(r"[A-Za-z_/.][A-Za-z0-9_./+-]*")


def override_value(value: Any) -> str:
    """``value`` in Hydra's override syntax (floats exactly, as ``repr`` writes them)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and text not in ("null", "true", "false"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _write(path: Path, data: Any) -> None:
    """Write ``data`` as YAML, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


@dataclass(frozen=True)
class JobFolders:
    """Where and with which overrides a launch's trials write their Hydra job folders.

    Args:
        sweep_dir: ``hydra.sweep.dir`` of the launch.
        overrides: the overrides every trial shares (the command line's, the fixed
            ``params``).
    """

    sweep_dir: str
    overrides: tuple[str, ...] = ()

    def folder(self, number: int) -> Path:
        """The job folder of trial ``number``."""
        return Path(self.sweep_dir) / str(number)

    def write(self, number: int, values: dict[str, Any], config: dict[str, Any]) -> Path:
        """Write trial ``number``'s ``.hydra/overrides.yaml`` (with its sampled ``values`` by
        config key) and ``.hydra/config.yaml`` (its resolved ``config``); returns the folder."""
        hydra_dir = self.folder(number) / ".hydra"
        hydra_dir.mkdir(parents=True, exist_ok=True)
        lines = [*self.overrides, *(f"{k}={override_value(v)}" for k, v in values.items())]
        _write(hydra_dir / "overrides.yaml", [mask_text(line) for line in lines])
        _write(hydra_dir / "config.yaml", mask_config(config))
        return hydra_dir.parent
