"""The straight-through-estimator baseline on the same binary models and data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mcmc_core import Callback, TrainerSTE, binarize_model, binary_parameters
from mcmc_core.data import DataSplits
from mcmc_core.layers import sign
from mcmc_core.trainers import CHECKPOINT_NAME, TrainerConfig, load_checkpoint


def _ste(model: nn.Module, data: DataSplits, *, epochs: int = 3, lr: float = 0.01,
         batch_size: int = 64, checkpoint_dir: Path | None = None, resume: bool = False,
         callbacks: tuple[Callback, ...] = (), seed: int = 0) -> TrainerSTE:
    cfg = TrainerConfig(name="ste", epochs=epochs, lr=lr, batch_size=batch_size, verbose=False,
                        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                        resume=resume)
    return TrainerSTE(model, data=data, trainer=cfg, seed=seed, device="cpu", callbacks=callbacks)


def test_ste_accuracy_rises_well_above_chance(make_model: Callable[..., nn.Module],
                                              synthetic: DataSplits) -> None:
    trainer = _ste(make_model(hidden=[8]), synthetic, epochs=4)
    start = trainer.evaluate()
    final = trainer.train()
    assert final["train_accuracy"] > start["train_accuracy"] + 0.2
    assert final["test_accuracy"] > 1 / synthetic.n_classes + 0.3
    assert final["train_loss"] < start["train_loss"]
    assert [m["epoch"] for m in trainer.history] == [1, 2, 3, 4]
    for m in trainer.history:  # the same per-split metrics as the MCMC trainer
        keys = {f"{s}_{k}" for s in ("train", "val", "test") for k in ("loss", "accuracy")}
        assert keys <= set(m)
        assert m["steps_per_s"] > 0 and m["wall_time"] > 0
    assert trainer.step == 4 * 7  # ceil(432 / 64) batches per epoch


def test_ste_keeps_latent_weights_in_the_unit_interval(make_model: Callable[..., nn.Module],
                                                       synthetic: DataSplits) -> None:
    # A large learning rate drives latent weights against the clip within a few updates.
    trainer = _ste(make_model(hidden=[8]), synthetic, epochs=2, lr=0.5)
    trainer.train()
    latents = torch.cat([t.detach().view(-1) for t in trainer.latent])
    assert float(latents.abs().max()) == 1.0  # clipped, and the clip was needed
    assert int((latents.abs() == 1.0).sum()) > 10


def test_ste_model_weights_stay_plus_minus_one_and_follow_the_latent_signs(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    model = make_model(hidden=[8])
    start = [p.detach().clone() for p in binary_parameters(model)]
    trainer = _ste(model, synthetic, epochs=2, lr=0.05)
    trainer.train()
    params = binary_parameters(trainer.model)
    for p, latent in zip(params, trainer.latent, strict=True):
        assert set(p.detach().unique().tolist()) <= {-1.0, 1.0}
        assert torch.equal(p.detach(), sign(latent.detach()))
    assert not all(torch.equal(p.detach(), s) for p, s in zip(params, start))  # signs flipped


def test_ste_latent_weights_start_with_the_binary_signs(make_model: Callable[..., nn.Module],
                                                        synthetic: DataSplits) -> None:
    model = make_model(hidden=[8])
    trainer = _ste(model, synthetic)
    for p, latent in zip(binary_parameters(model), trainer.latent, strict=True):
        assert torch.equal(sign(latent.detach()), p.detach())
        assert float(latent.detach().abs().max()) <= 1.0


def test_ste_is_seeded(make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    runs = []
    for seed in (0, 0, 1):
        trainer = _ste(make_model(hidden=[8]), synthetic, epochs=1, seed=seed)
        trainer.train()
        runs.append([t.detach().clone() for t in trainer.latent])  # the shuffling moves them
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2]))


class _Interrupted(Exception):
    pass


class _StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise _Interrupted


def _dropout_model(seed: int) -> nn.Module:
    """A binary net with Dropout and BatchNorm: training draws from the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return binarize_model(nn.Sequential(
            nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.Dropout(0.3),
            nn.Linear(12, 3)))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_ste_resume_from_a_checkpoint_is_bit_identical(synthetic: DataSplits,
                                                       tmp_path: Path) -> None:
    torch.manual_seed(1234)  # what the uninterrupted run starts from...
    full = _ste(_dropout_model(0), synthetic, epochs=4, checkpoint_dir=tmp_path / "a")
    full.train()

    torch.manual_seed(1234)
    first = _ste(_dropout_model(0), synthetic, epochs=4, checkpoint_dir=tmp_path / "b",
                 callbacks=(_StopAfter(2),))
    with pytest.raises(_Interrupted):
        first.train()
    torch.manual_seed(999)  # ...a new process starts from anything
    resumed = _ste(_dropout_model(5), synthetic, epochs=4, checkpoint_dir=tmp_path / "b",
                   resume=True)
    resumed.train()

    a, b = _state(full.model), _state(resumed.model)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert all(torch.equal(x, y) for x, y in zip(full.latent, resumed.latent))
    assert [m["train_loss"] for m in resumed.history] == [m["train_loss"] for m in full.history]
    ckpt = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert ckpt["trainer"] == "ste" and ckpt["epoch"] == 4
