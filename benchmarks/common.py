"""Shared pieces of the benchmarks: machine description, timing, SD-architecture models, output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CACHE = ROOT / "benchmarks" / ".cache"  # gitignored: random-weight models built on demand

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cpu_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_text() -> str:
    """One line naming the machine, for scripts that print rather than write JSON (no torch)."""
    system = f"{platform.system()} {platform.release()}"
    return (
        f"{cpu_name()}, {usable_cores()} usable cores, {system}, Python {platform.python_version()}"
    )


def machine() -> dict[str, Any]:
    """What a figure was measured on: every printed number names it."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 1024**3, 1)
    return info


def machine_line(info: dict[str, Any]) -> str:
    where = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores"
    return f"{where} · torch {info['torch']} · {info['date']}"


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Results as JSON under docs/benchmarks/ (the markdown report is built from these).

    `LDSTUDIO_BENCH_DIR` redirects them (the tests' smoke runs use a temporary folder).
    """
    folder = Path(os.environ.get("LDSTUDIO_BENCH_DIR") or DOCS / "benchmarks")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def sd15_folder(dtype: str = "fp32") -> Path:
    """A diffusers folder with the real SD 1.5 architecture and random weights (built once)."""
    return _arch_folder("sd15", dtype)


def sdxl_folder(dtype: str = "fp16") -> Path:
    """A diffusers folder with the real SDXL base architecture and random weights."""
    return _arch_folder("sdxl", dtype)


def _arch_folder(family: str, dtype: str) -> Path:
    folder = CACHE / f"{family}-random-{dtype}"
    if (folder / "model_index.json").is_file():
        return folder
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from sd_architectures import build

    build(family, folder, dtype)
    return folder
