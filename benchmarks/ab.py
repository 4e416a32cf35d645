"""A/B of the throughput benchmarks: this tree against another commit, in the same run.

Checks out ``--base`` (default: the commit before the one-contract redesign) in a temporary git
worktree, then runs each benchmark from both trees alternately -- A, B, A, B, ... ``--rounds``
times, so that both see the same machine load -- and prints, for every row of each benchmark
(thread count, net, flip ratio), each chain's steps per second in both trees and this tree's
ratio to the base (best of the rounds for each: the least disturbed). A ratio below 0.95 is a
slowdown beyond the 5 % the redesign allows.

    python benchmarks/ab.py [--base REV] [--rounds 2] [--bench step_throughput population_throughput]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The MNIST folder both trees read (the base's worktree has no ``../shared`` beside it, and
#: would fall back to synthetic data: another workload).
MNIST = ROOT.parent / "shared" / "data" / "mnist-t10k"
#: The commit before the one-contract redesign (issue 13) began.
DEFAULT_BASE = "85fd84e^"
#: Each benchmark with short settings (1 thread: the sweep's workers use one each).
BENCHES = {
    "step_throughput": ["--threads", "1", "--repeats", "3", "--seconds", "1.0"],
    "population_throughput": ["--threads", "1", "--rounds", "3"],
}
_KEYS = ("threads", "net", "flip_ratio")


def run_bench(tree: Path, name: str, out: Path) -> dict:
    """Run benchmark ``name`` of ``tree`` (its own packages first on the path); its JSON."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(tree / "benchmarks" / f"{name}.py"), *BENCHES[name],
           "--mnist", str(MNIST), "--json", str(out)]
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def best_rates(results: list[dict]) -> dict[tuple, dict[str, float]]:
    """``{row key: {chain: best steps/s over the runs}}``."""
    best: dict[tuple, dict[str, float]] = {}
    for result in results:
        for row in result["rows"]:
            key = tuple(row.get(k) for k in _KEYS)
            rates = best.setdefault(key, {})
            for name, value in row.items():
                if name.endswith("steps_per_s") and isinstance(value, (int, float)):
                    rates[name] = max(rates.get(name, 0.0), float(value))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bench", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base),
                        args.base], check=True)
        try:
            rev = subprocess.run(["git", "-C", str(base), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            for name in args.bench:
                runs: dict[str, list[dict]] = {"base": [], "this": []}
                for i in range(args.rounds):
                    for label, tree in (("base", base), ("this", ROOT)):
                        runs[label].append(run_bench(tree, name, Path(tmp) / f"{name}.json"))
                a, b = best_rates(runs["base"]), best_rates(runs["this"])
                print(f"\n{name}: base {args.base} ({rev}) vs this tree, best of {args.rounds}")
                print("| threads | net | flip_ratio | chain | base steps/s | this steps/s "
                      "| this/base |")
                print("|---|---|---|---|---|---|---|")
                for key in a:
                    for chain, rate in a[key].items():
                        if chain in b.get(key, {}):
                            ratio = b[key][chain] / rate
                            flag = "" if ratio >= 0.95 else "  <- slower"
                            print(f"| {key[0]} | {key[1] or '-'} | {key[2]:g} | "
                                  f"{chain.removesuffix('_steps_per_s')} | {rate:,.0f} | "
                                  f"{b[key][chain]:,.0f} | {ratio:.3f}{flag} |")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(base)], check=False)


if __name__ == "__main__":
    main()
