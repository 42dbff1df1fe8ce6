"""bench_upscale.py still runs (bundled upscaler and model, CPU, small sizes): it must not rot
unnoticed, and its seam measure must tell a grid from none."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from test_benchmarks import run_script

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_upscale_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks"
    args = ["--source", "64", "--runs", "1", "--refine-size", "64", "--scale", "2"]
    args += ["--tile", "128", "--overlap", "32", "--steps", "2", "--source-steps", "2"]
    done = run_script("bench_upscale.py", *args, out=out)
    assert "cores · torch" in done.stdout and "MP/s" in done.stdout
    data = json.loads((out / "upscale.json").read_text())
    names = {(row["scale"], row["upscaler"]) for row in data["throughput"]}
    assert (2, "ldstudio-compact-x2") in names and (4, "Pillow Lanczos") in names
    assert all(row["mp_per_s"] > 0 for row in data["throughput"])
    refine = data["refine"]
    assert refine["output"] == "128x128" and refine["tiles"] == 1 and refine["peak_rss_mib"] > 0
    run_script("report.py", out=out)
    assert "## Upscaling" in (tmp_path / "benchmarks.md").read_text()


def test_seam_ratio_sees_a_grid_and_not_a_smooth_image() -> None:
    from bench_upscale import seam_ratio

    x = np.linspace(0, 255, 256, dtype=np.float32)
    smooth = np.repeat(np.stack([np.add.outer(x, x) / 2] * 3, axis=2), 1, axis=0)
    assert abs(seam_ratio(smooth, [128], [128]) - 1.0) < 0.05
    grid = smooth.copy()
    grid[:, 128:] += 6  # a step where two tiles meet
    assert seam_ratio(grid, [128], [128]) > 2.0
