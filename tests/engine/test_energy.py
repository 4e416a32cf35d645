"""Energies (the sampler's target), evaluation, and the binary layers' input-sign memo."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from mcmc_core import SignFlipSampler, binarize_model, binary_parameters
from mcmc_core.data import DataSplits, Split
from mcmc_core.energy import FullEnergy, MinibatchEnergy, evaluate, mean_loss
from mcmc_core.layers import BinaryLinear, sign


def _noisy_model(seed: int = 0) -> nn.Module:
    """A binary net with Dropout and BatchNorm, left in training mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = binarize_model(nn.Sequential(
            nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.Dropout(0.5),
            nn.Linear(12, 3)))
        with torch.no_grad():  # non-trivial running statistics, so a change would show
            model[2].running_mean.uniform_(-1, 1)
            model[2].running_var.uniform_(0.5, 2)
    return model.train()


# -- FullEnergy ----------------------------------------------------------------------------------
def test_full_energy_is_deterministic_and_equals_the_evaluated_loss(
        make_model: Callable[..., nn.Module], synthetic: DataSplits) -> None:
    model = make_model(hidden=[8])
    criterion = nn.CrossEntropyLoss()
    closure = FullEnergy(criterion, synthetic.train).closure(model)
    values = [closure() for _ in range(5)]
    assert isinstance(values[0], float)
    assert values == [values[0]] * 5
    loss, _ = evaluate(model, criterion, synthetic.train.inputs, synthetic.train.targets)
    assert values[0] == pytest.approx(loss, rel=1e-6)
    with torch.no_grad():
        direct = float(criterion(model(synthetic.train.inputs), synthetic.train.targets))
    assert values[0] == pytest.approx(direct, rel=1e-6)


def test_full_energy_in_chunks_is_the_same_mean(make_model: Callable[..., nn.Module],
                                                synthetic: DataSplits) -> None:
    model = make_model(hidden=[8])
    criterion = nn.CrossEntropyLoss()
    whole = FullEnergy(criterion, synthetic.train).closure(model)()
    # 432 = 8 x 50 + 32: unequal chunks, weighted by their sizes.
    chunked = FullEnergy(criterion, synthetic.train, batch_size=50).closure(model)()
    assert chunked == pytest.approx(whole, rel=1e-5)
    x, y = synthetic.train.inputs, synthetic.train.targets
    assert mean_loss(model, criterion, x, y, batch_size=7) == pytest.approx(whole, rel=1e-5)


def test_evaluate_gives_loss_and_accuracy_in_chunks(make_model: Callable[..., nn.Module],
                                                    synthetic: DataSplits) -> None:
    model = make_model(hidden=[8])
    criterion = nn.CrossEntropyLoss()
    x, y = synthetic.test.inputs, synthetic.test.targets
    with torch.no_grad():
        out = model(x)
    loss, acc = evaluate(model, criterion, x, y, batch_size=17)
    assert loss == pytest.approx(float(criterion(out, y)), rel=1e-5)
    assert acc == pytest.approx(float((out.argmax(1) == y).float().mean()))
    empty = evaluate(model, criterion, x[:0], y[:0])
    assert all(v != v for v in empty)  # nan, nan


def test_full_energy_fixed_subset_is_seeded(make_model: Callable[..., nn.Module],
                                            synthetic: DataSplits) -> None:
    criterion = nn.CrossEntropyLoss()
    train = synthetic.train
    a = FullEnergy(criterion, train, samples=50, seed=3)
    b = FullEnergy(criterion, train, samples=50, seed=3)
    c = FullEnergy(criterion, train, samples=50, seed=4)
    assert len(a.targets) == 50
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    # The subset is 50 distinct rows of the training split, with their own labels.
    rows = {(tuple(x.flatten().tolist()), int(t)) for x, t in zip(train.inputs, train.targets)}
    subset = [(tuple(x.flatten().tolist()), int(t)) for x, t in zip(a.inputs, a.targets)]
    assert all(r in rows for r in subset)
    # Its energy is the mean loss on those rows: not the whole split's.
    model = make_model(hidden=[8])
    with torch.no_grad():
        expected = float(criterion(model(a.inputs), a.targets))
    assert a.closure(model)() == pytest.approx(expected, rel=1e-6)
    whole = FullEnergy(criterion, train).closure(model)()
    assert a.closure(model)() != pytest.approx(whole, rel=1e-6)


def test_full_energy_subset_larger_than_the_split_is_the_whole_split(synthetic: DataSplits
                                                                     ) -> None:
    energy = FullEnergy(nn.CrossEntropyLoss(), synthetic.train, samples=10_000)
    assert torch.equal(energy.targets, synthetic.train.targets)
    with pytest.raises(ValueError, match="samples"):
        FullEnergy(nn.CrossEntropyLoss(), synthetic.train, samples=0)


# -- eval mode -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "minibatch"])
def test_energy_runs_in_eval_mode_without_dropout_noise_or_batchnorm_updates(
        synthetic: DataSplits, kind: str) -> None:
    model = _noisy_model()
    bn = model[2]
    stats = copy.deepcopy(bn.state_dict())
    criterion = nn.CrossEntropyLoss()
    if kind == "full":
        energy = FullEnergy(criterion, synthetic.train)
        closure = energy.closure(model)
        values = [closure() for _ in range(5)]
        assert values == [values[0]] * 5  # no dropout noise
    else:
        energy = MinibatchEnergy(criterion, synthetic.train, batch_size=64)
        closure = energy.closure(model)
        values = [closure() for _ in range(5)]  # both evaluations of one step: same batch
        assert values == [values[0]] * 5
    sampler = SignFlipSampler(binary_parameters(model), temperature=0.05, flip_ratio=0.1,
                              cache_energy=energy.fixed, seed=0)
    for _ in range(60):
        sampler.step(energy.closure(model))
    _, accepted = sampler.counts()
    assert accepted > 0  # the weights did change...
    after = bn.state_dict()
    for key, value in stats.items():  # ...but BatchNorm learnt nothing from the candidates
        assert torch.equal(after[key], value), key


def test_eval_mode_energy_differs_from_a_training_mode_forward(synthetic: DataSplits) -> None:
    """The check above can fail: in training mode the same net is noisy and moves BatchNorm."""
    model = _noisy_model()
    x, y = synthetic.train.inputs, synthetic.train.targets
    running = model[2].running_mean.clone()
    with torch.no_grad():
        a = float(nn.functional.cross_entropy(model.train()(x), y))
        b = float(nn.functional.cross_entropy(model.train()(x), y))
    assert a != b
    assert not torch.equal(model[2].running_mean, running)


# -- MinibatchEnergy -----------------------------------------------------------------------------
def _indexed_split(n: int) -> Split:
    """Inputs that name their own row: input i is the value i."""
    return Split(inputs=torch.arange(n, dtype=torch.float32).view(n, 1),
                 targets=torch.zeros(n, dtype=torch.int64))


class _RowRecorder:
    """A criterion that records which rows (by their value) the energy measured."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.rows.append(out.view(-1).long().tolist())
        return out.mean()


def test_minibatch_energy_walks_shuffled_passes_over_the_data() -> None:
    recorder = _RowRecorder()
    energy = MinibatchEnergy(recorder, _indexed_split(25), batch_size=10, seed=0)
    assert not energy.fixed
    model = nn.Identity()
    for _ in range(6):
        energy.closure(model)()
    sizes = [len(r) for r in recorder.rows]
    assert sizes == [10, 10, 5, 10, 10, 5]
    first, second = recorder.rows[:3], recorder.rows[3:]
    assert sorted(sum(first, [])) == list(range(25))  # every row once per pass
    assert sorted(sum(second, [])) == list(range(25))
    assert sum(first, []) != sum(second, [])  # reshuffled
    assert sum(first, []) != list(range(25))  # shuffled at all


def test_minibatch_closures_of_one_step_share_the_batch() -> None:
    recorder = _RowRecorder()
    energy = MinibatchEnergy(recorder, _indexed_split(40), batch_size=8, seed=1)
    closures = energy.closures([nn.Identity(), nn.Identity(), nn.Identity()])
    for c in closures:
        c()
        c()
    assert all(r == recorder.rows[0] for r in recorder.rows)
    energy.closure(nn.Identity())()
    assert recorder.rows[-1] != recorder.rows[0]  # the next step takes the next batch


def test_minibatch_energy_is_seeded() -> None:
    rows = []
    for seed in (3, 3, 4):
        recorder = _RowRecorder()
        energy = MinibatchEnergy(recorder, _indexed_split(30), batch_size=7, seed=seed)
        for _ in range(4):
            energy.closure(nn.Identity())()
        rows.append(recorder.rows)
    assert rows[0] == rows[1] != rows[2]


@pytest.mark.parametrize("taken", [0, 2, 3, 5])  # inside a pass and right at its end
def test_minibatch_state_dict_round_trip_gives_the_same_next_batches(taken: int) -> None:
    recorder = _RowRecorder()
    energy = MinibatchEnergy(recorder, _indexed_split(30), batch_size=10, seed=0)
    for _ in range(taken):
        energy.closure(nn.Identity())()
    state = copy.deepcopy(energy.state_dict())
    for _ in range(7):
        energy.closure(nn.Identity())()
    expected = recorder.rows[taken:]

    other_recorder = _RowRecorder()
    other = MinibatchEnergy(other_recorder, _indexed_split(30), batch_size=10, seed=99)
    other.closure(nn.Identity())()  # its own position and generator, all overwritten
    other_recorder.rows.clear()
    other.load_state_dict(state)
    for _ in range(7):
        other.closure(nn.Identity())()
    assert other_recorder.rows == expected


def test_minibatch_energy_rejects_an_empty_batch_size(synthetic: DataSplits) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        MinibatchEnergy(nn.CrossEntropyLoss(), synthetic.train, batch_size=0)


# -- the binary layers' input-sign memo ---------------------------------------------------------
def _layer() -> BinaryLinear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BinaryLinear.from_float(nn.Linear(6, 4))


def _reference(layer: BinaryLinear, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.linear(sign(x.clone()), layer.weight) * layer.scale


@pytest.mark.parametrize(
    "modify",
    [
        lambda x: x.neg_(),
        lambda x: x.__setitem__((0, 0), -x[0, 0]),
        lambda x: x.copy_(torch.randn(x.shape, generator=torch.Generator().manual_seed(1))),
        lambda x: x[1:].mul_(-1),  # through a view
        lambda x: torch.nn.init.uniform_(x, -1, 1),
    ],
)
def test_sign_memo_sees_in_place_changes_of_the_input(modify: Callable[[torch.Tensor], object]
                                                      ) -> None:
    layer = _layer()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = layer(x)
        assert torch.equal(first, _reference(layer, x))
        assert torch.equal(layer(x), first)  # memo hit
        modify(x)
        assert torch.equal(layer(x), _reference(layer, x))
    assert not torch.equal(_reference(layer, x), first)  # the change did matter


def test_sign_memo_is_per_tensor_not_per_value() -> None:
    layer = _layer()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(20):  # fresh tensors that may land on freed memory of earlier ones
            x = torch.randn(5, 6, generator=g)
            assert torch.equal(layer(x), _reference(layer, x))
        x = torch.randn(5, 6, generator=g)
        layer(x)
        y = x.t().contiguous().t()  # same values and shape, other strides and storage
        y.neg_()
        assert torch.equal(layer(y), _reference(layer, y))
        assert torch.equal(layer(x[:3]), _reference(layer, x[:3]))  # same storage, other shape


def test_sign_memo_follows_weight_flips() -> None:
    """The memo caches the input's sign only: flipping weights changes the output."""
    layer = _layer()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = layer(x)
        layer.weight.view(-1)[3] *= -1
        assert torch.equal(layer(x), _reference(layer, x))
        assert not torch.equal(layer(x), before)


def test_binary_model_runs_under_inference_mode(make_model: Callable[..., nn.Module],
                                                synthetic: DataSplits) -> None:
    """Hidden activations made under ``torch.inference_mode`` are inference tensors, which
    have no version counter: the memo must not need one."""
    model = make_model(hidden=[8]).eval()
    x = synthetic.test.inputs
    with torch.no_grad():
        expected = model(x)
    with torch.inference_mode():
        assert torch.equal(model(x), expected)
        inner = x.clone()  # an inference tensor as the first layer's input
        assert torch.equal(model(inner), expected)
        assert torch.equal(model(inner), expected)
    assert torch.equal(model(x), expected)


def test_sign_memo_is_not_pickled(make_model: Callable[..., nn.Module],
                                  synthetic: DataSplits) -> None:
    model = make_model(hidden=[8])
    with torch.no_grad():
        out = model(synthetic.test.inputs)
    clone = copy.deepcopy(model)
    assert all("_sign_memo" not in m.__dict__ for m in clone.modules())
    with torch.no_grad():
        assert torch.equal(clone(synthetic.test.inputs), out)
