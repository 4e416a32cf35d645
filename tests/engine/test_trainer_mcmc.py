"""End-to-end runs of the MCMC trainer on the seeded ``synthetic`` problem."""

from __future__ import annotations

import gzip
import itertools
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mcmc_core import Callback, TrainerMCMC, binarize_model, binary_parameters
from mcmc_core.data import DataConfig, DataSplits
from mcmc_core.data._synthetic import make_synthetic
from mcmc_core.energy import FullEnergy
from mcmc_core.functional import flip_count
from mcmc_core.optim import SamplerConfig
from mcmc_core.schedules import SCHEDULE_NAMES, FlipRatioScheduleConfig, TemperatureScheduleConfig
from mcmc_core.trainers import CHECKPOINT_NAME, TrainerConfig, load_checkpoint

SPLITS = ("train", "val", "test")
EPOCH_KEYS = {f"{s}_{m}" for s in SPLITS for m in ("loss", "accuracy")} | {
    "acceptance_rate", "temperature", "flip_ratio", "steps_per_s", "wall_time", "epoch_time",
    "epoch", "step", "energy"}
TIMING_KEYS = {"steps_per_s", "wall_time", "epoch_time"}


def _trainer(model: nn.Module, data: DataSplits, *, epochs: int = 3, steps: int = 40,
             checkpoint_dir: Path | None = None, resume: bool = False,
             callbacks: tuple[Callback, ...] = (), verbose: bool = False,
             **kwargs: Any) -> TrainerMCMC:
    sampler = kwargs.pop("sampler", SamplerConfig(temperature=1e-3, flip_ratio=0.05))
    trainer = TrainerConfig(epochs=epochs, steps_per_epoch=steps, verbose=verbose, resume=resume,
                            checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)
    return TrainerMCMC(model, data=data, sampler=sampler, trainer=trainer, device="cpu",
                       callbacks=callbacks, **kwargs)


class Recorder(Callback):
    """Records every hook call and the first chain's counts at each epoch end."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.counts: list[tuple[int, int]] = []

    def on_train_start(self, trainer: Any) -> None:
        self.calls.append(("start", trainer.epoch))

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.calls.append(("epoch", (epoch, dict(metrics))))
        self.counts.append(trainer.engine.counts())

    def on_checkpoint(self, trainer: Any, path: str) -> None:
        self.calls.append(("checkpoint", path))

    def on_train_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        self.calls.append(("end", dict(metrics)))


class Interrupted(Exception):
    pass


class StopAfter(Callback):
    """Kill the run after an epoch, as a crash or a pruner would (after its checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise Interrupted(epoch)


# -- metrics and callbacks -----------------------------------------------------------------------
def test_each_epoch_reports_every_metric_and_calls_back(make_model: Callable[..., nn.Module],
                                                        synthetic: DataSplits,
                                                        tmp_path: Path) -> None:
    recorder = Recorder()
    trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=3, steps=30,
                       checkpoint_dir=tmp_path, callbacks=(recorder,))
    final = trainer.train()
    history = trainer.history
    assert [m["epoch"] for m in history] == [1, 2, 3]
    for m in history:
        assert EPOCH_KEYS <= set(m)
        for s in SPLITS:
            assert m[f"{s}_loss"] > 0 and 0.0 <= m[f"{s}_accuracy"] <= 1.0
        assert 0.0 <= m["acceptance_rate"] <= 1.0
        assert m["steps_per_s"] > 0 and m["epoch_time"] > 0
        assert m["flip_ratio"] == 0.05
    assert [m["step"] for m in history] == [30, 60, 90]
    walls = [m["wall_time"] for m in history]
    assert walls == pytest.approx(list(itertools.accumulate(m["epoch_time"] for m in history)))
    # The last epoch's split metrics are those of the final weights.
    assert {k: history[-1][k] for k in trainer.evaluate()} == trainer.evaluate()
    # Callbacks: start, then per epoch a checkpoint and the metrics, then the final metrics.
    names = [name for name, _ in recorder.calls]
    assert names == ["start"] + ["checkpoint", "epoch"] * 3 + ["end"]
    assert [payload for name, payload in recorder.calls if name == "epoch"] == [
        (m["epoch"], m) for m in history]
    assert all(p == str(tmp_path / CHECKPOINT_NAME)
               for name, p in recorder.calls if name == "checkpoint")
    assert recorder.calls[-1][1] == final
    assert final["test_accuracy"] == history[-1]["test_accuracy"]
    assert {"best_epoch", "best_val_accuracy", "best_test_accuracy"} <= set(final)


def test_acceptance_rate_is_that_of_the_epoch_not_cumulative(make_model: Callable[..., nn.Module],
                                                             synthetic: DataSplits) -> None:
    recorder = Recorder()
    trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=4, steps=50,
                       callbacks=(recorder,),
                       sampler=SamplerConfig(temperature=0.02, flip_ratio=0.05))
    trainer.train()
    counts = [(0, 0)] + recorder.counts
    per_epoch = [(a1 - a0) / (p1 - p0) for (p0, a0), (p1, a1) in zip(counts, counts[1:])]
    assert [m["acceptance_rate"] for m in trainer.history] == pytest.approx(per_epoch)
    assert [p for p, _ in recorder.counts] == [50, 100, 150, 200]
    cumulative = [a / p for p, a in recorder.counts]
    assert per_epoch != pytest.approx(cumulative)  # the check above tells them apart


def test_prints_one_line_per_epoch_and_the_test_accuracy_last(
        make_model: Callable[..., nn.Module], synthetic: DataSplits,
        capsys: pytest.CaptureFixture[str]) -> None:
    _trainer(make_model(), synthetic, epochs=2, steps=10, verbose=True).train()
    engine, *lines = capsys.readouterr().out.strip().splitlines()
    assert engine == "engine: population (1 chain, cpu): candidates evaluated from the flips"
    assert len(lines) == 4
    assert lines[0].startswith("epoch 1/2") and lines[1].startswith("epoch 2/2")
    fields = lines[1].split(" | ")
    assert [f.split()[0] for f in fields[:6]] == ["epoch", "loss", "accuracy", "accept", "T",
                                                  "flip_ratio"]
    assert fields[1].split()[1::2] == ["train", "val", "test"] == fields[2].split()[1::2]
    assert fields[6].endswith(" steps/s") and fields[7].endswith("s")
    assert "test_accuracy=" in lines[-2] and "test_accuracy=" in lines[-1]


# -- learning ------------------------------------------------------------------------------------
def test_accuracy_rises_well_above_chance(make_model: Callable[..., nn.Module],
                                          synthetic: DataSplits) -> None:
    trainer = _trainer(make_model(), synthetic, epochs=4, steps=100)
    start = trainer.evaluate()
    final = trainer.train()
    chance = 1 / synthetic.n_classes
    assert final["train_accuracy"] > start["train_accuracy"] + 0.2
    assert final["train_accuracy"] > 0.75
    assert final["test_accuracy"] > chance + 0.3
    assert final["train_loss"] < start["train_loss"]
    assert final["energy"] == pytest.approx(final["train_loss"], rel=1e-5)  # full energy


@pytest.mark.parametrize("proposal", ["layer", "all"])
@pytest.mark.parametrize("acceptance", ["metropolis", "barker"])
def test_acceptance_rules_and_proposals_learn(make_model: Callable[..., nn.Module],
                                              synthetic: DataSplits, acceptance: str,
                                              proposal: str) -> None:
    sampler = SamplerConfig(temperature=1e-3, flip_ratio=0.05, acceptance=acceptance,
                            proposal=proposal)
    trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=3, steps=100, sampler=sampler)
    start = trainer.evaluate()
    final = trainer.train()
    assert (trainer.engine.acceptance, trainer.engine.proposal) == (acceptance, proposal)
    assert final["train_accuracy"] > max(0.6, start["train_accuracy"] + 0.2)
    assert final["test_accuracy"] > 0.5
    assert all(0 < m["acceptance_rate"] < 1 for m in trainer.history[:1])


@pytest.mark.parametrize("proposal", ["layer", "all"])
def test_barker_and_metropolis_chains_differ(make_model: Callable[..., nn.Module],
                                             synthetic: DataSplits, proposal: str) -> None:
    """At a temperature where uphill moves matter, the rule changes the chain."""
    weights = []
    for acceptance in ("metropolis", "barker"):
        sampler = SamplerConfig(temperature=0.05, flip_ratio=0.05, acceptance=acceptance,
                                proposal=proposal)
        trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=1, steps=100,
                           sampler=sampler, schedule=TemperatureScheduleConfig(name="constant"))
        trainer.train()
        weights.append([p.clone() for p in binary_parameters(trainer.model)])
        if acceptance == "metropolis":
            metropolis_rate = trainer.history[0]["acceptance_rate"]
        else:
            # Barker accepts less than Metropolis for the same moves (at most 1/2 when flat).
            assert trainer.history[0]["acceptance_rate"] < metropolis_rate
    assert not all(torch.equal(a, b) for a, b in zip(*weights))


def test_minibatch_energy_learns(make_model: Callable[..., nn.Module],
                                 synthetic: DataSplits) -> None:
    sampler = SamplerConfig(temperature=1e-3, flip_ratio=0.05, energy="minibatch", batch_size=64)
    trainer = _trainer(make_model(), synthetic, epochs=3, steps=100, sampler=sampler)
    start = trainer.evaluate()
    final = trainer.train()
    assert final["train_accuracy"] > start["train_accuracy"] + 0.15


def test_full_energy_on_a_fixed_subset(make_model: Callable[..., nn.Module],
                                       synthetic: DataSplits) -> None:
    sampler = SamplerConfig(temperature=1e-3, flip_ratio=0.05, energy_samples=100)
    trainer = _trainer(make_model(), synthetic, epochs=2, steps=100, sampler=sampler)
    assert len(trainer.energy.targets) == 100
    final = trainer.train()
    assert final["train_accuracy"] > 0.6
    assert final["energy"] != pytest.approx(final["train_loss"], rel=1e-4)  # not the whole split


def test_same_seed_same_weights_other_seed_other_weights(make_model: Callable[..., nn.Module],
                                                         synthetic: DataSplits) -> None:
    runs = []
    for seed in (0, 0, 1):
        trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=2, steps=30, seed=seed)
        trainer.train()
        runs.append(trainer.model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_steps_per_epoch_defaults_to_one_pass_in_minibatches(make_model: Callable[..., nn.Module],
                                                             synthetic: DataSplits) -> None:
    trainer = _trainer(make_model(), synthetic, epochs=1, steps=None,
                       sampler=SamplerConfig(batch_size=64))
    assert trainer.steps_per_epoch == math.ceil(len(synthetic.train) / 64) == 7
    trainer.train()
    assert trainer.engine.counts()[0] == 7


# -- engines -------------------------------------------------------------------------------------
def test_a_binary_mlp_on_the_full_energy_runs_as_a_population(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=1, steps=20)
    assert trainer.engine_reason is None
    assert trainer.engine.kernel == "incremental" and len(trainer.engine.population) == 1
    trainer.train()
    # The model holds the chain's weights, and the cached energy is its full-forward loss.
    full = FullEnergy(nn.CrossEntropyLoss(), synthetic.train).closure(trainer.model)()
    assert trainer.engine.current_energy() == pytest.approx(full, rel=1e-6)


@pytest.mark.parametrize(("model_kwargs", "sampler", "criterion", "reason"), [
    ({}, SamplerConfig(incremental=False), None, "incremental=false"),
    ({}, SamplerConfig(energy="minibatch"), None, "energy=minibatch"),
    ({}, SamplerConfig(coupled=True), None, "coupled=true"),
    ({}, SamplerConfig(), nn.CrossEntropyLoss(label_smoothing=0.1), "CrossEntropyLoss"),
    ({"conv": True}, SamplerConfig(), None, "only binary MLPs"),
])
def test_other_settings_run_one_sampler_per_replica(make_model: Callable[..., nn.Module],
                                                     synthetic: DataSplits,
                                                     model_kwargs: dict[str, Any],
                                                     sampler: SamplerConfig,
                                                     criterion: nn.Module | None,
                                                     reason: str) -> None:
    model = make_model()
    if model_kwargs.get("conv"):
        model = binarize_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)))
    trainer = _trainer(model, synthetic, epochs=1, steps=10, sampler=sampler,
                       criterion=criterion)
    assert trainer.engine.kernel == "forward"
    assert reason in str(trainer.engine_reason)
    assert trainer.describe().startswith("engine: sampler (1 chain, cpu): a forward pass")
    assert trainer.describe().endswith(f"because {trainer.engine_reason}")
    trainer.train()
    assert trainer.engine.counts()[0] == 10


@pytest.mark.parametrize("incremental", [True, False])
def test_per_step_flip_schedules_set_every_steps_flip_count(make_model: Callable[..., nn.Module],
                                                            synthetic: DataSplits,
                                                            incremental: bool) -> None:
    flip = FlipRatioScheduleConfig(name="exponential", cooling_rate=0.9)
    trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=2, steps=15,
                       flip_schedule=flip,
                       sampler=SamplerConfig(temperature=1e-3, flip_ratio=0.5,
                                             incremental=incremental))
    trainer.train()
    assert [m["flip_ratio"] for m in trainer.history] == pytest.approx([0.5 * 0.9**15,
                                                                        0.5 * 0.9**30])
    if incremental:  # the population flips as many weights as the schedule asks for
        numels = [w[0].numel() for w in trainer.engine.population.net.weights]
        ratio = 0.5 * 0.9**29  # that of the last step taken
        assert trainer.engine.population.flip_counts() == [[flip_count(ratio, n)
                                                            for n in numels]]


# -- parallel tempering --------------------------------------------------------------------------
def test_parallel_tempering_runs_a_ladder_and_reports_swap_rates(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    sampler = SamplerConfig(temperature=2e-3, flip_ratio=0.05, n_replicas=3, ladder_ratio=4.0,
                            swap_interval=5)
    trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=2, steps=50, sampler=sampler,
                       schedule=TemperatureScheduleConfig(name="constant"))
    assert len(trainer.models) == 3 and trainer.models[0] is trainer.model
    assert trainer.engine_reason is None  # a population of three
    assert trainer.engine.temperatures() == pytest.approx([2e-3, 8e-3, 32e-3])
    start = trainer.evaluate()
    final = trainer.train()
    for m in trainer.history:
        rates = [m["swap_rate_0_1"], m["swap_rate_1_2"]]
        assert all(0.0 <= r <= 1.0 for r in rates)
    assert trainer.tempering is not None and sum(trainer.tempering.attempts) == 20
    assert final["train_accuracy"] > start["train_accuracy"] + 0.2
    # Every replica sampled: each has its own counts.
    assert all(trainer.engine.counts(k)[0] == 100 for k in range(3))
    # The metrics are those of the coldest chain, replica 0.
    assert final["temperature"] == pytest.approx(2e-3)


def test_annealing_keeps_the_tempering_ladder(make_model: Callable[..., nn.Module],
                                             synthetic: DataSplits) -> None:
    sampler = SamplerConfig(temperature=0.01, n_replicas=3, ladder_ratio=2.0)
    schedule = TemperatureScheduleConfig(name="exponential", cooling_rate=0.9)
    trainer = _trainer(make_model(), synthetic, epochs=1, steps=20, sampler=sampler,
                       schedule=schedule)
    trainer.train()
    temperatures = trainer.engine.temperatures()
    assert temperatures == pytest.approx([0.01 * 0.9**20 * 2**k for k in range(3)])


def test_parallel_tempering_with_minibatch_energy(make_model: Callable[..., nn.Module],
                                                  synthetic: DataSplits) -> None:
    sampler = SamplerConfig(temperature=2e-3, flip_ratio=0.05, n_replicas=2, energy="minibatch",
                            batch_size=64, swap_interval=2)
    trainer = _trainer(make_model(), synthetic, epochs=2, steps=40, sampler=sampler)
    final = trainer.train()
    assert 0.0 <= final["swap_rate_0_1"] <= 1.0
    assert trainer.tempering is not None and trainer.tempering.attempts == [20]


def test_parallel_tempering_with_minibatch_energy_reports_the_energy_after_a_swap(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    """Each epoch ends with an exchange here, and some of them swap the coldest chain's state."""
    sampler = SamplerConfig(temperature=0.05, n_replicas=2, ladder_ratio=1.5, energy="minibatch",
                            swap_interval=1)
    trainer = _trainer(make_model(hidden=[8]), synthetic, epochs=10, steps=1, sampler=sampler)
    trainer.train()
    assert trainer.tempering is not None and sum(trainer.tempering.accepts) > 0
    assert all(math.isfinite(m["energy"]) for m in trainer.history)


# -- schedules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_each_temperature_schedule_anneals_the_chain(make_model: Callable[..., nn.Module],
                                                     synthetic: DataSplits, name: str) -> None:
    t0, floor, epochs, steps = 0.01, 1e-4, 3, 20
    unit = "epochs" if name == "step" else "steps"
    schedule = TemperatureScheduleConfig(name=name, unit=unit, cooling_rate=0.95, step_size=1,
                                         gamma=0.5, min_temperature=floor)
    trainer = _trainer(make_model(), synthetic, epochs=epochs, steps=steps, schedule=schedule,
                       sampler=SamplerConfig(temperature=t0, flip_ratio=0.05))
    trainer.train()
    reported = [m["temperature"] for m in trainer.history]
    last = reported[-1]  # per step: the next step's; per epoch: the epoch just run
    units = epochs * steps if unit == "steps" else epochs - 1
    expected_last = {
        "constant": t0,
        "exponential": t0 * 0.95 ** units,
        "step": t0 * 0.5 ** units,
        "linear": floor,  # the whole run is the horizon: the floor is reached at its end
        "cosine": floor,
    }[name]
    assert last == pytest.approx(expected_last, rel=1e-9)
    if name == "constant":
        assert reported == [t0] * epochs
    else:
        assert reported == sorted(reported, reverse=True) and reported[0] > reported[-1]
        assert all(floor <= t < t0 for t in reported[1:])
    if name == "step":  # per epoch: the temperature that epoch ran at
        per_epoch = [t0 * 0.5**e for e in range(epochs)]
        assert all(a in (pytest.approx(b), pytest.approx(b / 2))
                   for a, b in zip(reported, per_epoch))


def test_flip_ratio_schedule_and_coupling(make_model: Callable[..., nn.Module],
                                          synthetic: DataSplits) -> None:
    flip = FlipRatioScheduleConfig(name="exponential", unit="epochs", cooling_rate=0.5)
    trainer = _trainer(make_model(), synthetic, epochs=3, steps=10, flip_schedule=flip,
                       sampler=SamplerConfig(temperature=1e-3, flip_ratio=0.2))
    trainer.train()
    assert [m["flip_ratio"] for m in trainer.history] == pytest.approx([0.2, 0.1, 0.05])
    assert [m["temperature"] for m in trainer.history] != [1e-3] * 3  # default: exponential

    coupled = _trainer(make_model(), synthetic, epochs=2, steps=10,
                       sampler=SamplerConfig(temperature=0.3, flip_ratio=0.01, coupled=True),
                       schedule=TemperatureScheduleConfig(name="step", unit="epochs", gamma=0.5))
    coupled.train()
    assert [m["flip_ratio"] for m in coupled.history] == [m["temperature"] for m in
                                                          coupled.history]
    assert coupled.history[0]["flip_ratio"] != coupled.history[1]["flip_ratio"]


# -- checkpoints and resume ----------------------------------------------------------------------
RESUME_CASES = {
    "full": dict(sampler=SamplerConfig(temperature=0.01, flip_ratio=0.05)),
    "minibatch-coupled-step": dict(
        sampler=SamplerConfig(temperature=0.05, energy="minibatch", batch_size=64, coupled=True),
        schedule=TemperatureScheduleConfig(name="step", unit="epochs", step_size=1, gamma=0.5)),
    "tempering-3": dict(
        sampler=SamplerConfig(temperature=5e-3, flip_ratio=0.05, n_replicas=3, swap_interval=7)),
    "sampler-engine-tempering-2": dict(
        sampler=SamplerConfig(temperature=5e-3, flip_ratio=0.05, n_replicas=2, swap_interval=3,
                              incremental=False)),
    "margin-tempering-2": dict(
        sampler=SamplerConfig(temperature=5e-3, flip_ratio=0.05, n_replicas=2, swap_interval=3,
                              margin_weight=0.05, margin=3)),
    "smooth-hidden-margin-smoothing": dict(
        sampler=SamplerConfig(temperature=5e-3, flip_ratio=0.05, smooth_hidden=3.0,
                              margin_weight=0.05, margin=3, label_smoothing=0.1)),
    "per-step-flip-decay": dict(
        sampler=SamplerConfig(temperature=0.01, flip_ratio=0.2),
        flip_schedule=FlipRatioScheduleConfig(name="exponential", cooling_rate=0.97)),
    "barker-all-subset-linear-flipdecay": dict(
        sampler=SamplerConfig(temperature=0.02, flip_ratio=0.1, acceptance="barker",
                              proposal="all", energy_samples=200),
        schedule=TemperatureScheduleConfig(name="linear", unit="steps"),
        flip_schedule=FlipRatioScheduleConfig(name="cosine", unit="epochs", min_flip_ratio=0.01)),
}


def _state(trainer: TrainerMCMC) -> list[dict[str, torch.Tensor]]:
    return [m.state_dict() for m in trainer.models]


def _same_weights(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def _untimed(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in history]


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_from_a_checkpoint_is_bit_identical(make_model: Callable[..., nn.Module],
                                                   synthetic: DataSplits, tmp_path: Path,
                                                   case: str) -> None:
    kwargs = RESUME_CASES[case]
    epochs, steps = 4, 25

    uninterrupted = _trainer(make_model(hidden=[8]), synthetic, epochs=epochs, steps=steps,
                             checkpoint_dir=tmp_path / "a", seed=3, **kwargs)
    uninterrupted.train()

    first = _trainer(make_model(hidden=[8]), synthetic, epochs=epochs, steps=steps,
                     checkpoint_dir=tmp_path / "b", seed=3, callbacks=(StopAfter(2),), **kwargs)
    with pytest.raises(Interrupted):
        first.train()
    assert first.epoch == 2
    # A new process: a new model (other initial weights) and trainer resume from the file.
    resumed = _trainer(make_model(hidden=[8], seed=9), synthetic, epochs=epochs, steps=steps,
                       checkpoint_dir=tmp_path / "b", resume=True, seed=3, **kwargs)
    resumed.train()

    assert _same_weights(_state(resumed), _state(uninterrupted))
    assert not _same_weights(_state(first), _state(uninterrupted))  # the test can tell
    assert _untimed(resumed.history) == _untimed(uninterrupted.history)
    assert resumed.step == uninterrupted.step == epochs * steps
    a, b = resumed.engine, uninterrupted.engine
    assert [a.counts(k) for k in range(len(a.models))] == [b.counts(k)
                                                          for k in range(len(b.models))]
    assert (a.temperatures(), a.flip_ratio()) == (b.temperatures(), b.flip_ratio())
    assert resumed.best == uninterrupted.best
    assert resumed.best_state is not None and uninterrupted.best_state is not None
    assert _same_weights([resumed.best_state], [uninterrupted.best_state])
    # The final checkpoints agree too.
    ckpt_a = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    ckpt_b = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert ckpt_a["epoch"] == ckpt_b["epoch"] == epochs
    assert _same_weights([ckpt_a["model"], *ckpt_a["replicas"]],
                         [ckpt_b["model"], *ckpt_b["replicas"]])


def test_resume_of_a_finished_run_does_no_more_work(make_model: Callable[..., nn.Module],
                                                    synthetic: DataSplits, tmp_path: Path) -> None:
    done = _trainer(make_model(), synthetic, epochs=2, steps=10, checkpoint_dir=tmp_path)
    done.train()
    again = _trainer(make_model(seed=5), synthetic, epochs=2, steps=10, checkpoint_dir=tmp_path,
                     resume=True)
    final = again.train()
    assert _same_weights(_state(again), _state(done))
    assert again.engine.counts() == done.engine.counts()
    assert done.engine.counts()[0] == 20
    assert final["test_accuracy"] == done.history[-1]["test_accuracy"]


def test_checkpoint_holds_the_chain_state_and_the_temperature(
        make_model: Callable[..., nn.Module], synthetic: DataSplits, tmp_path: Path) -> None:
    schedule = TemperatureScheduleConfig(name="exponential", cooling_rate=0.9)
    trainer = _trainer(make_model(), synthetic, epochs=2, steps=10, checkpoint_dir=tmp_path,
                       schedule=schedule, sampler=SamplerConfig(temperature=0.01))
    trainer.train()
    # No temp files left: the checkpoint and the one it replaced.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", CHECKPOINT_NAME]
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ckpt["trainer"] == "mcmc" and ckpt["epoch"] == 2 and ckpt["step"] == 20
    population = ckpt["engine"]["population"]
    assert ckpt["engine"]["step"] == population["n_steps"] == 20
    assert trainer.engine.temperatures()[0] == pytest.approx(0.01 * 0.9**20)
    assert float(population["energies"][0]) == trainer.engine.current_energy()
    assert torch.equal(population["weights"][-1][0], trainer.model.layers[-1].weight)
    assert torch.equal(ckpt["model"]["layers.1.weight"], trainer.model.layers[1].weight)
    assert ckpt["best_model"] is not None and ckpt["history"] == trainer.history

    # A resumed trainer continues from the saved temperature, not from its initial one.
    resumed = _trainer(make_model(), synthetic, epochs=3, steps=10, checkpoint_dir=tmp_path,
                       resume=True, schedule=schedule, sampler=SamplerConfig(temperature=0.01))
    resumed.train()
    assert resumed.history[-1]["temperature"] == pytest.approx(0.01 * 0.9**30)


def test_resuming_a_checkpoint_of_another_trainer_is_refused(
        make_model: Callable[..., nn.Module], synthetic: DataSplits, tmp_path: Path) -> None:
    from mcmc_core import TrainerSTE

    ste = TrainerSTE(make_model(), data=synthetic, device="cpu",
                     trainer=TrainerConfig(name="ste", epochs=1, verbose=False,
                                           checkpoint_dir=str(tmp_path)))
    ste.train()
    mcmc = _trainer(make_model(), synthetic, epochs=2, steps=5, checkpoint_dir=tmp_path,
                    resume=True)
    with pytest.raises(ValueError, match="ste"):
        mcmc.train()


@pytest.mark.parametrize("damaged", ["last", "both"])
def test_a_checkpoint_that_does_not_load_falls_back_to_the_previous_or_epoch_0(
        make_model: Callable[..., nn.Module], synthetic: DataSplits, tmp_path: Path,
        damaged: str) -> None:
    uninterrupted = _trainer(make_model(), synthetic, epochs=3, steps=10, seed=4)
    uninterrupted.train()
    first = _trainer(make_model(), synthetic, epochs=2, steps=10, checkpoint_dir=tmp_path, seed=4)
    first.train()
    last, previous = tmp_path / CHECKPOINT_NAME, tmp_path / "last.prev.pt"
    assert load_checkpoint(previous)["epoch"] == 1
    for path in [last, previous] if damaged == "both" else [last]:
        path.write_bytes(path.read_bytes()[:100])  # truncated: e.g. a full disk
    resumed = _trainer(make_model(), synthetic, epochs=3, steps=10, checkpoint_dir=tmp_path,
                       resume=True, seed=4, callbacks=(Recorder(),))
    with pytest.warns(RuntimeWarning, match=f"checkpoint {last} does not load") as caught:
        resumed.train()
    assert (len(caught) == 2) == (damaged == "both")
    assert resumed.callbacks[0].calls[0] == ("start", 0 if damaged == "both" else 1)
    assert _same_weights(_state(resumed), _state(uninterrupted))
    assert _untimed(resumed.history) == _untimed(uninterrupted.history)


# -- the original-style Python API ---------------------------------------------------------------
def test_python_api_close_to_the_original_on_synthetic() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)))
    trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), "synthetic", 1e-3, 0.05)
    assert trainer.sampler_cfg.temperature == 1e-3 and trainer.sampler_cfg.flip_ratio == 0.05
    assert trainer.data.name == "synthetic"
    metrics = trainer.train(n_epoch=2)
    assert metrics["epoch"] == 2 and len(trainer.history) == 2
    assert metrics["test_accuracy"] > 0.6


def test_python_api_on_digits() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), "digits", temperature=1e-3,
                          flip_ratio=0.05, device="cpu",
                          trainer=TrainerConfig(epochs=1, steps_per_epoch=300, verbose=False))
    start = trainer.evaluate()
    metrics = trainer.train()
    assert trainer.data.name == "digits" and trainer.data.n_classes == 10
    assert metrics["test_accuracy"] > max(0.25, start["test_accuracy"] + 0.1)  # chance: 0.1


def _write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as a gzipped IDX file."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.dim())
    header += struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.numpy().tobytes()))


def test_python_api_on_an_idx_folder(tmp_path: Path) -> None:
    """The ``idx`` dataset end to end: teacher-labelled 5x5 images as one IDX file pair."""
    bits, labels, _ = make_synthetic(500, (1, 5, 5), 3, seed=4)
    _write_idx(tmp_path / "toy-images-idx3-ubyte.gz", (bits[:, 0] * 255).to(torch.uint8))
    _write_idx(tmp_path / "toy-labels-idx1-ubyte.gz", labels.to(torch.uint8))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = binarize_model(nn.Sequential(nn.Flatten(), nn.Linear(25, 3)))
    trainer = TrainerMCMC(model, nn.CrossEntropyLoss(), temperature=1e-3, flip_ratio=0.05,
                          data=DataConfig(name="idx", root=str(tmp_path)), device="cpu",
                          trainer=TrainerConfig(epochs=2, steps_per_epoch=150, verbose=False))
    assert trainer.data.name == "idx" and trainer.data.input_shape == (1, 5, 5)
    assert len(trainer.data.train) + len(trainer.data.val) + len(trainer.data.test) == 500
    start = trainer.evaluate()
    metrics = trainer.train()
    assert metrics["test_accuracy"] > max(0.6, start["test_accuracy"] + 0.15)


def test_devices(make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    trainer = TrainerMCMC(make_model(), data=synthetic, device="auto",
                          trainer=TrainerConfig(epochs=1, steps_per_epoch=5, verbose=False))
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert trainer.device.type == expected
    assert binary_parameters(trainer.model)[0].device.type == expected
    trainer.train()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            TrainerMCMC(make_model(), data=synthetic, device="cuda")


# The incremental kernel's energy terms: the hidden margin, label smoothing, the smooth hidden
# activation.
@pytest.mark.parametrize(("term", "on", "bad"), [
    ("margin_weight", {"margin_weight": 5.0, "margin": 5}, 0.5),
    ("label_smoothing", {"label_smoothing": 0.3}, 0.1),
    ("smooth_hidden", {"smooth_hidden": 2.0}, 4.0)])
def test_an_energy_term_changes_the_chain_and_needs_the_incremental_kernel(
        make_model: Callable[..., nn.Module], synthetic: DataSplits, term: str,
        on: dict[str, float], bad: float) -> None:
    from mcmc_core import ConfigError

    plain = _trainer(make_model(hidden=[8]), synthetic, seed=1)
    plain.train()
    with_term = _trainer(make_model(hidden=[8]), synthetic, seed=1, sampler=SamplerConfig(
        temperature=1e-3, flip_ratio=0.05, **on))
    with_term.train()
    assert with_term.engine.kernel == "incremental"
    assert not _same_weights(_state(plain), _state(with_term))
    with pytest.raises(ConfigError, match=rf"^sampler.{term}={bad} is not allowed: expected "
                                          r"0 \(off\) with sampler.incremental=false"):
        _trainer(make_model(hidden=[8]), synthetic, sampler=SamplerConfig(
            **{term: bad}, incremental=False))
    with pytest.raises(ConfigError, match=rf"^sampler.{term}={bad} .* expected 0 \(off\): "
                                          r".*incremental kernel.*sampler.energy=minibatch"):
        _trainer(make_model(hidden=[8]), synthetic, sampler=SamplerConfig(
            **{term: bad}, energy="minibatch"))


def test_label_smoothing_is_checked_where_the_config_enters() -> None:
    assert SamplerConfig(label_smoothing=1.0).errors() == [
        "sampler.label_smoothing=1.0 is not allowed: expected 0 <= label_smoothing < 1 (0 = off)"]
    assert SamplerConfig(smooth_hidden=-2.0).errors() == [
        "sampler.smooth_hidden=-2.0 is not allowed: expected >= 0 (0 = off: sign)"]
