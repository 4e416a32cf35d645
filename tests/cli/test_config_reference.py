"""``docs/config.md`` is what ``python -m sweeps.cli.reference`` prints from the typed schema now,
and it documents every key of both commands."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from mcmc_core.config import TrainConfig
from sweeps.cli.help import config_groups
from sweeps.cli.reference import field_docs

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


@pytest.fixture(scope="module")
def generated() -> str:
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli.reference"], capture_output=True,
                          text=True, timeout=600, check=True)
    return proc.stdout


def test_committed_reference_is_up_to_date(generated: str) -> None:
    assert DOC.read_text() == generated, (
        "docs/config.md is out of date: run python -m sweeps.cli.reference > docs/config.md")


def test_every_key_and_group_option_is_listed(generated: str) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for name, tp in hints.items():
        keys = ([f"{name}.{f.name}" for f in dataclasses.fields(tp)]
                if dataclasses.is_dataclass(tp) else [name])
        for key in keys:
            assert f"| `{key}` | " in generated, key
    for key in ("hydra.sweeper.n_trials", "hydra.sweeper.params.<key>.low",
                "hydra.sweeper.dry_run"):
        assert f"| `{key}` | " in generated, key
    for group, options in config_groups().items():
        for option in options:
            assert f"- `{group}={option}`" in generated


def test_allowed_values_come_from_the_checks(generated: str) -> None:
    rows = {line.split("`")[1]: line for line in generated.splitlines()
            if line.startswith("| `")}
    assert "| `0.002` | a number; 0 < flip_ratio <= 1 |" in rows["sampler.flip_ratio"]
    assert "| one of metropolis, barker |" in rows["sampler.acceptance"]
    assert "(sweep: `thermometer`)" in rows["dataset.binarize"]  # the sweep's own default


def test_args_sections_are_parsed_per_field() -> None:
    from sweeps.sweeper.settings import McmcOptunaSweeperConf

    from sweeps.sweeper.config import ParamSpec

    # ``a / b: text`` documents both fields.
    assert field_docs(ParamSpec)["low"] == field_docs(ParamSpec)["high"]
    assert field_docs(ParamSpec)["low"].startswith("bounds of ``float`` and ``int``")
    docs = field_docs(McmcOptunaSweeperConf)
    assert docs["heartbeat_interval"] != docs["grace_period"]
    assert docs["n_trials"].startswith("finished (complete or pruned) trials")
    assert "Population" in field_docs(type(TrainConfig().sampler))["incremental"]
