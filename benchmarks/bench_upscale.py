"""Upscaling: the bundled upscaler's throughput against Pillow's bicubic and Lanczos, and a
tiled refine's peak memory and seams at 1024 → 4096.

    python benchmarks/bench_upscale.py [--source 512] [--runs 5]
                                       [--refine-size 1024] [--scale 4] [--tile 512]
                                       [--overlap 64] [--steps 4] [--model bundled|FOLDER]

Throughput: megapixels of output per second, the bundled ldstudio-compact-x2/x4 run as the
engine runs it (tiled, engine/upscalers/tiling.py) and Pillow's resize, alternated in one
process, median of `--runs`, on the same image (the bundled model's picture enlarged to
`--source` px).

Refine: one whole upscale job (bundled upscaler ×`--scale`, then the tiled refine at 0.3 on
`--tile` px tiles) through `DiffusersBackend.execute()` in a fresh child process, which reports
its peak RSS (goal: under 3 GB at 1024 → 4096 on the CPU) and the seam ratio: the gradient
energy along the tile borders (goal: within 10 % of elsewhere; a visible grid shows as a ratio
far above 1) against that of the same refine of the picture translated by twice the overlap
(the same grid, now elsewhere on the picture) at the very same picture pixels, since the
picture's own edges near a border would otherwise count as seams. The plain ratio of the
result (its borders against everywhere else) is reported too (`image_seam_ratio`). The same
measure on a refine without overlap shows what a seam reads as.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from common import machine, machine_line, median, write_results
from PIL import Image

MIB = 1024 * 1024
RSS_GOAL_MIB = 3 * 1024
SEAM_GOAL = 1.10


def peak_rss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB


def source_image(size: int, model: str, steps: int = 20) -> Image.Image:
    """The bundled model's picture (its own size), enlarged to `size` px with Lanczos.

    Enlarged from a box 1.3 px inside its edges, so its pixel boundaries fall every
    size/61.4 px: from the whole 64 px picture they would fall on multiples of size/64 —
    exactly where the tile borders (starts on multiples of 8) lie, and the picture's own
    edges would read as seams."""
    from ldstudio.core.backend import ImageResult
    from ldstudio.core.jobs import CancelToken
    from ldstudio.core.params import GenerationParams
    from ldstudio.core.request import Request
    from ldstudio.engine.backend import DiffusersBackend

    engine = DiffusersBackend(device="cpu")
    params = GenerationParams(
        prompt="a large red circle in the center on a blue background",
        model=model,
        steps=steps,
        seed=7,
    )
    events = engine.execute(Request.txt2img(params).resolved(), CancelToken())
    [made] = [e.image for e in events if isinstance(e, ImageResult)]
    engine.close()
    inset = 1.3 * made.width / 64
    box = (inset, inset, made.width - inset, made.height - inset)
    return made.convert("RGB").resize((size, size), Image.Resampling.LANCZOS, box=box)


def throughput(image: Image.Image, runs: int) -> list[dict[str, Any]]:
    from ldstudio.core.models.upscalers import bundled_upscaler_path
    from ldstudio.engine.upscalers.loader import load_upscaler
    from ldstudio.engine.upscalers.tiling import upscale_array

    rows = []
    pixels = np.array(image)
    for scale in (2, 4):
        model = load_upscaler(bundled_upscaler_path(scale), "cpu")
        size = (image.width * scale, image.height * scale)
        contenders = {
            f"ldstudio-compact-x{scale}": lambda m=model: upscale_array(m, pixels),
            "Pillow bicubic": lambda s=size: image.resize(s, Image.Resampling.BICUBIC),
            "Pillow Lanczos": lambda s=size: image.resize(s, Image.Resampling.LANCZOS),
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        upscale_array(model, pixels)  # warm-up: first-call allocations
        for _ in range(runs):  # alternated, so the machine's drift hits all alike
            for name, run in contenders.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        megapixels = size[0] * size[1] / 1e6
        for name, seconds in times.items():
            rows.append(
                {
                    "scale": scale,
                    "upscaler": name,
                    "output": f"{size[0]}x{size[1]}",
                    "seconds_median": round(median(seconds), 4),
                    "mp_per_s": round(megapixels / median(seconds), 2),
                }
            )
    return rows


def seam_ratio(image: np.ndarray, borders_x: list[int], borders_y: list[int]) -> float:
    """Gradient energy on the tile borders (±1 px) over the energy everywhere else, the worse
    of the columns (vertical borders) and the rows (horizontal ones); 1.0: no grid."""
    pixels = image.astype(np.float32)
    ratios = []
    for axis, borders in ((1, borders_x), (0, borders_y)):
        if not borders:
            continue
        energy = (np.diff(pixels, axis=axis) ** 2).sum(axis=2)  # between pixel i and i+1
        profile = energy.mean(axis=1 - axis)  # per column (axis 1) or per row (axis 0)
        near = np.zeros(profile.shape[0], bool)
        for b in borders:
            near[max(b - 2, 0) : b + 1] = True  # the differences that cross the border
        ratios.append(float(profile[near].mean() / max(profile[~near].mean(), 1e-9)))
    return max(ratios) if ratios else 1.0


def border_energy(image: np.ndarray, borders: list[int], axis: int) -> float:
    """Mean gradient energy of the differences that cross `borders` (±1 px) along `axis`."""
    energy = (np.diff(image.astype(np.float32), axis=axis) ** 2).sum(axis=2)
    profile = energy.mean(axis=1 - axis)
    near = np.zeros(profile.shape[0], bool)
    for b in borders:
        near[max(b - 2, 0) : b + 1] = True
    return float(profile[near].mean()) if near.any() else 0.0


def translated_ratio(
    image: np.ndarray, reference: np.ndarray, xs: list[int], ys: list[int], shift: int
) -> float:
    """Energy on `image`'s tile borders over `reference`'s (the picture translated by `shift`
    px, refined on the same grid) at the same picture pixels, the worse of columns and rows."""
    ratios = []
    for axis, borders in ((1, xs), (0, ys)):
        if not borders:
            continue
        moved = [b + shift for b in borders]
        ratios.append(
            border_energy(image, borders, axis) / max(border_energy(reference, moved, axis), 1e-9)
        )
    return max(ratios) if ratios else 1.0


def alone(borders: list[int], shift: int, size: int) -> list[int]:
    """The borders whose translated pixels lie inside the picture and off every border."""
    return [
        b for b in borders if b + shift < size - 1 and all(abs(b + shift - o) > 8 for o in borders)
    ]


def tile_borders(width: int, height: int, tile: int, overlap: int) -> tuple[list[int], list[int]]:
    """Every tile edge inside the image (where a seam would show): starts and ends."""
    from ldstudio.core.upscale import tile_grid

    tiles = tile_grid(width, height, tile, overlap)
    xs = {t.x0 for t in tiles if t.x0 > 0} | {t.x1 for t in tiles if t.x1 < width}
    ys = {t.y0 for t in tiles if t.y0 > 0} | {t.y1 for t in tiles if t.y1 < height}
    return sorted(xs), sorted(ys)


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One upscale job in this (fresh) process: its peak RSS, time and seam ratio."""
    import hashlib
    import io

    import torch

    from ldstudio.core.backend import ImageResult
    from ldstudio.core.jobs import CancelToken
    from ldstudio.core.params import GenerationParams
    from ldstudio.core.request import Request
    from ldstudio.core.upscale import UpscaleSettings
    from ldstudio.engine.backend import DiffusersBackend

    torch.set_num_threads(max(1, torch.get_num_threads()))
    source = source_image(args.refine_size, args.model, args.source_steps)
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    data = buffer.getvalue()

    class Blobs:
        def get(self, digest: str) -> bytes:
            return data

    digest = hashlib.sha256(data).hexdigest()
    baseline = peak_rss_mib()
    engine = DiffusersBackend(device=args.device, blobs=Blobs())
    settings = UpscaleSettings(
        scale=args.scale, refine_strength=0.3, tile=args.tile, overlap=args.overlap
    )
    params = GenerationParams(
        prompt="a large red circle in the center on a blue background",
        model=args.model,
        steps=args.steps,
        seed=3,
        preview_method="none",
    )
    request = Request.upscaling(params, settings, digest).resolved()
    started = time.perf_counter()
    [result] = [e for e in engine.execute(request, CancelToken()) if isinstance(e, ImageResult)]
    seconds = time.perf_counter() - started
    image = np.asarray(result.image.convert("RGB"))
    peak = peak_rss_mib()
    height, width = image.shape[:2]
    xs, ys = tile_borders(width, height, args.tile, args.overlap)
    # The reference: the same refine of the picture translated by `shift` px, so the same
    # grid (tile size, overlaps: the model paints differently on other tile sizes) falls
    # elsewhere on it. A seam shows as more energy on our borders than the reference has at
    # the same picture pixels (its own edges count in both, its tile interiors lie there).
    shift = 2 * args.overlap if args.overlap else args.tile // 4
    pad = shift // args.scale
    moved = np.pad(np.asarray(source), ((pad, 0), (pad, 0), (0, 0)), mode="reflect")
    moved_png = io.BytesIO()
    Image.fromarray(moved[: source.height, : source.width]).save(moved_png, "PNG")
    data = moved_png.getvalue()
    other = Request.upscaling(params, settings, hashlib.sha256(data).hexdigest()).resolved()
    [translated] = [e for e in engine.execute(other, CancelToken()) if isinstance(e, ImageResult)]
    reference = np.asarray(translated.image.convert("RGB"))
    xs_alone = alone(xs, shift, width)
    ys_alone = alone(ys, shift, height)
    from ldstudio.core.upscale import tile_grid

    return {
        "source": f"{args.refine_size}x{args.refine_size}",
        "output": f"{width}x{height}",
        "tile": args.tile,
        "overlap": args.overlap,
        "tiles": len(tile_grid(width, height, args.tile, args.overlap)),
        "steps": args.steps,
        "seconds": round(seconds, 1),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
        "seam_ratio": round(translated_ratio(image, reference, xs_alone, ys_alone, shift), 4),
        "image_seam_ratio": round(seam_ratio(image, xs, ys), 4),
        "reference_shift_px": shift,
        "device": engine.choice.label,
    }


def run_child(args: argparse.Namespace, overlap: int, size: int) -> dict[str, Any]:
    argv = [
        sys.executable, __file__, "--child", "--refine-size", str(size), "--scale",
        str(args.scale), "--tile", str(args.tile), "--overlap", str(overlap), "--steps",
        str(args.steps), "--model", args.model, "--device", args.device, "--source-steps",
        str(args.source_steps),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"refine child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=int, default=512, help="throughput source size, px")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--refine-size", type=int, default=1024)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="refine schedule steps")
    parser.add_argument("--model", default="", help="diffusion model of the refine (bundled)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--source-steps", type=int, default=20, help="steps of the bundled model's source picture"
    )
    parser.add_argument("--skip-refine", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    info = machine()
    print(machine_line(info))
    image = source_image(args.source, args.model, args.source_steps)
    rows = throughput(image, args.runs)
    print(f"throughput, {args.source}x{args.source} source, median of {args.runs}:")
    for row in rows:
        print(
            f"  ×{row['scale']} {row['upscaler']:<22} → {row['output']:>11}  "
            f"{row['seconds_median']:>8.3f} s  {row['mp_per_s']:>7.2f} MP/s"
        )
    results: dict[str, Any] = {"machine": info, "throughput": rows}
    if not args.skip_refine:
        refine = run_child(args, args.overlap, args.refine_size)
        print(
            f"tiled refine {refine['source']} → {refine['output']}, {refine['tiles']} tiles of "
            f"{args.tile} px, overlap {args.overlap}: {refine['seconds']} s, peak RSS "
            f"{refine['peak_rss_mib']:.0f} MiB (goal < {RSS_GOAL_MIB}), seam ratio "
            f"{refine['seam_ratio']:.3f} (goal ≤ {SEAM_GOAL})"
        )
        # The same measure where seams are expected: no overlap, a smaller job.
        small = max(args.tile // args.scale, args.refine_size // 4)
        seams = run_child(args, 0, small)
        print(
            f"  for contrast, no overlap ({seams['source']} → {seams['output']}): seam ratio "
            f"{seams['seam_ratio']:.3f}"
        )
        results["refine"] = {
            **refine,
            "rss_goal_mib": RSS_GOAL_MIB,
            "seam_goal": SEAM_GOAL,
            "no_overlap": seams,
        }
    path = write_results("upscale", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
