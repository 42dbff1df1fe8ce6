"""The GPU benchmark: SD 1.5 (512×512) and SDXL (1024×1024) architectures in fp16.

    python benchmarks/gpu_bench.py                 # on a CUDA machine, ~5-8 minutes
    python benchmarks/gpu_bench.py --smoke         # tiny model on the CPU: checks the script
    python benchmarks/gpu_bench.py --device cpu --size 256 --steps 2 --pairs 1 --no-compile
                                                   # the real architectures, small, on the CPU

Random weights (speed depends on the architecture, not the weights), built on the GPU in
seconds. Per family: it/s eager and with the UNet compiled, the cost of each preview method per
step, peak VRAM, ldstudio's engine against a bare `pipe(...)` (median ratio of alternating
runs), canvas jobs (img2img, "Only masked" on a 2048² image), the hires fix (×2,
lanczos and latent) against txt2img, and upscaling (the bundled upscaler's MP/s on the GPU
against Pillow, and a whole ×4 upscale job with the tiled refine: time and peak VRAM).
Stops starting new measurements after --budget seconds so it fits a lent GPU's time.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import torch
from bench_inpaint import MemoryBlobs, png, source_image, timed_job
from bench_overhead import NullSink, bare_run, run_job
from common import CACHE, ROOT, machine, machine_line, median, timed, write_results
from PIL import Image

from ldstudio.core.backend import Step
from ldstudio.core.hires import HiresSettings
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.options import EngineOptions
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.engine.backend import DiffusersBackend
from ldstudio.engine.previews import taesd_dir

SIZES = {"sd15": 512, "sdxl": 1024, "tiny": 64}
TAESD_FAMILY = {"sd15": "sd1", "sdxl": "sdxl"}


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.skipped: list[str] = []

    def allows(self, what: str) -> bool:
        if time.monotonic() < self.deadline:
            return True
        self.skipped.append(what)
        print(f"  skipped (time budget): {what}", flush=True)
        return False


def build_folder(family: str, device: str) -> Path:
    folder = CACHE / f"{family}-random-fp16-gpu"
    if (folder / "model_index.json").is_file():
        return folder
    if family == "tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_model import build_tiny_model

        return build_tiny_model(CACHE / "tiny-random")
    from sd_architectures import build

    # Initialising 2.6 B random parameters is much faster on the GPU than on the CPU.
    with torch.device(device):
        return build(family, folder, "fp16")


def engine_run(engine: DiffusersBackend, params: GenerationParams) -> tuple[float, float]:
    """(wall seconds, it/s over the denoising loop) for one job."""
    steps: list[Step] = []

    def emit(event: Any) -> None:
        if isinstance(event, Step):
            steps.append(event)

    started = time.perf_counter()
    run_job(engine, params, NullSink(), emit)
    if engine.choice.device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    return wall, steps[-1].it_per_s if steps else 0.0


def bench_family(family: str, args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    device = args.device
    # fp16 matmuls on a CPU are emulated and slow; the CPU check is about the code paths.
    dtype = "fp16" if device == "cuda" else "fp32"
    folder = build_folder(family, device)
    size = args.size or SIZES[family]
    params = GenerationParams(
        prompt="a photo of a red fox in the snow",
        model=str(folder),
        steps=args.steps,
        width=size,
        height=size,
        seed=1,
        preview_method="none",
        scheduler="Euler",
    )
    row: dict[str, Any] = {"family": family, "size": size, "steps": args.steps, "dtype": dtype}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    blobs = MemoryBlobs()
    engine = DiffusersBackend(EngineOptions(device=device, dtype=dtype), blobs=blobs)
    loaded = engine.load(str(folder), lambda e: None)
    row["load_s"] = round(loaded.seconds, 2)
    engine_run(engine, params)  # warm-up: kernels, allocator, cuDNN autotune
    # On the engine's torch thread, as its own call: like is compared with like.
    bare = functools.partial(bare_run, loaded.pipe, params, loaded.base_scheduler_config)

    # Eager speed and the engine-vs-bare ratio, alternating.
    walls, rates, bares = [], [], []
    for _ in range(args.pairs):
        started = time.perf_counter()
        engine.on_torch_thread(bare)
        if device == "cuda":
            torch.cuda.synchronize()
        bares.append(time.perf_counter() - started)
        wall, rate = engine_run(engine, params)
        walls.append(wall)
        rates.append(rate)
    row["eager_it_s"] = round(median(rates), 2)
    row["eager_image_s"] = round(median(walls), 3)
    row["ratio_vs_bare"] = round(median([w / b for w, b in zip(walls, bares, strict=True)]), 4)

    # Preview cost per step, relative to previews off.
    methods = ["latent2rgb", "vae"]
    if family in TAESD_FAMILY and taesd_dir(TAESD_FAMILY[family]).joinpath("config.json").is_file():
        methods.append("taesd")
    row["preview_ms_per_step"] = {}
    for method in methods:
        if not budget.allows(f"{family} preview {method}"):
            continue
        with_preview = params.replace(preview_method=method)
        engine_run(engine, with_preview)  # warm-up: the preview decoder's own kernels
        # Alternate with previews off, so clock drift between the two cancels out.
        extra = [
            engine_run(engine, with_preview)[0] - engine_run(engine, params)[0]
            for _ in range(args.pairs)
        ]
        row["preview_ms_per_step"][method] = round(median(extra) / args.steps * 1e3, 2)
    if budget.allows(f"{family} img2img/inpaint"):
        row["canvas"] = bench_canvas(engine, blobs, params, args.pairs, 256 if size <= 64 else 2048)
    if budget.allows(f"{family} hires fix"):
        row["hires"] = bench_hires(engine, params, args.pairs)
    if budget.allows(f"{family} upscale"):
        row["upscale"] = bench_upscale(engine, blobs, params, 128 if size <= 64 else size)
    if device == "cuda":
        row["peak_vram_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    engine.close()
    del engine, loaded, bare

    # Compiled UNet: one-time warm-up, then speed.
    if not args.no_compile and budget.allows(f"{family} compiled"):
        compiled = DiffusersBackend(EngineOptions(device=device, dtype=dtype, compile_unet=True))
        compiled.load(str(folder), lambda e: None)
        warm, _ = engine_run(compiled, params)
        row["compile_warmup_s"] = round(warm, 1)
        row["compiled_it_s"] = round(
            median([engine_run(compiled, params)[1] for _ in range(args.pairs)]), 2
        )
        compiled.close()
    print(f"  {family}: {row}", flush=True)
    return row


def bench_hires(engine: DiffusersBackend, params: GenerationParams, pairs: int) -> dict[str, Any]:
    """A hires fix ×2 (lanczos and latent, strength 0.5/0.6, the same steps) against the plain
    txt2img of its first pass, alternated: what the second pass at 4× the pixels costs."""
    plain = Request.txt2img(params)
    jobs = {
        "lanczos": Request.txt2img(params, HiresSettings(upscaler="lanczos")),
        "latent": Request.txt2img(params, HiresSettings(upscaler="latent")),
    }
    for request in (plain, *jobs.values()):
        timed_job(engine, request)  # warm-up: the task pipeline at the bigger size
    times: dict[str, list[float]] = {"txt2img": [], **{name: [] for name in jobs}}
    for _ in range(pairs):
        times["txt2img"].append(timed_job(engine, plain))
        for name, request in jobs.items():
            times[name].append(timed_job(engine, request))
    base = median(times["txt2img"])
    return {
        "txt2img_s": round(base, 3),
        **{f"hires_x2_{name}_s": round(median(times[name]), 3) for name in jobs},
        **{f"hires_x2_{name}_ratio": round(median(times[name]) / base, 3) for name in jobs},
    }


def bench_upscale(
    engine: DiffusersBackend, blobs: MemoryBlobs, params: GenerationParams, source: int
) -> dict[str, Any]:
    """The bundled upscaler on this device (MP/s of output, ×2 and ×4, against Pillow's
    Lanczos on the CPU), and one whole upscale job: ×4 of a `source`² image, refined at 0.3 on
    512 px tiles with 64 px overlap (the defaults), with its peak VRAM."""
    from ldstudio.core.models.upscalers import bundled_upscaler_path
    from ldstudio.core.upscale import UpscaleSettings
    from ldstudio.engine.upscalers.tiling import upscale_array

    image = source_image(source)
    pixels = np.asarray(image).copy()
    result: dict[str, Any] = {"source": f"{source}x{source}"}
    for scale in (2, 4):
        model = engine.on_torch_thread(lambda s=scale: engine.upscaler(bundled_upscaler_path(s)))
        engine.on_torch_thread(lambda m=model: upscale_array(m, pixels))  # warm-up
        runs = [
            timed(lambda m=model: engine.on_torch_thread(lambda: upscale_array(m, pixels)))
            for _ in range(3)
        ]
        size = (source * scale, source * scale)
        pil = [timed(lambda z=size: image.resize(z, Image.Resampling.LANCZOS)) for _ in range(3)]
        megapixels = size[0] * size[1] / 1e6
        result[f"x{scale}_model_mp_s"] = round(megapixels / median(runs), 2)
        result[f"x{scale}_pillow_lanczos_mp_s"] = round(megapixels / median(pil), 2)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    request = Request.upscaling(
        params.replace(steps=20), UpscaleSettings(scale=4), blobs.put(png(image))
    )
    result["x4_refined_job_s"] = round(timed_job(engine, request), 2)
    if torch.cuda.is_available():
        result["x4_refined_job_peak_vram_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


def bench_canvas(
    engine: DiffusersBackend, blobs: MemoryBlobs, params: GenerationParams, pairs: int, big: int
) -> dict[str, Any]:
    """Canvas jobs against txt2img at the same size and steps, alternated: img2img of a
    native-size image (strength 0.75: fewer steps, one VAE encode more) and "Only masked" with a
    100 px mask on a big² image at strength 1 (goal ≤ 1.2× of txt2img, bench_inpaint.py)."""
    size = int(params.width or 512)
    small = blobs.put(png(source_image(size)))
    large = blobs.put(png(source_image(big)))
    mask = Image.new("L", (big, big), 0)
    mask.paste(255, ((big - 100) // 2, (big - 100) // 2, (big + 100) // 2, (big + 100) // 2))
    mask_sha = blobs.put(png(mask))
    canvas = params.replace(width=None, height=None)
    img2img = Request.inpainting(canvas, InpaintSettings(strength=0.75), small)
    masked = Request.inpainting(
        canvas, InpaintSettings(strength=1.0, inpaint_area="masked"), large, mask_sha
    )
    plain = Request.txt2img(params)
    for request in (plain, img2img, masked):
        timed_job(engine, request)  # warm-up: the task pipeline, the encoder's kernels
    times: dict[str, list[float]] = {"txt2img": [], "img2img": [], "masked": []}
    for _ in range(pairs):
        for name, request in (("txt2img", plain), ("img2img", img2img), ("masked", masked)):
            times[name].append(timed_job(engine, request))
    base = median(times["txt2img"])
    return {
        "txt2img_s": round(base, 3),
        "img2img_0.75_s": round(median(times["img2img"]), 3),
        f"only_masked_100px_{big}_s": round(median(times["masked"]), 3),
        "only_masked_ratio": round(median(times["masked"]) / base, 4),
        "goal": 1.2,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="sd15,sdxl")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--budget", type=float, default=420, help="seconds (default 7 minutes)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU, 3 steps")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--size", type=int, default=0, help="pixels (default: the family's own)")
    parser.add_argument("--out", default="gpu", help="results name under docs/benchmarks/")
    args = parser.parse_args()
    if args.smoke:
        args.families, args.steps, args.pairs, args.no_compile = "tiny", 3, 1, True
        args.device = "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --smoke or --device cpu to check the script on the CPU")
        return 2
    info = machine()
    print(f"GPU benchmark on {machine_line(info)}", flush=True)
    budget = Budget(args.budget)
    rows = [bench_family(family, args, budget) for family in args.families.split(",")]
    results = {"machine": info, "runs": rows, "skipped": budget.skipped}
    print(f"wrote {write_results(args.out, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
