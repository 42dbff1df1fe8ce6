"""Model manager scan: files per second and GUI event-loop latency while a big folder is scanned.

    python benchmarks/bench_model_scan.py [--files 500] [--keys 1100]

Writes `--files` single-file checkpoints whose headers list `--keys` tensors (a real SD 1.5
file has about 1,100), each with its data as a sparse hole, then opens the real ModelManager
(offscreen unless DISPLAY is set) and scans the folder while a 10 ms QTimer on the GUI thread
measures how late each tick fires. The goal: p99 ≤ 50 ms, the same as while generating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, median, percentile

TICK_MS = 10


def write_checkpoint(path: Path, keys: int) -> None:
    """An SD 1.x-shaped header (the decisive keys plus filler) over a sparse data section."""
    names = [
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "first_stage_model.encoder.conv_in.weight",
        "first_stage_model.decoder.conv_out.weight",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
    ]
    shapes = [[320, 4, 3, 3], [320, 768], [128, 3, 3, 3], [3, 128, 3, 3], [768]]
    for i in range(max(0, keys - len(names))):
        names.append(f"model.diffusion_model.output_blocks.{i % 12}.{i}.weight")
        shapes.append([320, 320])
    header = {}
    offset = 0
    for name, shape in zip(names, shapes, strict=True):
        size = 2 * math.prod(shape)
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        # The data the header describes, as a hole: the scan checks sizes, never reads data.
        handle.truncate(8 + len(raw) + offset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--keys", type=int, default=1100)
    args = parser.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import qasync
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LDSTUDIO_HOME"] = str(Path(tmp) / "home")
        os.environ["HF_HUB_CACHE"] = str(Path(tmp) / "no-hf-cache")
        folder = Path(tmp) / "models"
        folder.mkdir()
        for i in range(args.files):
            write_checkpoint(folder / f"model{i:04d}.safetensors", args.keys)
        with (folder / "model0000.safetensors").open("rb") as handle:
            header_kib = struct.unpack("<Q", handle.read(8))[0] / 1024

        from ldstudio.qt.model_manager import ModelManager

        app = QApplication.instance() or QApplication(sys.argv[:1])
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        manager = ModelManager()
        manager.show()
        lateness: list[float] = []
        clock = QElapsedTimer()
        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(TICK_MS)

        def tick() -> None:
            lateness.append(max(0.0, clock.restart() - TICK_MS))

        timer.timeout.connect(tick)
        done = asyncio.Event()
        found: list[int] = []
        manager.scan_finished.connect(lambda entries: (found.append(len(entries)), done.set()))

        async def run() -> float:
            clock.start()
            timer.start()
            started = time.perf_counter()
            manager.add_folder(folder)
            await done.wait()
            seconds = time.perf_counter() - started
            timer.stop()
            return seconds

        with loop:
            seconds = loop.run_until_complete(run())
        manager.close()

    print(f"machine: {machine_line(machine())}")
    print(
        f"scanned {found[0]} files ({header_kib:.0f} KiB header each) in {seconds:.2f} s "
        f"= {found[0] / seconds:.0f} files/s, table filled in {manager.batches} batches"
    )
    print(
        f"GUI event-loop lateness during the scan ({len(lateness)} ticks of {TICK_MS} ms): "
        f"p50 {median(lateness):.1f} ms, p99 {percentile(lateness, 99):.1f} ms, "
        f"max {max(lateness):.1f} ms (goal p99 ≤ 50 ms)"
    )


if __name__ == "__main__":
    main()
