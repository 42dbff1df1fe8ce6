"""benchmarks/bench_api.py still runs (bundled model, CPU, seconds): it must not rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT


def test_bench_api_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "LDSTUDIO_BENCH_DIR": str(tmp_path)}
    script = REPO_ROOT / "benchmarks" / "bench_api.py"
    args = ["--runs", "1", "--steps", "2", "--preview-steps", "4"]
    done = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cores · torch" in done.stdout and "frames/s delivered" in done.stdout
    [row] = json.loads((tmp_path / "api.json").read_text())["runs"]
    assert row["in_process_median_s"] > 0 and row["api_median_s"] > 0 and row["goal"] == 1.05
    assert row["preview_frames"] == 4 and row["preview_fps"] > 0
