"""The research code's quick start, piece by piece through ``mcmc_core``'s API: dataset names in
any case, ``train(debug=...)``, torchvision's AlexNet fitted to 1-channel data, and the API's
defaults equal to ``mcmc-train``'s."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from mcmc_core import ConfigError, TrainerMCMC, binarize_model
from mcmc_core.config import TrainConfig, register_configs
from mcmc_core.data import DataConfig, load_dataset
from mcmc_core.layers import BinaryConv2d, BinaryLinear
from mcmc_core.models import ModelMismatchError
from mcmc_core.trainers import TrainerConfig

ROOT = Path(__file__).resolve().parents[2]
QUIET = TrainerConfig(epochs=1, steps_per_epoch=2, verbose=False)


# -- 1. dataset names ignore case, '-' and '_' ----------------------------------------------------
@pytest.mark.parametrize(("given", "name"), [("MNIST", "mnist"), ("Digits", "digits"),
                                             ("FashionMNIST", "fashion_mnist"),
                                             ("Fashion-MNIST", "fashion_mnist"),
                                             ("CIFAR10", "cifar10"), ("digits", "digits")])
def test_dataset_names_are_case_insensitive(given: str, name: str) -> None:
    # The original's spelling is the canonical name.
    assert DataConfig(name=given).name == name
    assert DataConfig(name=given).errors() == []


def test_the_trainer_loads_a_dataset_named_in_capitals() -> None:
    model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), dataset_name="DIGITS", trainer=QUIET)
    # The data are digits, reported under their canonical name.
    assert trainer.data.name == "digits" and trainer.data.input_shape == (1, 8, 8)


def test_an_unknown_dataset_name_is_one_line_naming_it_and_the_allowed_ones() -> None:
    model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    with pytest.raises(ConfigError) as caught:
        TrainerMCMC(model, nn.CrossEntropyLoss(), dataset_name="ImageNet")
    # One line: the bad value as given, then every allowed name.
    assert str(caught.value) == ("dataset.name='ImageNet' is not allowed: expected one of "
                                 "digits, mnist, fashion_mnist, cifar10, idx, synthetic")


# -- 2. train(debug=...) --------------------------------------------------------------------------
def _digits_trainer() -> TrainerMCMC:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    return TrainerMCMC(model, nn.CrossEntropyLoss(), "digits", 1e-3, 3e-3, trainer=QUIET,
                       device="cpu")


def test_debug_is_accepted_as_the_original_passed_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # The original's call, positional as its signature allowed, then by keyword.
    final = _digits_trainer().train(1, 0)
    assert final["epoch"] == 1
    assert _digits_trainer().train(n_epoch=1, debug=0)["epoch"] == 1
    # debug=0 logs nothing.
    assert [r for r in caplog.records if r.name.startswith("mcmc_core")] == []


def test_debug_logs_the_settings_and_each_epoch_and_changes_no_result(
        caplog: pytest.LogCaptureFixture) -> None:
    plain = _digits_trainer().train(n_epoch=1, debug=0)
    # The logger is left at its default level: the run itself must turn DEBUG records on.
    assert logging.getLogger("mcmc_core.trainers").getEffectiveLevel() == logging.WARNING
    debugged = _digits_trainer().train(n_epoch=1, debug=1)
    lines = [r.getMessage() for r in caplog.records if r.name == "mcmc_core.trainers"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name.startswith("mcmc"))
    # The settings before the first epoch, the epoch's metrics and timings after it.
    assert any(line.startswith("data: dataset=digits") for line in lines)
    assert any(line.startswith("sampler: SamplerConfig(temperature=0.001, flip_ratio=0.003")
               for line in lines)
    assert any(line.startswith("chain 0 epoch 1: ") for line in lines)
    assert any(line.startswith("epoch seconds: {'step'") for line in lines)
    # The same seeded chain: identical results.
    assert debugged["test_accuracy"] == plain["test_accuracy"]
    # The logger's level is restored after the run.
    assert logging.getLogger("mcmc_core.trainers").level == logging.NOTSET


def test_debug_without_logging_configured_prints_to_stderr(
        capfd: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers = root.handlers[:]
    for h in handlers:  # no logging configuration at all, as in a plain script
        root.removeHandler(h)
    try:
        _digits_trainer().train(n_epoch=1, debug=True)
    finally:
        for h in handlers:
            root.addHandler(h)
    err = capfd.readouterr().err
    assert "debug: data: dataset=digits" in err and "debug: chain 0 epoch 1: " in err


def test_a_negative_debug_is_refused() -> None:
    with pytest.raises(ValueError, match=r"debug must be 0 \(off\) or more, but got debug=-1"):
        _digits_trainer().train(n_epoch=1, debug=-1)


# -- 3. a model built for other data is fitted to the trainer's -----------------------------------
def test_torchvision_alexnet_is_adapted_to_one_channel_data_and_trains() -> None:
    data = load_dataset(DataConfig(name="synthetic", synthetic_shape=[1, 12, 12],
                                   synthetic_samples=40))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = binarize_model(torchvision.models.AlexNet())  # 3 channels, 1000 classes
    trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), data=data, trainer=QUIET, device="cpu")
    # The CLI's model=alexnet adaptation: small-image stem for 1 channel, 3 classes out.
    stem, last = model.features[0], model.classifier[-1]
    assert isinstance(stem, BinaryConv2d) and stem.in_channels == 1
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert isinstance(last, BinaryLinear) and last.out_features == 3
    assert trainer.model is model and len(trainer.model_changes) == 3
    # Binarized like the rest: ±1 weights, the model's output scale kept on the last layer.
    assert set(stem.weight.unique().tolist()) == {-1.0, 1.0} and last.output_factor == 4.0
    final = trainer.train()
    assert final["epoch"] == 1 and final["test_accuracy"] == final["test_accuracy"]  # not nan


def test_a_model_that_already_fits_is_left_as_given() -> None:
    model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), output_scale=4.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), "digits", trainer=QUIET)
    assert trainer.model_changes == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_model_that_cannot_fit_is_refused_in_one_line() -> None:
    model = binarize_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 10)))
    with pytest.raises(ModelMismatchError) as caught:
        TrainerMCMC(model, nn.CrossEntropyLoss(), "digits")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("model Sequential does not fit dataset=digits (inputs (1, 8, 8), "
                              "10 classes): ")
    assert "make its first layer take 1 channels and its last layer give 10 outputs" in message


def test_a_model_with_other_than_one_output_per_class_is_refused() -> None:
    model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)))
    with pytest.raises(ModelMismatchError, match=r"it gives outputs of shape \(2, 7\) for 2 "
                                                 r"inputs, expected \(2, 10\)"):
        TrainerMCMC(model, nn.CrossEntropyLoss(), "digits")


# -- 4. one set of defaults -----------------------------------------------------------------------
def _cli_defaults() -> TrainConfig:
    """``mcmc-train``'s config with no overrides: ``conf/train.yaml`` composed by Hydra."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train")
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def test_the_api_defaults_are_the_cli_defaults() -> None:
    cli = _cli_defaults()
    model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    api = TrainerMCMC(model)  # every default, as the quick start leaves them
    # Every setting of the chain, the schedules and the loop.
    assert api.sampler_cfg == cli.sampler
    assert api.schedule_cfg == cli.schedule
    assert api.flip_schedule_cfg == cli.flip_schedule
    assert dataclasses.replace(api.cfg) == cli.trainer
    assert api.data.name == cli.dataset.name
    # The model's logit scale: binarize_model's default is model.output_scale's.
    assert model[1].output_factor == cli.model.output_scale
    # And the ones only the signature holds.
    params = inspect.signature(TrainerMCMC).parameters
    assert params["seed"].default == cli.seed and params["device"].default == cli.device
    # The example of the issue: the cooling rate of the default (exponential) schedule.
    assert api.schedule_cfg.cooling_rate == cli.schedule.cooling_rate == 0.9995
