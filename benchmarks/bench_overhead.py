"""ldstudio's engine against a bare diffusers `pipe(...)` call on the same pipeline.

    python benchmarks/bench_overhead.py [--models bundled,sd15] [--pairs 5] [--steps 10]

Alternates engine and bare runs in one process (so drift hits both alike) and reports the
median engine/bare ratio per preview method. Goals: ≤ 1.03× with previews off, ≤ 1.05× with
latent2rgb every step. An engine run is one job as the EngineService runs it, without its
queue: `execute()` iterated (so the relay from the engine's torch thread is measured) and
each image saved through the sink before the next event, which includes writing the PNG
with metadata, as the engine's own run() did before; the ratio without that write is
reported too. The bare call runs on the engine's torch thread, as the engine's own does:
alternating two threads would also measure torch's per-thread CPU pools going cold.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from common import machine, machine_line, median, sd15_folder, write_results

from ldstudio.core.backend import BackendEvent, ImageResult
from ldstudio.core.events import ImageRecord
from ldstudio.core.imagefiles import FolderSink, ImageSink
from ldstudio.core.jobs import CancelToken, Job
from ldstudio.core.params import GenerationParams
from ldstudio.core.paths import bundled_model_dir
from ldstudio.engine.backend import DiffusersBackend
from ldstudio.engine.previews import taesd_dir
from ldstudio.engine.schedulers import build_scheduler

GOALS = {"none": 1.03, "latent2rgb": 1.05}


class NullSink:
    """Keeps images in memory: isolates the engine's generation overhead from the PNG write."""

    def save(self, image: Any, params: GenerationParams, **info: Any) -> ImageRecord:
        return ImageRecord(Path("/dev/null"), params, int(params.seed), 0, 0, 0, "", "", "", 0.0)


def run_job(
    engine: DiffusersBackend,
    params: GenerationParams,
    sink: ImageSink | NullSink,
    on_event: Callable[[BackendEvent], None] = lambda event: None,
) -> None:
    """One job as the EngineService runs it, minus its queue and worker thread: iterate
    `execute()` and save each image through the sink before taking the next event."""
    choice = engine.choice
    for event in engine.execute(Job.create(params).request, CancelToken()):
        if isinstance(event, ImageResult):
            sink.save(
                event.image,
                event.params,
                index=event.index,
                model_name=event.model_name,
                device=choice.device,
                dtype=choice.dtype,
                seconds=event.seconds,
            )
        else:
            on_event(event)


def bare_run(pipe: Any, params: GenerationParams, base_config: Any) -> None:
    """A bare diffusers call; call it through `engine.on_torch_thread` to compare like with like."""
    pipe.scheduler = build_scheduler(params.scheduler, base_config, int(params.seed))
    pipe(
        prompt=params.prompt,
        num_inference_steps=params.steps,
        guidance_scale=params.guidance_scale,
        width=params.width,
        height=params.height,
        generator=[torch.Generator("cpu").manual_seed(int(params.seed))],
        output_type="pil",
    )


def profile_engine(engine: DiffusersBackend, params: GenerationParams, out: Path) -> list[str]:
    """Where an engine run spends time outside diffusers/torch: ldstudio's own functions, on
    both threads (a profiler sees only the thread it was enabled on)."""
    import cProfile
    import pstats

    consumer, torch_side = cProfile.Profile(), cProfile.Profile()
    engine.on_torch_thread(torch_side.enable)
    consumer.enable()
    run_job(engine, params, FolderSink(out))
    consumer.disable()
    engine.on_torch_thread(torch_side.disable)
    stats = pstats.Stats(consumer).add(torch_side)
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "ldstudio" in filename and "benchmarks" not in filename:
            rows.append((cumulative, own, calls, f"{Path(filename).name}:{line} {name}"))
    rows.sort(reverse=True)
    return [
        f"{where}: {cum * 1e3:.1f} ms cumulative, {own * 1e3:.1f} ms own, {calls} calls"
        for cum, own, calls, where in rows[:12]
    ]


def measure(
    model: Path,
    size: int,
    steps: int,
    pairs: int,
    methods: list[str],
    results: dict[str, Any],
    checkpoint: Any = lambda: None,
) -> dict[str, Any]:
    """Fill `results` in place (so `checkpoint` can save a run that is cut short)."""
    engine = DiffusersBackend(device="auto")
    loaded = engine.load(str(model), lambda e: None)
    params = GenerationParams(
        prompt="a red circle on a blue background",
        model=str(model),
        steps=steps,
        width=size,
        height=size,
        seed=1,
    )
    out = Path(tempfile.mkdtemp(prefix="ldstudio-bench-"))
    results.update({"model": model.name, "size": size, "steps": steps, "pairs": pairs})
    bare = functools.partial(bare_run, loaded.pipe, params, loaded.base_scheduler_config)
    engine.on_torch_thread(bare)  # warm-up
    for method in methods:
        job_params = params.replace(preview_method=method)
        run_job(engine, job_params, NullSink())  # warm-up (fits tables)
        ratios, ratios_nosave, bare_times = [], [], []
        for pair in range(pairs):
            started = time.perf_counter()
            engine.on_torch_thread(
                functools.partial(bare_run, loaded.pipe, job_params, loaded.base_scheduler_config)
            )
            bare_s = time.perf_counter() - started
            # The two engine runs swap places every pair: the one right after the bare call
            # would otherwise always be the first (and each carry that position's cost).
            timed: dict[str, float] = {}
            for name in ("save", "nosave") if pair % 2 == 0 else ("nosave", "save"):
                sink = FolderSink(out) if name == "save" else NullSink()
                started = time.perf_counter()
                run_job(engine, job_params, sink)
                timed[name] = time.perf_counter() - started
            with_save, no_save = timed["save"], timed["nosave"]
            bare_times.append(bare_s)
            ratios.append(with_save / bare_s)
            ratios_nosave.append(no_save / bare_s)
        results[method] = {
            "bare_median_s": round(median(bare_times), 4),
            "ratio_median": round(median(ratios), 4),
            "ratio_without_png_write": round(median(ratios_nosave), 4),
            "goal": GOALS.get(method),
        }
        row = results[method]
        verdict = ""
        if row["goal"] and row["ratio_median"] > row["goal"]:
            row["profile"] = profile_engine(engine, job_params, out)
        if row["goal"]:
            ok = row["ratio_median"] <= row["goal"]
            verdict = (
                "meets goal"
                if ok
                else f"MISSES goal {row['goal']}× by {row['ratio_median'] - row['goal']:.3f}"
            )
        print(
            f"  {model.name} {size}px {steps} steps, preview {method:<10} bare "
            f"{row['bare_median_s']:.3f} s  ratio {row['ratio_median']:.3f}× "
            f"(no PNG write {row['ratio_without_png_write']:.3f}×) {verdict}",
            flush=True,
        )
        checkpoint()  # a run cut short still leaves what it measured
    engine.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bundled,sd15")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    info = machine()
    print(f"overhead benchmark on {machine_line(info)}", flush=True)
    runs = []
    for name in args.models.split(","):
        methods = ["none", "latent2rgb", "vae"]
        if name == "bundled":
            model, size, steps = bundled_model_dir(), 64, args.steps
        elif name == "sd15":
            # SD 1.5 at 256×256 on a CPU: ~1 s per step, so fewer steps keep the run short.
            model, size, steps = sd15_folder("fp32"), 256, min(args.steps, 8)
            if taesd_dir("sd1").joinpath("config.json").is_file():
                methods.append("taesd")
        elif Path(name).is_dir():
            model, size, steps = Path(name), 64, args.steps
        else:
            raise SystemExit(f"--models: {name!r} is not known; allowed: bundled, sd15, a folder")
        current: dict[str, Any] = {}
        runs.append(current)
        measure(
            model,
            size,
            steps,
            args.pairs,
            methods,
            current,
            checkpoint=lambda: write_results("overhead", {"machine": info, "runs": runs}),
        )
    path = write_results("overhead", {"machine": info, "runs": runs})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
