"""Axis scales of the report's plots (``sweeps/report/scales.py``): round ticks, labels with just
enough digits to tell them apart and to write them exactly, log axes at powers of ten."""

from __future__ import annotations

import optuna
import pytest

from sweeps.report.scales import decimals, linear_ticks, param_scale, tick_labels


@pytest.mark.parametrize(("ticks", "labels"), [
    ([0.999, 0.9992, 0.9994, 0.9996, 0.9998], ("0.9990", "0.9992", "0.9994", "0.9996", "0.9998")),
    ([0.999, 0.99925, 0.9995, 0.99975], ("0.99900", "0.99925", "0.99950", "0.99975")),
    ([0.86, 0.88, 0.90], ("0.86", "0.88", "0.90")),
    ([0.0, 25.0, 50.0], ("0", "25", "50")),
    ([0.6041666666666666], ("0.604167",)),  # one tick: six significant digits
])
def test_tick_labels_have_the_digits_the_ticks_need(ticks, labels) -> None:
    assert tick_labels(ticks) == labels


def test_decimals_of_close_ticks() -> None:
    assert decimals([1 - 1e-7, 1.0]) == 7


def test_linear_ticks_are_round_and_inside() -> None:
    assert linear_ticks(0.999, 0.99995) == pytest.approx((0.999, 0.99925, 0.9995, 0.99975))
    assert linear_ticks(0.999, 0.99995, count=6) == pytest.approx((0.999, 0.9992, 0.9994, 0.9996,
                                                                 0.9998))
    assert linear_ticks(0.5, 0.5) == (0.5,)


def _trial(**params: tuple[object, optuna.distributions.BaseDistribution]
           ) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(params={k: v for k, (v, _) in params.items()},
                                     distributions={k: d for k, (_, d) in params.items()},
                                     value=0.5)


def test_param_scale_follows_the_search() -> None:
    log = optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)
    narrow = optuna.distributions.FloatDistribution(1e-3, 5e-3, log=True)
    choice = optuna.distributions.CategoricalDistribution(["mlp", "cnn"])
    trials = [_trial(t=(1e-4, log), n=(2e-3, narrow), m=("cnn", choice))]
    t = param_scale("t", trials)
    assert t.log and (t.low, t.high) == pytest.approx((-5, -2))
    assert t.labels == ("1e-05", "0.0001", "0.001", "0.01")
    assert t.fraction(1e-4) == pytest.approx(1 / 3)
    # Less than two powers of ten: 2 and 5 times them too.
    assert param_scale("n", trials).labels == ("0.001", "0.002", "0.005")
    m = param_scale("m", trials)
    assert m.labels == ("mlp", "cnn") and m.position("cnn") == 1.0
