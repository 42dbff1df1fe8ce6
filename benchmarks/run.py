"""Runs the CPU benchmarks one after another, then rebuilds docs/benchmarks.md.

    python benchmarks/run.py [--quick]

Each benchmark writes its JSON under docs/benchmarks/; `--quick` uses fewer repetitions (for
a look, not for the record). The GPU benchmark is separate: benchmarks/gpu_bench.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS = [
    ("bench_overhead.py", ["--pairs", "5"], ["--pairs", "2", "--steps", "8"]),
    ("bench_memory.py", [], []),
    ("bench_bundled_model.py", [], ["--runs", "3"]),
    ("bench_startup.py", [], []),
    ("bench_gui.py", [], []),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failed = []
    for script, full, quick in BENCHMARKS:
        path = HERE / script
        if not path.is_file():
            print(f"== {script}: not present, skipped")
            continue
        print(f"== {script}", flush=True)
        done = subprocess.run([sys.executable, str(path), *(quick if args.quick else full)])
        if done.returncode != 0:
            failed.append(script)
    subprocess.run([sys.executable, str(HERE / "report.py")], check=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
