"""An "Only masked" inpaint of a 100 px mask on a 2048×2048 image against a plain txt2img at
the model's native size, on the same engine.

    python benchmarks/bench_inpaint.py [--model bundled|sd15|FOLDER] [--pairs 5] [--steps 20]
                                       [--size 2048] [--mask 100] [--canvas 4096]

Both jobs run through `DiffusersBackend.execute()` (the images are not saved: the PNG write is
the sink's and the same for both), alternated in one process so drift hits both alike. The
inpaint job reads its 2048² source and mask from the blob store, crops the mask's region with
A1111's default 32 px padding, runs at the model's native size at strength 1 (so both run the
same denoising steps), pastes back and composites. Goal: median inpaint/txt2img ≤ 1.2×.

It also times the pixel work a canvas job adds at the canvas's largest size, 4096² (best of
3): preparing a 64 px-blurred mask and compositing. Goal: each under 1 s, so a big canvas
never waits on us rather than on the model.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import torch
from common import machine, machine_line, median, sd15_folder, write_results
from PIL import Image

from ldstudio.core import masking
from ldstudio.core.backend import ImageResult
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.jobs import CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.core.paths import bundled_model_dir
from ldstudio.core.request import Request
from ldstudio.engine.backend import DiffusersBackend

GOAL = 1.2
PIXEL_GOAL_S = 1.0


class MemoryBlobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.data[digest] = data
        return digest

    def get(self, digest: str) -> bytes:
        return self.data[digest]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def source_image(size: int) -> Image.Image:
    """A smooth picture (a photo compresses and decodes like this, unlike random pixels)."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    rgb = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], size)],
        axis=-1,
    )
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def timed_job(engine: DiffusersBackend, request: Request) -> float:
    started = time.perf_counter()
    images = [
        e for e in engine.execute(request.resolved(), CancelToken()) if isinstance(e, ImageResult)
    ]
    assert len(images) == 1
    return time.perf_counter() - started


def best_of_3(fn):  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(3):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def pixel_work(size: int = 4096) -> dict[str, float]:
    """Seconds for prepare_mask(blur 64) and composite on a size² canvas."""
    values = np.zeros((size, size), np.uint8)
    values[size // 14 : size * 13 // 14, size // 8 : size * 3 // 4] = 255
    rng = np.random.default_rng(1)
    original = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    generated = Image.new("RGB", (size, size), (1, 2, 3))
    mask = Image.fromarray(values)
    prep_s, prepared = best_of_3(lambda: masking.prepare_mask(mask, invert=False, blur=64))
    comp_s, _ = best_of_3(lambda: masking.composite(original, generated, prepared))
    return {"prepare_mask_s": round(prep_s, 4), "composite_s": round(comp_s, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--mask", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--canvas", type=int, default=4096, help="side for the pixel-work timing")
    args = parser.parse_args()
    if args.model == "bundled":
        model = bundled_model_dir()
    elif args.model == "sd15":
        model = sd15_folder()
    else:
        model = Path(args.model)
    info = machine()
    print(machine_line(info))
    torch.set_num_threads(max(1, int(info.get("cores", 2))))
    blobs = MemoryBlobs()
    engine = DiffusersBackend(device=args.device, blobs=blobs)
    size, side = args.size, args.mask
    mask = np.zeros((size, size), np.uint8)
    x0 = y0 = (size - side) // 2
    mask[y0 : y0 + side, x0 : x0 + side] = 255
    image_sha = blobs.put(png(source_image(size)))
    mask_sha = blobs.put(png(Image.fromarray(mask, "L")))
    params = GenerationParams(prompt="a red circle", model=str(model), steps=args.steps, seed=1)
    plain = Request.txt2img(params)
    masked = Request.inpainting(
        params, InpaintSettings(strength=1.0, inpaint_area="masked"), image_sha, mask_sha
    )
    # Warm-up: the load, the task pipeline, first-call allocations.
    timed_job(engine, plain)
    timed_job(engine, masked)
    txt2img, inpaint, ratios = [], [], []
    for pair in range(args.pairs):
        # Alternate which job goes first: whatever the first of a pair pays, both pay.
        order = [(plain, txt2img), (masked, inpaint)]
        for request, into in order if pair % 2 == 0 else order[::-1]:
            into.append(timed_job(engine, request))
        ratios.append(inpaint[-1] / txt2img[-1])
    engine.close()
    pixels = pixel_work(args.canvas)
    result = {
        "model": str(model),
        "device": engine.choice.device,
        "steps": args.steps,
        "image": f"{size}x{size}",
        "mask": f"{side}x{side}",
        "txt2img_s_median": round(median(txt2img), 4),
        "inpaint_s_median": round(median(inpaint), 4),
        "ratio_median": round(median(ratios), 4),
        "goal": GOAL,
        "pixel_work": {"canvas": f"{args.canvas}x{args.canvas}", **pixels, "goal_s": PIXEL_GOAL_S},
    }
    print(
        f"only masked {side}px on {size}² {result['inpaint_s_median']:.3f}s vs txt2img "
        f"{result['txt2img_s_median']:.3f}s: {result['ratio_median']:.3f}× (goal ≤ {GOAL}×)"
    )
    print(
        f"at {args.canvas}²: prepare_mask (blur 64) {pixels['prepare_mask_s']:.3f}s, composite "
        f"{pixels['composite_s']:.3f}s (goal < {PIXEL_GOAL_S:.0f}s each)"
    )
    path = write_results("inpaint", {"machine": info, "runs": [result]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
