"""The disk of a sweep's output folder fills up mid-sweep (a small tmpfs, filled by another
file): the sweep stops with one ``error:`` line naming the folder, leaves no half-written file
and no trial failed for good; once space is freed, the same command finishes the study."""

from __future__ import annotations

import json
import os
import subprocess
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from sweeptools import LONG, finished, running, states, wait_for

N_TRIALS = 4


def _fill(folder) -> None:
    """Write a file in ``folder`` until its disk is full."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass


@pytest.fixture(scope="module")
def disk(new_sweep, tmp_path_factory) -> SimpleNamespace:
    mount = tmp_path_factory.mktemp("tmpfs")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        s = new_sweep("disk-full")
        out = mount / "out"
        args = ["-m", "hparams_search=default", *LONG, f"hydra.sweeper.output_dir={out}",
                f"tracking.uri={s.uri}", f"hydra.sweeper.n_trials={N_TRIALS}",
                "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=none"]
        launch = s.start(args, program="mcmc-train")
        name = launch.study_name()
        storage = f"sqlite:///{out / 'optuna.db'}"
        import optuna

        study = optuna.load_study(study_name=name, storage=storage)
        wait_for(lambda: finished(study.get_trials()), 600, "a finished trial", launch)
        _fill(mount)
        first = launch.wait(timeout=600)
        leftovers = sorted(str(p.relative_to(out)) for p in out.rglob(".*.tmp"))
        report = {p.name: p.read_bytes() for p in (out / "report").glob("*") if p.is_file()}
        (mount / "filler").unlink()
        rerun = s.run(args, program="mcmc-train", timeout=600)
        yield SimpleNamespace(first=first, rerun=rerun, leftovers=leftovers, report=report,
                              out=out, trials=optuna.load_study(
                                  study_name=name, storage=storage).get_trials())
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_error_line_naming_the_folder(disk) -> None:
    first = disk.first
    assert first.returncode == 1, first.describe()
    output = first.stdout + first.stderr
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(disk.out) in errors[0], first.describe()
    assert "no space left" in errors[0]
    assert "Traceback" not in output


def test_nothing_half_written(disk) -> None:
    assert disk.leftovers == []
    if "plots.html" in disk.report:
        assert disk.report["plots.html"].rstrip().endswith(b"</html>")
    if "best.json" in disk.report:
        json.loads(disk.report["best.json"])


def test_the_rerun_after_freeing_space_finishes_and_no_trial_failed_for_good(disk) -> None:
    disk.rerun.ok()
    trials = disk.trials
    assert len(finished(trials)) == N_TRIALS, states(trials)
    assert not running(trials)
    # A trial the full disk stopped was queued to resume, not failed with an error.
    assert not [t for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs]
    assert (disk.out / "report" / "best.json").exists()
