"""GUI event-loop latency (p50/p99) while generating, and previews displayed vs produced.

    python benchmarks/bench_gui.py [--steps 40] [--count 3] [--threads 2]

Runs ldstudio's real window and engine thread in this process (offscreen unless DISPLAY is set)
on the bundled model. A 10 ms precise QTimer on the GUI thread measures how late each tick
fires: that lateness is what a user feels as lag. Phases are reported separately: engine start
(torch import) and model load, then generation (the goal: p99 ≤ 50 ms on 2 CPU cores). Falls
back to a tiny random model, clearly labelled, while the bundled one is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import machine, machine_text, percentile, write_results

ROOT = Path(__file__).resolve().parents[1]
TICK_MS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--count", type=int, default=3, help="images, one after another")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the engine")
    parser.add_argument(
        "--model", type=Path, help="a diffusers folder (default: the bundled model)"
    )
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "offscreen")
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    os.environ["LDSTUDIO_HOME"] = tempfile.mkdtemp(prefix="ldstudio-bench-")

    import qasync
    from PySide6.QtCore import Qt, QTimer

    from ldstudio.app import build_window, ensure_application
    from ldstudio.core.backend import Backend

    bundled = ROOT / "resources" / "models" / "ldstudio-shapes"
    tiny: Path | None = args.model
    label = f"model {args.model}" if args.model else "bundled model ldstudio-shapes"
    if tiny is None and not (bundled / "model_index.json").is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_model import build_tiny_model

        tiny = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny-sd")
        label = "TINY RANDOM MODEL (the bundled model is missing)"

    def factory() -> Backend:
        import torch

        from ldstudio.engine.backend import DiffusersBackend

        torch.set_num_threads(args.threads)
        return DiffusersBackend(device="cpu")

    app = ensure_application()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = build_window(factory)
    if tiny is not None:
        window.add_model_folder(tiny)
    window.show()

    phase = ["start"]
    lateness: dict[str, list[float]] = {"start": [], "generate": []}
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lateness[phase[0]].append(max(0.0, (now - last[0]) * 1000 - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    generate_seconds = [0.0]
    started_at = [0.0]

    def on_started(_event: object) -> None:
        phase[0] = "generate"
        started_at[0] = time.perf_counter()

    window.controller.job_started.connect(on_started)
    done = asyncio.Event()

    async def scenario() -> None:
        timer.start()
        window.start()
        window.prompt_pane.set_prompts("a red circle on a blue background", "")
        window.params_pane.steps_spin.setValue(args.steps)
        window.params_pane.batch_count_spin.setValue(args.count)
        outcome = await window.run_job(window.current_params())
        generate_seconds[0] = time.perf_counter() - started_at[0]
        timer.stop()
        print(f"job: {type(outcome).__name__}")
        done.set()

    with loop:
        loop.create_task(scenario())
        loop.run_until_complete(done.wait())
        pane = window.preview_pane
        produced, displayed = pane.produced, pane.displayed
        window.close()

    seconds = generate_seconds[0]
    print(f"machine: {machine_text()}; torch threads on the engine: {args.threads}")
    print(f"model: {label}; {args.count} image(s) × {args.steps} steps, latent2rgb every step")
    phases: dict[str, dict[str, float]] = {}
    for name, text in (("start", "engine start + model load"), ("generate", "generating")):
        values = lateness[name]
        if values:
            phases[name] = {
                "p50_ms": round(statistics.median(values), 2),
                "p99_ms": round(percentile(values, 99), 2),
                "max_ms": round(max(values), 2),
                "ticks": len(values),
            }
            print(
                f"event-loop lateness while {text:26s}: p50 {phases[name]['p50_ms']:5.1f} ms"
                f"  p99 {phases[name]['p99_ms']:6.1f} ms  max {phases[name]['max_ms']:6.1f} ms"
                f"  ({len(values)} ticks)"
            )
    print(
        f"previews: produced {produced} ({produced / seconds:.1f}/s), displayed {displayed} "
        f"({displayed / seconds:.1f}/s) over {seconds:.1f} s of generation"
    )
    p99 = phases.get("generate", {}).get("p99_ms", float("nan"))
    print(f"goal p99 ≤ 50 ms while generating: {'met' if p99 <= 50 else 'NOT met'}")
    results = {
        "machine": machine(),
        "model": label,
        "steps": args.steps,
        "images": args.count,
        "engine_threads": args.threads,
        "lateness": phases,
        "goal_p99_ms": 50,
        "previews": {"produced": produced, "displayed": displayed, "seconds": round(seconds, 2)},
    }
    print(f"wrote {write_results('gui', results)}")


if __name__ == "__main__":
    main()
