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
its peak RSS (goal: under 3 GB at 1024 → 4096 on the CPU) and the seam ratio (goal: gradient
energy along the tile borders within 10 % of elsewhere). The picture is colour 1/f noise
(`texture`: a photograph's spectrum, nothing at the tile period, no edges of its own on the
borders). The energy of the differences across the borders is binned in SEAM_BIN-px bands
from just before each overlap to just after it, averaged over all overlaps, and divided by
that away from every overlap; the seam ratio is the worst band as max(r, 1/r), so a step
(far above 1) and a soft band (below 1) both count. Controls: the same picture upscaled
without refine, measured on the same grid (`plain_seam_ratio`: the picture's and the
upscaler's own share; `seam_ratio_vs_plain` divides each band by the plain image's first),
and the same job without overlap (`no_overlap`: what a grid reads as).
"""

from __future__ import annotations

import argparse
import itertools
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

from ldstudio.core.upscale import DEFAULT_OVERLAP

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


def texture(size: int, seed: int = 0) -> Image.Image:
    """A natural-looking test picture with no structure at any period: colour 1/f noise (the
    amplitude spectrum of photographs), the same for the same size and seed. Its gradient
    energy is spread evenly over the image, so a tile grid cannot hide in, or be faked by, the
    picture's own edges."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size)
    amplitude[0, 0] = 0.0
    fields = []
    for _ in range(3):
        phase = rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape)
        field = np.fft.irfft2(phase * amplitude, s=(size, size))
        fields.append(field / field.std())
    lum, a, b = fields
    rgb = np.stack([lum + 0.35 * a, lum + 0.35 * b, lum - 0.175 * (a + b)], axis=-1)
    return Image.fromarray(np.clip(np.rint(128 + 40 * rgb), 0, 255).astype(np.uint8), "RGB")


SEAM_BIN = (
    8  # px: a bin holds every phase of the VAE's 8-px latent grid (and the ×4 upscaler's 4-px one)
)
SEAM_MARGIN = 8  # px either side of an overlap: a step at a tile's very edge counts
Zone = tuple[int, int]


def overlap_zones(length: int, tile: int, overlap: int) -> list[Zone]:
    """Where neighbouring tiles overlap along one axis: (the later tile's start, the earlier
    one's end); a single edge (start == end) without overlap."""
    from ldstudio.core.upscale import tile_grid

    spans = sorted({(t.x0, t.x1) for t in tile_grid(length, 1, tile, overlap)})
    return [(later[0], earlier[1]) for earlier, later in itertools.pairwise(spans)]


def seam_profile(image: np.ndarray, zones: list[Zone], axis: int) -> list[float]:
    """Gradient energy across the overlaps over that elsewhere, in SEAM_BIN-px bins from
    SEAM_MARGIN px before each overlap to SEAM_MARGIN px after it, averaged over the overlaps
    (the energy of the differences along `axis`: axis 1 for the vertical borders). 1.0 in
    every bin: no grid; a step reads far above 1, a soft (blurred) band below it."""
    pixels = image.astype(np.float32)
    energy = (np.diff(pixels, axis=axis) ** 2).sum(axis=2)  # [i]: between pixels i and i+1
    profile = energy.mean(axis=1 - axis)
    near = np.zeros(profile.shape[0], bool)
    starts = []
    for start, end in zones:
        first, last = start - 1 - SEAM_MARGIN, end - 1 + SEAM_MARGIN  # differences touching it
        near[max(first - 2 * SEAM_MARGIN, 0) : last + 2 * SEAM_MARGIN] = True
        starts.append((first, last))
    elsewhere = float(profile[~near].mean()) if (~near).any() else float(profile.mean())
    width = min(last - first for first, last in starts)
    bins = []
    for offset in range(0, width, SEAM_BIN):
        values = [profile[first + offset : first + offset + SEAM_BIN].mean() for first, _ in starts]
        bins.append(float(np.mean(values)) / max(elsewhere, 1e-9))
    return bins


def seam_ratio_against(
    image: np.ndarray, plain: np.ndarray, zones_x: list[Zone], zones_y: list[Zone]
) -> float:
    """seam_ratio with each band first divided by the unrefined image's same band: the
    picture's (and the upscaler's) own variation from band to band taken out."""
    worst = 1.0
    for axis, zones in ((1, zones_x), (0, zones_y)):
        if zones:
            made, base = seam_profile(image, zones, axis), seam_profile(plain, zones, axis)
            ratios = [m / max(b, 1e-9) for m, b in zip(made, base, strict=True)]
            worst = max(worst, *(max(r, 1 / max(r, 1e-9)) for r in ratios))
    return worst


def _zones(borders: list[int] | list[Zone]) -> list[Zone]:
    return [(b, b) if isinstance(b, int) else b for b in borders]


def seam_ratio(image: np.ndarray, zones_x: list[Any], zones_y: list[Any]) -> float:
    """The worst bin of seam_profile over both axes, as max(r, 1/r): 1.0 is no grid, and the
    goal (gradient energy along the borders within 10 % of elsewhere) is ≤ 1.1 either way.
    Zones are (start, end) overlaps or single border positions."""
    worst = 1.0
    for axis, zones in ((1, _zones(zones_x)), (0, _zones(zones_y))):
        if zones:
            worst = max(
                worst, *(max(r, 1 / max(r, 1e-9)) for r in seam_profile(image, zones, axis))
            )
    return worst


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One upscale job in this (fresh) process on the texture: its peak RSS, time and seam
    ratio; then, for control, the same picture upscaled without refine, measured on the
    same grid (the picture's own share of any reading)."""
    import hashlib
    import io

    import torch

    from ldstudio.core.backend import ImageResult
    from ldstudio.core.jobs import CancelToken
    from ldstudio.core.params import GenerationParams
    from ldstudio.core.request import Request
    from ldstudio.core.upscale import UpscaleSettings, tile_grid
    from ldstudio.engine.backend import DiffusersBackend

    torch.set_num_threads(max(1, torch.get_num_threads()))
    source = texture(args.refine_size, args.picture_seed)
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
        prompt="a detailed photograph of lichen on a stone wall",
        model=args.model,
        steps=args.steps,
        seed=3,
        preview_method="none",
    )

    def upscale(chosen: UpscaleSettings) -> np.ndarray:
        request = Request.upscaling(params, chosen, digest).resolved()
        events = engine.execute(request, CancelToken())
        [result] = [e for e in events if isinstance(e, ImageResult)]
        return np.asarray(result.image.convert("RGB"))

    started = time.perf_counter()
    image = upscale(settings)
    seconds = time.perf_counter() - started
    peak = peak_rss_mib()
    plain = upscale(settings.replace(refine_strength=0.0))  # the same upscaler, no refine
    height, width = image.shape[:2]
    xs = overlap_zones(width, args.tile, args.overlap)
    ys = overlap_zones(height, args.tile, args.overlap)
    return {
        "source": f"{args.refine_size}x{args.refine_size}",
        "output": f"{width}x{height}",
        "picture": f"1/f colour texture, seed {args.picture_seed}",
        "tile": args.tile,
        "overlap": args.overlap,
        "tiles": len(tile_grid(width, height, args.tile, args.overlap)),
        "steps": args.steps,
        "seconds": round(seconds, 1),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
        "seam_ratio": round(seam_ratio(image, xs, ys), 4),
        "plain_seam_ratio": round(seam_ratio(plain, xs, ys), 4),
        "seam_ratio_vs_plain": round(seam_ratio_against(image, plain, xs, ys), 4),
        "seam_bin_px": SEAM_BIN,
        "seam_profile": {
            "columns": [round(r, 3) for r in seam_profile(image, xs, 1)] if xs else [],
            "rows": [round(r, 3) for r in seam_profile(image, ys, 0)] if ys else [],
        },
        "device": engine.choice.label,
    }


def run_child(args: argparse.Namespace, overlap: int, size: int) -> dict[str, Any]:
    argv = [
        sys.executable, __file__, "--child", "--refine-size", str(size), "--scale",
        str(args.scale), "--tile", str(args.tile), "--overlap", str(overlap), "--steps",
        str(args.steps), "--model", args.model, "--device", args.device, "--source-steps",
        str(args.source_steps), "--picture-seed", str(args.picture_seed),
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
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    parser.add_argument("--steps", type=int, default=4, help="refine schedule steps")
    parser.add_argument("--model", default="", help="diffusion model of the refine (bundled)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--source-steps", type=int, default=20, help="steps of the bundled model's source picture"
    )
    parser.add_argument(
        "--picture-seed", type=int, default=0, help="seed of the refine's texture picture"
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
            f"{refine['seam_ratio']:.3f} (goal ≤ {SEAM_GOAL}; band by band against the "
            f"unrefined image {refine['seam_ratio_vs_plain']:.3f}); the picture upscaled "
            f"without refine reads {refine['plain_seam_ratio']:.3f}"
        )
        # The same measure where seams are expected: the same job without overlap.
        seams = run_child(args, 0, args.refine_size)
        print(
            f"  for contrast, no overlap ({seams['source']} → {seams['output']}): seam ratio "
            f"{seams['seam_ratio']:.3f} (without refine {seams['plain_seam_ratio']:.3f})"
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
