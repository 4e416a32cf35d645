#!/usr/bin/env bash
# Sweeps on a GPU, measured end to end, in one command (benchmarks/README.md, "Sweeps with
# large populations", "The GPU run"): run from the repository root on the GPU machine, with
# .whl/ and .gpu-data/ carried (benchmarks/gpu_wheels.sh makes them). It
#   1. installs the carried wheels into /tmp/site and checks that a sweep's imports load;
#   2. digits: the 1,000-trial sweep (successive halving, populations of 64, 4 workers sharing
#      cuda:0), checked to hold every trial's MLflow child run and timed against 3 minutes,
#      beside hydra.sweeper.population=1 on 100 trials (the same workers);
#   3. mnist: a 256-trial MNIST 784-100-10 sweep (8,000 energy samples, populations of 64,
#      4 workers), beside hydra.sweeper.population=1 on 32 trials, and its trials per hour against
#      the 2-core CPU's (benchmarks/results/sweep_throughput_mnist_cpu.json);
# and writes each benchmark's JSON and log, and summary.json, into $OUT (5 files). Each part
# has a time limit (digits 300 s, mnist 180 s: with the install, 8.5 minutes at most); its JSON is
# written after each sweep, so a part stopped by its limit keeps what it measured.
# GPU_SWEEPS_PARTS="mnist" runs only that part (a rerun).
#
# To check this script on a CPU, tiny and in seconds:
#   GPU_SWEEPS_TINY=1 GPU_SWEEPS_DEVICE=cpu OUT=/tmp/gpu-out bash benchmarks/gpu_sweeps.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
DEVICE=${GPU_SWEEPS_DEVICE:-cuda}
MNIST=${GPU_SWEEPS_MNIST:-.gpu-data/mnist-t10k}
CPU_REFERENCE=${GPU_SWEEPS_CPU_REFERENCE:-benchmarks/results/sweep_throughput_mnist_cpu.json}
WHEELS=${GPU_SWEEPS_WHEELS:-.whl}  # none there: the packages are installed already
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

"$PY" - <<'EOF' || exit 1
import importlib, sys
missing = []
for name in ("torch", "sklearn", "matplotlib", "plotly", "optuna", "hydra", "omegaconf",
             "sqlalchemy", "alembic", "mlflow", "sweeps.cli.sweep_app", "sweeps.tracking.mlflow_run"):
    try:
        importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 -- each one named
        missing.append(f"{name}: {type(err).__name__}: {err}")
if missing:
    sys.exit("error: a sweep's imports do not load:\n  " + "\n  ".join(missing))
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
EOF

if [ "${GPU_SWEEPS_TINY:-0}" = 1 ]; then
  D_TRIALS=4; D_BASE=2; M_TRIALS=4; M_BASE=2; POP=2; WORKERS=1
  EXTRA=(trainer.epochs=3 trainer.steps_per_epoch=10 dataset.synthetic_samples=300)
else
  D_TRIALS=1000; D_BASE=100; M_TRIALS=256; M_BASE=32; POP=64; EXTRA=()
  WORKERS=${GPU_SWEEPS_WORKERS:-4}  # on one GPU; each worker's per-trial work runs on a core
fi
bench() {  # name, seconds it may take, then sweep_throughput.py's arguments
  local name=$1 limit=$2; shift 2
  timeout --kill-after=10 "$limit" "$PY" benchmarks/sweep_throughput.py --device "$DEVICE" \
    --workers "$WORKERS" --populations 1 "$POP" --pruners successive_halving --check \
    --mnist "$MNIST" --json "$OUT/$name.json" "$@" ${EXTRA[@]+--overrides "${EXTRA[@]}"} \
    2>&1 | tee "$OUT/$name.log"
}
status=0
for part in ${GPU_SWEEPS_PARTS:-digits mnist}; do  # 8 minutes at most together
  case $part in
    digits) bench digits 300 --nets digits --n-trials "$D_TRIALS" --base-trials "$D_BASE" ;;
    mnist) bench mnist 180 --nets mnist --n-trials "$M_TRIALS" --base-trials "$M_BASE" ;;
    *) echo "error: GPU_SWEEPS_PARTS=$part: expected digits and/or mnist"; exit 2 ;;
  esac || status=1
done

"$PY" - "$OUT" "$CPU_REFERENCE" "$POP" <<'EOF' || status=1
import json, sys
from pathlib import Path
out, reference, pop = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
summary, ok = {}, True


def span_rate(run):  # trials/hour from the first trial's start to the last one's end
    return run["finished"] / run["trials_span_s"] * 3600 if run["trials_span_s"] else None


for net in ("digits", "mnist"):
    path = out / f"{net}.json"
    result = json.loads(path.read_text()) if path.exists() else {"runs": []}
    runs = {r["population"]: r for r in result["runs"]}
    if pop not in runs or 1 not in runs:
        print(f"{net}: no result (see {net}.log)"); ok = False; continue
    main = runs[pop]
    entry = {"trials": main["finished"], "wall_s": main["wall_s"],
             "trials_per_hour": main["trials_per_hour"],
             "trials_per_hour_span": span_rate(main),
             "mlflow_ok": main["mlflow_ok"],
             "mlflow_child_runs": main["mlflow_child_runs"],
             "vs_population_1": main["trials_per_hour"] / runs[1]["trials_per_hour"],
             "limit": main["phases"]["limit"],
             "limit_share": main["phases"]["share"].get(main["phases"]["limit"]),
             "peak_gpu_bytes_per_worker": main["phases"]["max_memory_allocated"],
             "machine": result["machine"]}
    if net == "digits":
        entry["within_3_minutes"] = main["wall_s"] <= 180
        ok &= entry["within_3_minutes"] and main["mlflow_ok"]
    elif reference.exists():
        cpu = json.loads(reference.read_text())
        best = max(cpu["runs"], key=lambda r: r["trials_per_hour"])  # the CPU's best sweep
        entry["cpu_trials_per_hour"] = best["trials_per_hour"]
        entry["vs_cpu"] = main["trials_per_hour"] / best["trials_per_hour"]
        if span_rate(best) and span_rate(main):
            entry["vs_cpu_span"] = span_rate(main) / span_rate(best)
        entry["at_least_50x_cpu"] = entry["vs_cpu"] >= 50
        ok &= entry["at_least_50x_cpu"]
    summary[net] = entry
    print(f"{net}: {entry['trials']} trials in {entry['wall_s']:.1f} s, "
          f"{entry['trials_per_hour']:.0f} trials/hour ({entry['vs_population_1']:.1f}x "
          f"population 1), MLflow child runs {entry['mlflow_child_runs']} "
          f"(ok: {entry['mlflow_ok']}), largest per-trial cost {entry['limit']} "
          f"({100 * (entry['limit_share'] or 0):.0f} % of worker time)"
          + (f", within 3 minutes: {entry['within_3_minutes']}" if net == "digits" else "")
          + (f", {entry['vs_cpu']:.1f}x the CPU's {entry['cpu_trials_per_hour']:.0f}/hour"
             + (f" ({entry['vs_cpu_span']:.1f}x over the trials' span, without start-up and "
                "report)" if "vs_cpu_span" in entry else "")
             if "vs_cpu" in entry else ""))
(out / "summary.json").write_text(json.dumps(summary, indent=2))
sys.exit(0 if ok else 1)
EOF
exit $status
