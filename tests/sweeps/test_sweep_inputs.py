"""``mcmc-sweep`` checks its inputs before any work: bad settings give one ``error:`` line each and
exit status 2 without creating a storage, a tracking store or a trial;
``hydra.sweeper.dry_run=true`` prints the plan and loads the dataset;
``hydra.sweeper.report=true`` on a study that does not exist is a one-line error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sweeptools import Sweep, run_many

#: Bad settings, each with the one error line it gives (all given at once: one line each).
SETTINGS = {
    "hydra.sweeper.n_trials=0":
        "hydra.sweeper.n_trials=0 is not allowed: expected an integer >= 1",
    "hydra.sweeper.sampler=nope":
        "hydra.sweeper.sampler='nope' is not allowed: expected one of tpe, random, cmaes, gp, qmc",
    "hydra.sweeper.pruner=nope":
        "hydra.sweeper.pruner='nope' is not allowed: expected one of median, hyperband, "
        "successive_halving, wilcoxon, none",
    "hydra.sweeper.n_jobs=0": "hydra.sweeper.n_jobs=0 is not allowed: expected an integer >= 1",
    "hydra.sweeper.params.sampler.temperature={type:float,low:0,high:0.01,log:true}":
        "hydra.sweeper.params.sampler.temperature.low=0.0 is not allowed: expected > 0 on a "
        "log scale",
    "hydra.sweeper.params.sampler.energy={type:categorical,choices:[]}":
        "hydra.sweeper.params.sampler.energy.choices=[] is not allowed: expected a non-empty list",
}
#: Bad inputs found at later checks, alone: ``(override, what its error line must contain)``.
BAD = {
    "bound": ("hydra.sweeper.params.sampler.flip_ratio=tag(log, interval(5e-4, 2))",
              "hydra.sweeper.params.sampler.flip_ratio.high gives sampler.flip_ratio=2.0 is "
              "not allowed"),
    "low_type": ("hydra.sweeper.params.sampler.temperature={type:float,low:abc,high:0.01}",
                 "hydra.sweeper.params.sampler.temperature.low: Value 'abc' of type 'str' could "
                 "not be converted to Float"),
    "group_choice": ("hydra.sweeper.params.model=choice(mlp, nope)",
                     "expected choices that exist in conf/ (In 'train': Could not find "
                     "'model/nope')"),
}
ADDED = "hydra.sweeper.params.model.hidden=choice([], [16])"


@pytest.fixture(scope="module")
def runs(new_sweep):
    """Every bad command, the dry runs and the reports of missing studies, two at a time."""
    jobs: dict[str, tuple[Sweep, list[str]]] = {}
    s = new_sweep("bad-settings")
    jobs["settings"] = (s, s.args(*SETTINGS))
    for name, (override, _) in BAD.items():
        s = new_sweep(f"bad-{name}")
        jobs[name] = (s, s.args(override))
    s = new_sweep("dry-run")
    jobs["dry_run"] = (s, s.args("hydra.sweeper.dry_run=true", "hydra.sweeper.n_trials=7", ADDED))
    s = new_sweep("report-no-folder")
    jobs["report_no_folder"] = (s, s.args("hydra.sweeper.report=true"))
    s = new_sweep("report-empty-folder")
    s.out.mkdir(parents=True)
    jobs["report_empty_folder"] = (s, s.args("hydra.sweeper.report=true"))
    results = run_many(list(jobs.values()))
    return SimpleNamespace(**{name: SimpleNamespace(sweep=job[0], result=result)
                              for (name, job), result in zip(jobs.items(), results)})


def assert_no_work(s: Sweep) -> None:
    """No storage, tracking store, checkpoint or report was created."""
    assert not s.out.exists() or not any(s.out.iterdir()), list(s.out.iterdir())
    assert not (s.root / "mlflow.db").exists()
    assert not list(s.root.rglob("*.db")), list(s.root.rglob("*.db"))


@pytest.mark.parametrize("override", list(SETTINGS))
def test_bad_settings_are_one_error_line_each_and_exit_2(runs, override: str) -> None:
    result = runs.settings.result
    assert result.returncode == 2, result.describe()
    assert len(result.error_lines) == len(SETTINGS), result.describe()
    assert all(line.startswith("error: ") for line in result.error_lines)
    assert sum(SETTINGS[override] in line for line in result.error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "study '" not in result.stdout  # no study was opened
    assert_no_work(runs.settings.sweep)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_error_line_and_exit_2(runs, name: str) -> None:
    run = getattr(runs, name)
    result, expected = run.result, BAD[name][1]
    assert result.returncode == 2, result.describe()
    assert len(result.error_lines) == 1, result.describe()
    line = result.error_lines[0]
    assert line.startswith("error: ") and expected in line, line
    assert "Traceback" not in result.stderr + result.stdout
    assert "study '" not in result.stdout  # no study was opened
    assert_no_work(run.sweep)


def test_dry_run_prints_the_plan_and_creates_nothing(runs) -> None:
    result, s = runs.dry_run.result, runs.dry_run.sweep
    result.ok()
    lines = result.stdout.splitlines()
    heads = {line.split(":")[0]: line for line in lines if not line.startswith(" ")}
    assert heads["study"].startswith("study:    mlp-synthetic-")
    assert heads["storage"] == f"storage:  {s.storage}"
    assert heads["output"].startswith(f"output:   {s.out} ")
    assert heads["tracking"].startswith(f"tracking: {s.uri} ")
    assert '"n_trials": 7' in heads["settings"] and '"sampler": "tpe"' in heads["settings"]
    assert heads["dataset"].startswith("dataset:  synthetic: train 432, val 48, test 120")
    assert heads["dataset"].endswith("3 classes: loads")
    space = lines[lines.index("search space:") + 1:]
    entries = {line.split()[0]: line.split()[1] for line in space if line.startswith("  ")}
    assert entries == {"temperature": "sampler.temperature", "cooling_rate":
                       "schedule.cooling_rate", "flip_ratio": "sampler.flip_ratio",
                       "hidden": "model.hidden"}
    assert '"log": true' in next(line for line in space if line.split()[0] == "temperature")
    assert '"choices": [[], [16]]' in next(line for line in space if "hidden" in line)
    assert_no_work(s)


@pytest.mark.parametrize("case", ["report_no_folder", "report_empty_folder"])
def test_report_of_a_missing_study_is_one_error_line(runs, case: str) -> None:
    result, s = getattr(runs, case).result, getattr(runs, case).sweep
    assert result.returncode == 2, result.describe()
    assert len(result.error_lines) == 1, result.describe()
    line = result.error_lines[0]
    assert line.startswith("error: hydra.sweeper.study_name='mlp-synthetic-"), line
    assert f"is not in storage {s.storage}" in line
    assert "without hydra.sweeper.report=true" in line
    assert_no_work(s)
