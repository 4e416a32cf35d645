"""The benchmark scripts run offline: with MNIST t10k absent they fall back to synthetic data of
the same shape, say so, and write their JSON. Tiny settings; the numbers are not checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

#: Per script: arguments that shrink it to seconds.
MNIST_SCRIPTS = {
    "population_throughput.py": ["--threads", "1", "--rounds", "1", "--check-steps", "2"],
    "population_scaling.py": ["--sizes", "1", "3", "--steps", "2"],
    "step_throughput.py": ["--threads", "1", "--flip-ratio", "1e-4", "--seconds", "0.05",
                           "--repeats", "1", "--check-steps", "2"],
    "time_to_accuracy.py": ["--budget", "1", "--nets", "784-256-10", "--methods", "ours", "ste",
                            "naive", "--split-seeds", "0",
                            "--ste-lrs", "1e-3", "--ste-epochs", "1"],
    "cpu_threads.py": ["--steps", "20", "--repeats", "1", "--load", "1"],
    "original_vs_full.py": [],
    "margin_energy.py": ["--steps", "200", "--every", "100"],
    "smooth_hidden.py": ["--steps", "200", "--every", "100", "--split-seeds", "0"],
    "weight_average.py": ["--budget", "1", "--net", "784-10", "--split-seeds", "0"],
    "sweep_throughput.py": ["--nets", "mnist", "--n-trials", "2", "--workers", "1",
                            "--populations", "2", "--overrides", "trainer.epochs=1",
                            "trainer.steps_per_epoch=5", "dataset.synthetic_samples=300"],
}


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_every_mnist_benchmark_is_covered() -> None:
    # A script that reads MNIST takes --mnist (ab.py only passes it on to the scripts it runs).
    takes_mnist = {p.name for p in BENCHMARKS.glob("*.py")
                   if 'add_argument("--mnist"' in p.read_text()}
    assert takes_mnist == set(MNIST_SCRIPTS)


@pytest.mark.parametrize("script", sorted(MNIST_SCRIPTS))
def test_benchmark_falls_back_to_synthetic_data(script: str, tmp_path: Path) -> None:
    out, absent = tmp_path / "result.json", tmp_path / "no-mnist"
    proc = _run(script, [*MNIST_SCRIPTS[script], "--mnist", str(absent), "--json", str(out)],
                tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"note: {absent} not found" in proc.stdout and "synthetic" in proc.stdout
    assert "synthetic" in json.dumps(json.loads(out.read_text()))  # the JSON says what it measured


def test_sweep_benchmark_runs_both_populations(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    args = ["--n-trials", "3", "--base-trials", "2", "--workers", "1", "2", "--populations",
            "1", "3", "--pruners", "successive_halving", "--check",
            "--overrides", "trainer.epochs=2", "trainer.steps_per_epoch=20", "--json", str(out)]
    proc = _run("sweep_throughput.py", args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    runs = result["runs"]
    # population 1 on --base-trials, the population on --n-trials, for each worker count
    assert [(r["workers"], r["population"], r["finished"], r["failed"]) for r in runs] == [
        (1, 1, 2, 0), (1, 3, 3, 0), (2, 1, 2, 0), (2, 3, 3, 0)]
    assert all("trainer.epochs=2" in r["command"] for r in runs)
    # every trial has its MLflow child run, and the workers said where their time went
    assert all(r["mlflow_ok"] and r["mlflow_child_runs"] == r["finished"] for r in runs)
    for r in runs:
        phases = r["phases"]
        assert phases["workers"] == r["workers"] and phases["trials_run"] == r["finished"]
        assert {"ask", "step", "evaluate", "mlflow_log", "optuna_report"} <= set(phases["phases"])
        assert phases["limit"] not in ("step", "evaluate", "heartbeat")
        assert phases["max_memory_allocated"] == [None] * r["workers"]  # N/A on the CPU
    assert set(result["ratio_trials_per_hour"]) == {
        f"digits/successive_halving/workers={w}/population={p}" for w in (1, 2) for p in (1, 3)}
    assert "| digits | successive_halving | 2 | 3 |" in proc.stdout


def test_gpu_script_runs_its_measurement_tiny_on_the_cpu(tmp_path: Path) -> None:
    # The CPU's trials/hour that the GPU's MNIST sweep is compared with: a tiny one here.
    reference = tmp_path / "cpu.json"
    reference.write_text(json.dumps({"runs": [{"trials_per_hour": 1.0, "finished": 1,
                                               "trials_span_s": 3600.0}]}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GPU_SWEEPS_TINY": "1",
           "GPU_SWEEPS_DEVICE": "cpu", "GPU_SWEEPS_WHEELS": str(tmp_path / "no-wheels"),
           "GPU_SWEEPS_MNIST": str(tmp_path / "no-mnist"), "PYTHON": sys.executable,
           "GPU_SWEEPS_CPU_REFERENCE": str(reference), "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(BENCHMARKS / "gpu_sweeps.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "digits.json", "digits.log", "mnist.json", "mnist.log", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    # every trial in MLflow, the 3-minute bound and the CPU comparison evaluated
    assert summary["digits"]["mlflow_ok"] and summary["digits"]["within_3_minutes"]
    assert summary["digits"]["mlflow_child_runs"] == summary["digits"]["trials"] == 4
    assert summary["mnist"]["cpu_trials_per_hour"] == 1.0 and summary["mnist"]["vs_cpu"] > 50
    assert summary["mnist"]["vs_cpu_span"] > summary["mnist"]["vs_cpu"]  # without start-up
    assert "synthetic" in (out / "mnist.log").read_text()


def test_cluster_benchmark_runs_both_backends(tmp_path: Path) -> None:
    """``cluster_overhead.py`` runs a tiny sweep locally and as SLURM jobs (on the cluster
    ``SLURM_CONF`` names, or one it starts) and writes both rates and their ratio."""
    sys.path.insert(0, str(BENCHMARKS.parent / "tests" / "sweeps"))
    from slurm_cluster import missing

    if why := missing():
        pytest.skip(why)
    out = tmp_path / "cluster.json"
    proc = _run("cluster_overhead.py", ["--n-trials", "2", "--rounds", "1", "--json", str(out),
                                        "--overrides", "trainer.epochs=1"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert [(r["backend"], r["finished"]) for r in result["rows"]] == [("local", 2), ("slurm", 2)]
    assert result["ratio_slurm_local"] > 0
