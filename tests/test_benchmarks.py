"""The benchmark scripts still run (tiny model, CPU, seconds): they must not rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

BENCH = REPO_ROOT / "benchmarks"


def run_script(name: str, *args: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LDSTUDIO_BENCH_DIR": str(out)}
    done = subprocess.run(
        [sys.executable, str(BENCH / name), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_overhead_memory_gpu_smoke_and_report(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks"
    done = run_script(
        "bench_overhead.py", "--models", str(tiny_model), "--pairs", "1", "--steps", "2", out=out
    )
    assert "cores · torch" in done.stdout  # every figure names its machine
    overhead = json.loads((out / "overhead.json").read_text())
    row = overhead["runs"][0]
    assert {"none", "latent2rgb", "vae"} <= set(row)
    assert row["none"]["ratio_median"] > 0 and row["none"]["goal"] == 1.03

    run_script("bench_memory.py", "--models", str(tiny_model), out=out)
    memory = json.loads((out / "memory.json").read_text())["runs"][0]
    assert memory["status"] == "JobFinished"
    assert memory["generate_peak_rss_mib"] >= memory["load_peak_rss_mib"] > 0

    run_script("gpu_bench.py", "--smoke", out=out)
    gpu = json.loads((out / "gpu.json").read_text())["runs"][0]
    assert gpu["family"] == "tiny" and gpu["eager_it_s"] > 0
    assert set(gpu["preview_ms_per_step"]) == {"latent2rgb", "vae"}

    run_script("report.py", out=out)
    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Overhead" in report and "## Memory" in report and "## GPU" in report
    assert "≈ 22 it/s" in report


def test_gpu_device_script_explains_what_it_needs(tmp_path: Path) -> None:
    script = BENCH / "gpu_device.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: bash benchmarks/gpu_device.sh fetch | run" in (
        usage.stderr
    )
    # `run` on a checkout without the carried wheels stops before installing anything.
    checkout = tmp_path / "checkout"
    (checkout / "benchmarks").mkdir(parents=True)
    (checkout / "benchmarks" / "gpu_device.sh").write_bytes(script.read_bytes())
    bare = subprocess.run(
        ["bash", str(checkout / "benchmarks" / "gpu_device.sh"), "run"],
        capture_output=True,
        text=True,
    )
    assert bare.returncode == 2 and "no wheels in .whl/" in bare.stderr
