"""``model.init=data``: a binary MLP's first hidden layer from the training inputs."""

from __future__ import annotations

import pytest
import torch

from mcmc_core.config import TrainConfig, build_trainer
from mcmc_core.data import DataConfig, load_dataset
from mcmc_core.models import ModelConfig, build_model, data_weights

SHAPE = (1, 4, 4)


def structured(n: int = 400, seed: int = 0) -> torch.Tensor:
    """±1 images of one pattern times a random sign, with noise; pixel 0 is minus pixel 1 and
    pixel 2 never varies."""
    g = torch.Generator().manual_seed(seed)
    pattern = torch.randint(0, 2, (16,), generator=g) * 2.0 - 1
    x = torch.randint(0, 2, (n, 1), generator=g) * 2.0 - 1
    x = torch.sign(x * pattern + 0.8 * torch.randn(n, 16, generator=g))
    x[:, 1], x[:, 2] = -x[:, 0], 1.0
    return x.view(n, *SHAPE)


def mlp(init: str, inputs: torch.Tensor | None, seed: int = 3) -> torch.nn.Module:
    return build_model(ModelConfig(name="mlp", hidden=[64], init=init), SHAPE, 2, seed=seed,
                       inputs=inputs)


def test_data_weights_are_signs_of_centred_data_combinations() -> None:
    w = data_weights(structured(), 64, seed=1)
    assert w.shape == (64, 16) and w.dtype == torch.float32
    assert set(w.unique().tolist()) == {-1.0, 1.0}
    # Each unit is a combination of the data: anti-correlated inputs get opposite signs ...
    assert torch.equal(w[:, 1], -w[:, 0])
    # ... and the input the data never varies gets random signs, not one sign for all units.
    assert set(w[:, 2].tolist()) == {-1.0, 1.0}


def test_data_weights_depend_on_the_seed_alone() -> None:
    x = structured()
    assert torch.equal(data_weights(x, 64, seed=1), data_weights(x.clone(), 64, seed=1))
    assert not torch.equal(data_weights(x, 64, seed=1), data_weights(x, 64, seed=2))


def test_data_init_units_follow_the_data() -> None:
    x = structured()
    data, rand = mlp("data", x), mlp("random", None)
    # Hidden pre-activations vary across the images far more when units start along the
    # directions the data varies in (here one pattern) than from random signs.
    spread = [torch.var(m.layers[1].weight @ x.view(len(x), -1).t(), dim=1).mean()
              for m in (data, rand)]
    assert spread[0] > 3 * spread[1]
    # Only the first hidden layer comes from the data; the rest is the seed's random start.
    assert torch.equal(data.layers[3].weight, rand.layers[3].weight)
    assert not torch.equal(data.layers[1].weight, rand.layers[1].weight)


def test_data_init_needs_the_inputs() -> None:
    with pytest.raises(ValueError, match="model.init=data needs the training inputs"):
        mlp("data", None)


def test_mcmc_train_starts_from_its_training_inputs() -> None:
    cfg = TrainConfig(model=ModelConfig(name="mlp", hidden=[8], init="data"),
                      dataset=DataConfig(name="synthetic"), device="cpu", seed=5)
    cfg.tracking.enabled = False
    data = load_dataset(cfg.dataset)
    trainer = build_trainer(cfg, data=data)
    assert torch.equal(trainer.model.layers[1].weight.detach(),
                       data_weights(data.train.inputs, 8, seed=5))
