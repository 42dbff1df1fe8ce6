"""Peak memory and time to load a real-size SD 1.5 single-file checkpoint, offline.

Writes random fp16 weights at SD 1.5's real shapes in the original key layout (≈2.1 GB), then
loads the file in a fresh process per dtype (so each peak is that load's own) through
ldstudio's loader with HF_HUB_OFFLINE=1, and prints the load time and the process's peak
resident memory above what it held just before loading. Goal: peak ≤ 1.5 × the file size.

    nice -n 10 python benchmarks/bench_single_file_load.py [--keep FILE] [--dtypes fp16,fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(path: Path, dtype: str) -> dict[str, float]:
    """Runs in the child: import everything first, then load and record the peak."""
    import torch

    from ldstudio.engine.checkpoints import load_single_file

    torch_dtype = {"fp16": torch.float16, "fp32": torch.float32}[dtype]
    before = rss_bytes()
    started = time.perf_counter()
    pipe = load_single_file(path, torch_dtype, "sd1")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    after = rss_bytes()
    params = sum(
        p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters()
    )
    return {
        "seconds": seconds,
        "rss_before": before,
        "peak_rss": peak,
        "rss_after": after,
        "parameters": params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="write/reuse the file here")
    parser.add_argument("--dtypes", default="fp16,fp32")
    parser.add_argument("--child", nargs=2, metavar=("FILE", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1])))
        return

    sys.path.insert(0, str(ROOT / "tests"))
    workdir = None
    path = args.keep
    if path is None:
        workdir = tempfile.TemporaryDirectory(prefix="ldstudio-bench-")
        path = Path(workdir.name) / "sd15-random-fp16.safetensors"
    if not path.exists():
        from models_support import real_sd15_state_dict, save_single_file

        started = time.perf_counter()
        state = real_sd15_state_dict()
        save_single_file(state, path)
        del state
        print(f"wrote {path} in {time.perf_counter() - started:.1f} s")
    size = path.stat().st_size
    print(
        f"machine: {platform.node()} · {platform.processor() or platform.machine()} · "
        f"{os.cpu_count()} CPUs · Python {platform.python_version()}"
    )
    print(f"file: {size / 1e9:.2f} GB (fp16, SD 1.5 shapes, original key layout)")
    for dtype in args.dtypes.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(path), dtype],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        extra = result["peak_rss"] - result["rss_before"]
        resident = (result["rss_after"] - result["rss_before"]) / 1e9
        print(
            f"load as {dtype}: {result['seconds']:.1f} s, {result['parameters'] / 1e9:.3f} G "
            f"parameters; peak RSS above pre-load {extra / 1e9:.2f} GB = {extra / size:.2f}× the "
            f"file (goal ≤ 1.5×; resident after load {resident:.2f} GB)"
        )
    if workdir is not None:
        workdir.cleanup()


if __name__ == "__main__":
    main()
