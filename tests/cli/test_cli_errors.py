"""Bad input to ``mcmc-train`` stops it before any work with one ``error:`` line per problem on
stderr, naming the key, the bad value and what is allowed, and no traceback."""

from __future__ import annotations

import re

import pytest

# name -> (arguments, the stderr lines expected, without the "error: " prefix)
ONE_LINE = {
    "temperature=0": (["sampler.temperature=0"],
                      ["sampler.temperature=0.0 is not allowed: expected > 0"]),
    "flip_ratio=0": (["sampler.flip_ratio=0"],
                     ["sampler.flip_ratio=0.0 is not allowed: expected 0 < flip_ratio <= 1"]),
    "flip_ratio=1.5": (["sampler.flip_ratio=1.5"],
                       ["sampler.flip_ratio=1.5 is not allowed: expected 0 < flip_ratio <= 1"]),
    "cooling_rate=0": (["schedule.cooling_rate=0"],
                       ["schedule.cooling_rate=0.0 is not allowed: "
                        "expected 0 < cooling_rate <= 1"]),
    "cooling_rate=1.5": (["schedule.cooling_rate=1.5"],
                         ["schedule.cooling_rate=1.5 is not allowed: "
                          "expected 0 < cooling_rate <= 1"]),
    "epochs=0": (["trainer.epochs=0"], ["trainer.epochs=0 is not allowed: expected >= 1"]),
    "label_smoothing=1": (["sampler.label_smoothing=1"],
                          ["sampler.label_smoothing=1.0 is not allowed: "
                           "expected 0 <= label_smoothing < 1 (0 = off)"]),
    "model=nope": (["model=nope"],
                   ["model='nope' is not allowed: expected one of alexnet, cnn, mlp, resnet18"]),
    "dataset=nope": (["dataset=nope"],
                     ["dataset='nope' is not allowed: expected one of cifar10, digits, "
                      "fashion_mnist, idx, mnist, synthetic"]),
    "schedule=nope": (["schedule=nope"],
                      ["schedule='nope' is not allowed: expected one of constant, cosine, "
                       "exponential, linear, step"]),
    "temperature=abc": (["sampler.temperature=abc"],
                        ["sampler.temperature='abc' is not allowed: expected a number"]),
}
SEVERAL = {
    "ranges": (["sampler.temperature=0", "sampler.flip_ratio=1.5", "schedule.cooling_rate=0",
                "trainer.epochs=0"],
               ["sampler.temperature=0.0 is not allowed: expected > 0",
                "sampler.flip_ratio=1.5 is not allowed: expected 0 < flip_ratio <= 1",
                "schedule.cooling_rate=0.0 is not allowed: expected 0 < cooling_rate <= 1",
                "trainer.epochs=0 is not allowed: expected >= 1"]),
    "types": (["sampler.temperature=abc", "trainer.epochs=two", "trainer.resume=maybe",
               "model.hidden=[a]", "trainer.steps_per_epoch=x", "schedule=nope"],
              ["sampler.temperature='abc' is not allowed: expected a number",
               "trainer.epochs='two' is not allowed: expected an integer",
               "trainer.resume='maybe' is not allowed: expected true or false",
               "model.hidden=['a'] is not allowed: expected a list of integers, e.g. [1, 2]",
               "trainer.steps_per_epoch='x' is not allowed: expected an integer or null",
               "schedule='nope' is not allowed: expected one of constant, cosine, exponential, "
               "linear, step"]),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, cli_many):
    """Every bad invocation, each in its own empty working directory, two at a time.

    Apart from the bad value they use the defaults (20 epochs of 500 steps on digits, tracked to
    MLflow): had validation let one through, it would train for a minute and leave a store behind.
    """
    root = tmp_path_factory.mktemp("bad")
    empty = root / "no-data"
    empty.mkdir()
    cases = {name: args for name, (args, _) in {**ONE_LINE, **SEVERAL}.items()}
    cases["mnist-offline"] = ["dataset=mnist", f"dataset.root={empty}", "dataset.download=false"]
    cases["mnist-download-fails"] = ["dataset=mnist", f"dataset.root={empty}"]
    names = list(cases)
    results = cli_many([(cases[n], root / re.sub(r"\W", "_", n)) for n in names], timeout=600)
    return dict(zip(names, results, strict=True)) | {"empty": empty}


def _check_stopped_early(result) -> list[str]:
    """Assert a fast failure before any work, and return the error lines without the prefix."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert "HYDRA_FULL_ERROR" not in result.stderr
    assert result.stdout.strip() == ""  # no epoch line, no final line
    assert not (result.cwd / "mlflow.db").exists()
    assert not (result.cwd / "mlruns").exists()
    assert result.seconds < 45  # seconds of imports, not a minute of training
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), result.stderr
    return [line.removeprefix("error: ") for line in lines]


@pytest.mark.parametrize("name", ONE_LINE)
def test_each_bad_input_is_one_line(bad_runs, name: str) -> None:
    assert _check_stopped_early(bad_runs[name]) == ONE_LINE[name][1]


@pytest.mark.parametrize("name", SEVERAL)
def test_several_problems_give_several_lines(bad_runs, name: str) -> None:
    assert _check_stopped_early(bad_runs[name]) == SEVERAL[name][1]


@pytest.mark.parametrize("name", ["mnist-offline", "mnist-download-fails"])
def test_missing_mnist_files_say_where_they_go(bad_runs, name: str) -> None:
    (line,) = _check_stopped_early(bad_runs[name])
    folder = bad_runs["empty"] / "MNIST" / "raw"
    assert line.startswith(f"dataset=mnist: files not found in {folder} ")
    assert "use dataset=digits (works offline)" in line
    if name == "mnist-offline":
        assert "download is off (dataset.download=false)" in line
    else:
        assert "the download failed" in line
    assert not [p for p in bad_runs["empty"].rglob("*") if p.is_file()]  # nothing half-written
