"""Peak memory for loading a model and generating with it (RSS; VRAM on a GPU).

    python benchmarks/bench_memory.py [--models bundled,sd15] [--size 256]

Each model is measured in a fresh child process so one measurement cannot inflate the next:
RSS after imports (baseline), peak RSS after the load, peak RSS after one generation.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, sd15_folder, write_results

MIB = 1024 * 1024


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB


def child(model: str, size: int, steps: int) -> dict[str, Any]:
    import torch

    from ldstudio.core.imagefiles import FolderSink
    from ldstudio.core.params import GenerationParams
    from ldstudio.core.service import EngineService
    from ldstudio.engine.backend import DiffusersBackend

    result: dict[str, Any] = {"baseline_rss_mib": round(peak_rss_mib(), 1)}
    engine = DiffusersBackend()
    engine.load(model, lambda e: None)
    result["load_peak_rss_mib"] = round(peak_rss_mib(), 1)
    if engine.choice.device == "cuda":
        result["load_peak_vram_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)
        torch.cuda.reset_peak_memory_stats()
    params = GenerationParams(
        prompt="a red circle", model=model, steps=steps, width=size, height=size, seed=0
    )
    import tempfile

    # The job as the app runs it: through the service, saved to a folder.
    service = EngineService(lambda: engine, FolderSink(Path(tempfile.mkdtemp())))
    service.start()
    outcome = service.run(params)
    service.close()  # closes the engine too: its figures are taken below from the peaks
    result["status"] = type(outcome).__name__
    result["generate_peak_rss_mib"] = round(peak_rss_mib(), 1)
    if engine.choice.device == "cuda":
        result["generate_peak_vram_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)
    result["device"] = engine.choice.label
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bundled,sd15")
    parser.add_argument("--size", type=int, default=256, help="image size for SD 1.5")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "SIZE", "STEPS"), help="internal")
    args = parser.parse_args()
    if args.child:
        model, size, steps = args.child
        print(json.dumps(child(model, int(size), int(steps))))
        return 0
    info = machine()
    print(f"memory benchmark on {machine_line(info)}", flush=True)
    rows = []
    for name in args.models.split(","):
        if name == "bundled":
            model, size, steps = "", 64, 20
        elif name == "sd15":
            model, size, steps = str(sd15_folder("fp32")), args.size, 4
        else:
            model, size, steps = name, 64, 4
        done = subprocess.run(
            [sys.executable, __file__, "--child", model, str(size), str(steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = {"model": name, "size": size, **json.loads(done.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(
            f"  {name}: baseline {row['baseline_rss_mib']:.0f} MiB, load peak "
            f"{row['load_peak_rss_mib']:.0f} MiB, generation peak "
            f"{row['generate_peak_rss_mib']:.0f} MiB ({row['device']}, {size}px, {row['status']})",
            flush=True,
        )
    print(f"wrote {write_results('memory', {'machine': info, 'runs': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
