"""TrainerPopulation: K chains of their own configs, each the chain its lone TrainerMCMC runs,
in the one epoch loop of BaseTrainer (a chain may leave; each resumes from its checkpoint)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from mcmc_core.config import TrainConfig, build_trainer
from mcmc_core.data import DataConfig, DataSplits
from mcmc_core.models import ModelConfig
from mcmc_core.schedules import FlipRatioScheduleConfig, TemperatureScheduleConfig
from mcmc_core.trainers import (
    BaseTrainer,
    Callback,
    TrainerConfig,
    TrainerPopulation,
    load_checkpoint,
)

EPOCHS, STEPS = 3, 25
TIMING = ("epoch_time", "wall_time", "steps_per_s")


def configs(folder=None) -> list[TrainConfig]:
    """Three chains that differ in seed, temperature, flip ratio and both schedules."""
    base = TrainConfig(model=ModelConfig(name="mlp", hidden=[8]),
                       dataset=DataConfig(name="synthetic"), device="cpu",
                       trainer=TrainerConfig(epochs=EPOCHS, steps_per_epoch=STEPS))
    base.tracking.enabled = False
    chains = [(0, 1e-3, 0.02, TemperatureScheduleConfig(), FlipRatioScheduleConfig()),
              (1, 3e-3, 0.05, TemperatureScheduleConfig(name="cosine", unit="epochs"),
               FlipRatioScheduleConfig(name="exponential", cooling_rate=0.99)),
              (2, 1e-2, 0.1, TemperatureScheduleConfig(name="step", step_size=10),
               FlipRatioScheduleConfig())]
    out = []
    for k, (seed, t, f, sched, flips) in enumerate(chains):
        c = copy.deepcopy(base)
        c.seed, c.schedule, c.flip_schedule = seed, sched, flips
        c.sampler = replace(c.sampler, temperature=t, flip_ratio=f)
        if folder is not None:  # checkpoints, continued from
            c.trainer.checkpoint_dir, c.trainer.resume = str(folder / f"chain-{k}"), True
        out.append(c.validate())
    return out


def untimed(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [w.detach().cpu() for w in model.state_dict().values()]


# With the energy terms too (hidden margin, label smoothing, smooth hidden activation), and
# with start weights from the data.
@pytest.mark.parametrize(("margin_weight", "init", "smoothing", "smooth_hidden"), [
    (0.0, "random", 0.0, 0.0), (0.2, "random", 0.0, 0.0), (0.0, "data", 0.0, 0.0),
    (0.0, "random", 0.1, 0.0), (0.0, "random", 0.0, 3.0)])
def test_each_chain_is_its_lone_trainers_chain(synthetic: DataSplits, margin_weight: float,
                                               init: str, smoothing: float,
                                               smooth_hidden: float) -> None:
    cfgs = configs()
    for c in cfgs:
        c.sampler = replace(c.sampler, margin_weight=margin_weight, margin=3,
                            label_smoothing=smoothing, smooth_hidden=smooth_hidden)
        c.model.init = init
    population = TrainerPopulation(cfgs, synthetic)
    population.train()
    for k, cfg in enumerate(cfgs):
        lone = build_trainer(cfg, data=synthetic)
        lone.train()
        # The same weights, bit for bit, and the same epochs' metrics (the lone trainer
        # evaluates its model in float32, the population its stacked weights in float64).
        assert all(torch.equal(a, b) for a, b in zip(weights(population.chain_model(k)),
                                                      weights(lone.model)))
        assert untimed(population.records[k].history) == [
            pytest.approx(h, rel=1e-6) for h in untimed(lone.history)]
        assert population.final_metrics(k)["best_epoch"] == lone.final_metrics()["best_epoch"]


class LeaveAt(Callback):
    """Chain ``chain`` leaves after epoch ``epoch``."""

    def __init__(self, chain: int, epoch: int) -> None:
        self.chain, self.epoch, self.seen = chain, epoch, []

    def on_epochs_end(self, trainer: BaseTrainer, ended: dict[int, dict[str, float]]) -> None:
        self.seen.append(sorted(ended))
        if self.chain in ended and int(ended[self.chain]["epoch"]) == self.epoch:
            trainer.leave(self.chain)


def test_a_chain_that_leaves_changes_none_of_the_others(synthetic: DataSplits) -> None:
    whole = TrainerPopulation(configs(), synthetic)
    whole.train()
    leave = LeaveAt(chain=1, epoch=1)
    left = TrainerPopulation(configs(), synthetic, callbacks=[leave])
    left.train()
    # Chain 1 stopped after epoch 1; chains 0 and 2 went on, exactly as before.
    assert leave.seen == [[0, 1, 2], [0, 2], [0, 2]]
    assert [r.epoch for r in left.records] == [EPOCHS, 1, EPOCHS]
    assert untimed(left.records[1].history) == untimed(whole.records[1].history[:1])
    for k in (0, 2):
        assert untimed(left.records[k].history) == untimed(whole.records[k].history)
        assert all(torch.equal(a, b) for a, b in zip(weights(left.chain_model(k)),
                                                      weights(whole.chain_model(k))))


class Killed(Exception):
    """The process is gone (its checkpoints of the epoch are written)."""


class KillAfter(Callback):
    """Raise :class:`Killed` once the chains have finished epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epochs_end(self, trainer: BaseTrainer, ended: dict[int, dict[str, float]]) -> None:
        if max(int(m["epoch"]) for m in ended.values()) >= self.epoch:
            raise Killed


def run_until(cfgs: list[TrainConfig], data: DataSplits, epoch: int) -> None:
    """Train ``cfgs`` as one population, killed after ``epoch`` (none: to the end)."""
    try:
        TrainerPopulation(cfgs, data, callbacks=[KillAfter(epoch)]).train()
    except Killed:
        pass


@pytest.mark.parametrize("stopped_after", [1, 2])
def test_resumed_from_its_checkpoints_it_is_bit_identical(tmp_path, synthetic: DataSplits,
                                                          stopped_after: int) -> None:
    whole = TrainerPopulation(configs(tmp_path / "whole"), synthetic)
    whole.train()
    run_until(configs(tmp_path / "resumed"), synthetic, stopped_after)
    # A new process: every chain continues from its own last.pt.
    resumed = TrainerPopulation(configs(tmp_path / "resumed"), synthetic)
    resumed.train()
    for k in range(3):
        assert untimed(resumed.records[k].history) == untimed(whole.records[k].history)
        assert all(torch.equal(a, b) for a, b in zip(weights(resumed.chain_model(k)),
                                                      weights(whole.chain_model(k))))
        saved = [load_checkpoint(tmp_path / run / f"chain-{k}" / "last.pt")
                 for run in ("whole", "resumed")]
        assert saved[0]["step"] == saved[1]["step"] == EPOCHS * STEPS
        assert torch.equal(*(s["engine"]["population"]["n_accepted"] for s in saved))
    # And the lone trainer resumes a population chain's checkpoint to the same weights.
    cfg = configs(tmp_path / "resumed")[2]
    cfg.trainer.checkpoint_dir = str(tmp_path / "alone")
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "last.pt").write_bytes(
        (tmp_path / "resumed" / "chain-2" / "last.prev.pt").read_bytes())
    lone = build_trainer(cfg, data=synthetic)
    lone.train()
    assert all(torch.equal(a, b) for a, b in zip(weights(lone.model),
                                                  weights(whole.chain_model(2))))


def eight(folder) -> list[TrainConfig]:
    """Eight chains: the three of :func:`configs` and five more seeds and temperatures."""
    cfgs = configs(folder)
    for k in range(3, 8):
        c = copy.deepcopy(cfgs[k % 3])
        c.seed, c.trainer.checkpoint_dir = 10 + k, str(folder / f"chain-{k}")
        c.sampler = replace(c.sampler, temperature=1e-3 * (k - 1))
        cfgs.append(c.validate())
    return cfgs


@pytest.mark.parametrize("first, then", [(8, 1), (1, 8)])
def test_a_chain_moved_between_population_sizes_is_bit_identical(
        tmp_path, synthetic: DataSplits, first: int, then: int) -> None:
    """Epoch 1 in populations of ``first``, the rest in populations of ``then``: every chain
    ends as in one uninterrupted population of eight."""
    whole = TrainerPopulation(eight(tmp_path / "whole"), synthetic)
    whole.train()
    cfgs = eight(tmp_path / "moved")
    for size, epochs in ((first, 1), (then, EPOCHS)):
        for i in range(0, 8, size):
            run_until(cfgs[i:i + size], synthetic, epochs)
    for k, cfg in enumerate(cfgs):
        moved = TrainerPopulation([cfg], synthetic)
        moved.train()  # nothing left to run: it loads the chain's last checkpoint
        assert moved.records[0].epoch == EPOCHS
        assert untimed(moved.records[0].history) == untimed(whole.records[k].history)
        assert all(torch.equal(a, b) for a, b in zip(weights(moved.chain_model(0)),
                                                      weights(whole.chain_model(k))))


def test_configs_a_population_cannot_train_are_refused_one_line_each(
        synthetic: DataSplits) -> None:
    from mcmc_core import ConfigError

    cnn, wide = configs(), configs()
    cnn[1].model.name, cnn[1].sampler = "cnn", replace(cnn[1].sampler, energy="minibatch")
    wide[2].model.hidden = [16]
    with pytest.raises(ConfigError) as cnn_error:
        TrainerPopulation(cnn, synthetic)
    assert str(cnn_error.value).splitlines() == [
        "model.name='cnn' is not allowed: expected mlp in a population",
        "sampler.energy='minibatch' is not allowed: expected full in a population"]
    with pytest.raises(ConfigError, match="model.hidden, model.output_scale and model.init must be equal"):
        TrainerPopulation(wide, synthetic)
    # One energy subset for all (the first chain's seed's): a chain of another seed would not
    # be its lone trainer's chain.
    subset = [c for c in configs()]
    for c in subset:
        c.sampler = replace(c.sampler, energy_samples=64)
    with pytest.raises(ConfigError, match="energy_samples must be null when the chains' seeds"):
        TrainerPopulation(subset, synthetic)
    for c in subset:
        c.seed = 0
    TrainerPopulation(subset, synthetic)  # one seed: one subset, as each lone trainer's


def test_describe_names_the_kernel_and_the_chains_as_the_lone_trainer_does(
        synthetic: DataSplits) -> None:
    # One line for both trainers: the incremental kernel, the count of chains and the device.
    assert TrainerPopulation(configs()[:1], synthetic).describe() == (
        "engine: population (1 chain, cpu): candidates evaluated from the flips")
    assert TrainerPopulation(configs(), synthetic).describe() == (
        "engine: population (3 chains, cpu): candidates evaluated from the flips")
