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


def test_report_says_by_how_much_a_gui_goal_is_missed(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    from report import build

    machine = {"cpu": "Test CPU", "cores": 2, "torch": "2.x", "date": "2026-11-26"}
    gui = {
        "machine": machine,
        "model": "bundled model",
        "steps": 40,
        "images": 3,
        "engine_threads": 2,
        "goal_p99_ms": 50,
        "lateness": {
            "start": {"p50_ms": 0.1, "p99_ms": 90.0, "max_ms": 200.0, "ticks": 300},
            "generate": {"p50_ms": 0.3, "p99_ms": 62.5, "max_ms": 80.0, "ticks": 250},
        },
        "previews": {"produced": 120, "displayed": 60, "seconds": 3.0},
    }
    startup = {
        "machine": machine,
        "model": "bundled model",
        "steps": 20,
        "runs": [
            {"window_shown": 0.3, "first_image": 5.5},
            {"window_shown": 0.4, "first_image": 5.7},
        ],
        "median_s": {"window_shown": 0.35, "first_image": 5.6},
        "torch_still_importing_at_show": 2,
    }
    (tmp_path / "gui.json").write_text(json.dumps(gui))
    (tmp_path / "startup.json").write_text(json.dumps(startup))
    report = build(tmp_path)
    assert "Test CPU, 2 cores · torch 2.x · 2026-11-26" in report
    assert "| generating | 0.3 | 62.5 | 80.0 | 250 | ≤ 50 ✗ (over by 12.5 ms) |" in report
    assert "| engine start + model load | 0.1 | 90.0 | 200.0 | 300 | — |" in report
    assert "120 produced (40.0/s), 60 displayed (20.0/s)" in report
    assert "| launch → first image saved | 5.60 | 5.50, 5.70 |" in report
    assert "in 2 of 2 runs" in report
