"""Wall-clock time of one image from the bundled shapes model at ldstudio's default settings.

    python benchmarks/bench_bundled_model.py [--runs 7] [--threads N]

Prints the machine and the median over the runs (after one warm-up), and with --json the
numbers as one JSON line (the model card quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from training.card import cpu_name  # noqa: E402
from training.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS, load_pipeline  # noqa: E402

PROMPT = "a red circle on a blue background"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=ROOT / "resources" / "models" / "ldstudio-shapes"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = load_pipeline(args.model)

    def once(seed: int) -> float:
        t0 = time.perf_counter()
        pipe(
            PROMPT,
            num_inference_steps=DEFAULT_STEPS,
            guidance_scale=DEFAULT_GUIDANCE,
            generator=torch.Generator().manual_seed(seed),
        )
        return time.perf_counter() - t0

    once(0)  # warm-up: oneDNN primitive creation and first-call allocations
    times = [once(i + 1) for i in range(args.runs)]
    result = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "settings": f"Euler a, {DEFAULT_STEPS} steps, guidance {DEFAULT_GUIDANCE}, 64x64",
        "runs": args.runs,
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }
    print(f"machine: {result['cpu']}, {result['cpu_count']} CPUs, {args.threads} threads")
    print(f"torch {result['torch']}, python {result['python']}")
    print(f"{result['settings']}: median {result['median_s']:.3f} s over {args.runs} runs")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
