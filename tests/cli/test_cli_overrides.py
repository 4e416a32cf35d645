"""``override_errors``: the check ``mcmc-train`` runs on its command line before Hydra composes."""

from __future__ import annotations

import pytest

from sweeps.cli.train_app import override_errors


@pytest.mark.parametrize("args", [
    [],
    ["model=cnn", "dataset=synthetic", "schedule=step", "sampler=tempering", "trainer=ste",
     "tracking=none", "flip_schedule=exponential", "experiment=original"],
    ["sampler.temperature=1e-4", "trainer.epochs=3", "trainer.steps_per_epoch=null",
     "model.hidden=[256,64]", "trainer.resume=true", "tracking.uri=sqlite:///x.db", "seed=7"],
    # Hydra's flags, its own keys, sweeps and appends are Hydra's business.
    ["--multirun", "sampler.temperature=1e-3,1e-2", "hydra.run.dir=somewhere", "--cfg", "job",
     "+extra=1", "~seed"],
    # With other config folders, only Hydra knows which groups and options exist.
    ["--config-dir", "elsewhere", "model=custom"],
])
def test_valid_or_hydra_owned_overrides_pass(args: list[str]) -> None:
    assert override_errors(args) == []


def test_unknown_group_options_list_the_choices() -> None:
    assert override_errors(["model=nope", "tracking=off"]) == [
        "model='nope' is not allowed: expected one of alexnet, cnn, mlp, resnet18",
        "tracking='off' is not allowed: expected one of mlflow, none",
    ]


def test_wrong_types_name_the_expected_type() -> None:
    assert override_errors(["sampler.temperature=abc", "seed=x", "dataset.synthetic_shape=3",
                            "tracking.run_name=[1]", "sampler.energy_samples=all"]) == [
        "sampler.temperature='abc' is not allowed: expected a number",
        "seed='x' is not allowed: expected an integer",
        "dataset.synthetic_shape=3 is not allowed: expected a list of integers, e.g. [1, 2]",
        "tracking.run_name=[1] is not allowed: expected a string or null",
        "sampler.energy_samples='all' is not allowed: expected an integer or null",
    ]


def test_unknown_keys_list_the_known_ones() -> None:
    sampler, top = override_errors(["sampler.temprature=0.1", "epochs=3"])
    assert sampler.startswith("sampler.temprature=0.1 is not allowed: expected a key of sampler: ")
    assert "temperature, flip_ratio" in sampler
    assert top.startswith("epochs=3 is not allowed: expected a top-level key or group: ")
    assert "trainer" in top and "experiment" in top
