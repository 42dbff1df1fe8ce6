"""bench_inpaint.py still runs (tiny model, CPU, small image): it must not rot unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

from test_benchmarks import run_script


def test_inpaint_benchmark_runs(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks"
    args = ["--model", str(tiny_model), "--pairs", "1", "--steps", "2", "--size", "256"]
    args += ["--canvas", "512"]
    done = run_script("bench_inpaint.py", *args, "--device", "cpu", out=out)
    assert "cores · torch" in done.stdout and "only masked" in done.stdout
    row = json.loads((out / "inpaint.json").read_text())["runs"][0]
    assert row["ratio_median"] > 0 and row["goal"] == 1.2 and row["image"] == "256x256"
    pixels = row["pixel_work"]
    assert pixels["canvas"] == "512x512" and pixels["prepare_mask_s"] > 0 < pixels["composite_s"]
