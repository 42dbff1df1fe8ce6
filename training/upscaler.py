"""Train ldstudio's bundled x2/x4 upscalers: tiny Compact (SRVGGNetCompact) networks, on CPU.

The training pictures are the bundled ldstudio-shapes model's own generations (grammar
captions, fixed seeds, 64x64 and 128x128), cached as PNGs under --data. Low-resolution inputs
are made on the fly with a Real-ESRGAN-style first-order degradation: random Gaussian blur,
a bicubic/bilinear/area downscale, Gaussian noise and JPEG. Before that, half the crops are
recoloured and 30 % get texture, so the network neither snaps colours to the ten-colour
palette nor flattens detail it has never seen (both wreck photographs). A fixed held-out
split (other seeds, other captions) is generated next to it for training/evaluate_upscaler.py.
The file is the Compact state dict in the Real-ESRGAN key layout, so the same loader
(ldstudio's or spandrel's) runs it as any Compact model.

    python training/upscaler.py --scale 2 --out resources/upscalers --seed 0
    python training/upscaler.py --scale 4 --out resources/upscalers --seed 0
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ldstudio.engine.upscalers.compact import Compact

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

Log = Callable[[str], None]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "resources" / "models" / "ldstudio-shapes"
DEFAULT_DATA = Path("/tmp/ldstudio-upscaler-data")
DEFAULT_OUT = ROOT / "resources" / "upscalers"


@dataclass(frozen=True)
class Part:
    """One block of generated pictures: n captions from prompt_seed, image seeds from seed0."""

    split: str
    size: int
    n: int
    prompt_seed: int
    seed0: int

    @property
    def folder(self) -> str:
        return f"{self.split}/{self.size:03d}"


# 128x128 is twice the model's native size: it draws several shapes per picture there, with
# softer edges, which adds edge variety; 64x64 pictures are what it draws for users.
PARTS: tuple[Part, ...] = (
    Part("train", 64, 320, 101, 1_000_000),
    Part("train", 128, 320, 102, 2_000_000),
    Part("heldout", 64, 48, 201, 3_000_000),
    Part("heldout", 128, 48, 202, 4_000_000),
)


# A x4 step sees a quarter of a x2 step's LR pixels (same HR crop) and costs about that much.
TRAIN_STEPS = {2: 10_000, 4: 20_000}


def file_name(scale: int) -> str:
    return f"ldstudio-compact-x{scale}.safetensors"


# --- data ------------------------------------------------------------------------------------


def part_prompts(part: Part, exclude: set[str]) -> list[str]:
    """part.n grammar captions from part.prompt_seed, skipping any caption in exclude."""
    from training.evaluate import sample_prompts

    prompts: list[str] = []
    drawn = part.n
    while len(prompts) < part.n:
        # Re-drawing a longer list from the same seed keeps the first captions unchanged.
        drawn *= 2
        candidates = sample_prompts(drawn, part.prompt_seed)[0]
        prompts = [p for p in candidates if p not in exclude][: part.n]
    return prompts


@torch.no_grad()
def generate(
    pipe: StableDiffusionPipeline, prompts: list[str], seeds: list[int], size: int, batch: int = 16
) -> np.ndarray:
    """(N, size, size, 3) uint8 pictures with ldstudio's default sampler settings."""
    from training.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS

    out = []
    for i in range(0, len(prompts), batch):
        images = pipe(
            prompts[i : i + batch],
            height=size,
            width=size,
            num_inference_steps=DEFAULT_STEPS,
            guidance_scale=DEFAULT_GUIDANCE,
            generator=[torch.Generator().manual_seed(s) for s in seeds[i : i + batch]],
            output_type="np",
        ).images
        out.append((np.clip(images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


def ensure_data(data: Path, model: Path, log: Log = print) -> dict[str, Any]:
    """Generate (or reuse) every part under data; returns the manifest."""
    manifest_path = data / "manifest.json"
    spec = {"model": str(model.resolve()), "parts": [asdict(p) for p in PARTS]}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in spec} == spec and all(
            len(list((data / p.folder).glob("*.png"))) == p.n for p in PARTS
        ):
            return manifest
    from training.evaluate import load_pipeline

    pipe = load_pipeline(model)
    t0 = time.time()
    captions: dict[str, list[str]] = {}
    train_captions: set[str] = set()
    for part in PARTS:
        # Held-out captions never occur in the training split (seeds differ by construction).
        exclude = train_captions if part.split == "heldout" else set()
        prompts = part_prompts(part, exclude)
        if part.split == "train":
            train_captions.update(prompts)
        seeds = [part.seed0 + i for i in range(part.n)]
        images = generate(pipe, prompts, seeds, part.size)
        folder = data / part.folder
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{i:05d}.png")
        captions[part.folder] = prompts
        log(f"generated {part.n} {part.size}px {part.split} pictures ({time.time() - t0:.0f}s)")
    manifest = {**spec, "captions": captions, "generation_seconds": round(time.time() - t0, 1)}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def load_split(data: Path, split: str) -> list[np.ndarray]:
    images = []
    for part in PARTS:
        if part.split == split:
            for i in range(part.n):
                path = data / part.folder / f"{i:05d}.png"
                images.append(np.asarray(Image.open(path).convert("RGB")))
    return images


# --- degradations ----------------------------------------------------------------------------

RESIZE_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,  # a box filter at an integer factor is an area average
}


@dataclass(frozen=True)
class Degradation:
    """One first-order degradation, HR -> LR; sigmas in HR pixels, noise in 0..255 units."""

    blur: tuple[float, float, float] | None = None  # (sigma_x, sigma_y, angle in radians)
    resize: str = "bicubic"
    noise: float = 0.0
    gray_noise: bool = False
    jpeg: int | None = None  # Pillow quality


def sample_degradation(rng: np.random.Generator, scale: int) -> Degradation:
    """A random degradation from Real-ESRGAN-like ranges (narrower, for a tiny CPU model)."""
    if rng.random() < 0.2:
        return Degradation()  # clean bicubic, so undegraded inputs are not over-sharpened
    blur = None
    if rng.random() < 0.8:
        high = 0.75 * scale  # a x4 input was blurred over a wider HR footprint than a x2 one
        sx = float(rng.uniform(0.2, high))
        sy = sx if rng.random() < 0.5 else float(rng.uniform(0.2, high))
        blur = (sx, sy, float(rng.uniform(0, math.pi)))
    return Degradation(
        blur=blur,
        resize=str(rng.choice(list(RESIZE_FILTERS))),
        noise=float(rng.uniform(1.0, 12.0)) if rng.random() < 0.8 else 0.0,
        gray_noise=bool(rng.random() < 0.4),
        jpeg=int(rng.integers(40, 96)) if rng.random() < 0.8 else None,
    )


def eval_degradation(scale: int) -> Degradation:
    """The fixed degradation the evaluation and the tests use: mid-range on every axis."""
    sigma = 0.4 * scale
    return Degradation(blur=(sigma, sigma, 0.0), resize="bicubic", noise=5.0, jpeg=75)


def gaussian_kernel(sx: float, sy: float, angle: float) -> np.ndarray:
    """A normalised (an)isotropic Gaussian, rotated by angle, odd size up to 21."""
    half = min(10, math.ceil(3 * max(sx, sy)))
    ax = np.arange(-half, half + 1, dtype=np.float64)
    x, y = np.meshgrid(ax, ax)
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    k = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return k / k.sum()


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """image (H, W, 3) float convolved with kernel, reflecting at the edges."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    half = kernel.shape[0] // 2
    pad = min(half, image.shape[0] - 1, image.shape[1] - 1)
    k = torch.from_numpy(kernel).float()[None, None].expand(3, 1, *kernel.shape)
    x = F.pad(x, (pad,) * 4, mode="reflect")
    if pad < half:  # a kernel wider than the picture: replicate the rest
        x = F.pad(x, (half - pad,) * 4, mode="replicate")
    return F.conv2d(x, k, groups=3)[0].permute(1, 2, 0).numpy()


def degrade(hr: np.ndarray, scale: int, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 HR -> (H/scale, W/scale, 3) uint8 LR; rng draws the noise."""
    h, w = hr.shape[:2]
    x = hr.astype(np.float32)
    if d.blur is not None:
        x = blur(x, gaussian_kernel(*d.blur))
    img = Image.fromarray(np.clip(x, 0, 255).round().astype(np.uint8))
    img = img.resize((w // scale, h // scale), RESIZE_FILTERS[d.resize])
    if d.noise > 0:
        y = np.asarray(img, dtype=np.float32)
        shape = (*y.shape[:2], 1) if d.gray_noise else y.shape
        y = y + rng.normal(0.0, d.noise, size=shape).astype(np.float32)
        img = Image.fromarray(np.clip(y, 0, 255).round().astype(np.uint8))
    if d.jpeg is not None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=d.jpeg)
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(img)


def recolour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """image with its colours remapped: channel order, per-channel gamma and range, sometimes
    inverted, sometimes with a smooth colour ramp added.

    The pictures hold ten flat palette colours; without this the network learns to snap
    every pixel to the nearest one, which wrecks anything else (a photo comes out
    posterised). The remap keeps the edges and makes the colours carry no information.
    """
    x = image.astype(np.float32)[..., rng.permutation(3)] / 255.0
    gamma = np.exp(rng.uniform(-0.5, 0.5, size=3)).astype(np.float32)
    low = rng.uniform(0.0, 0.4, size=3).astype(np.float32)
    high = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    x = low + (high - low) * x**gamma
    if rng.random() < 0.2:
        x = 1.0 - x
    if rng.random() < 0.5:
        h, w = x.shape[:2]
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (math.cos(angle) * xx / w + math.sin(angle) * yy / h)[..., None]
        x = x + ramp * rng.uniform(-0.25, 0.25, size=3).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)


def add_texture(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """image with band-limited noise added: grain, mottling and cloud-like shading.

    The pictures are flat shapes, and noise is the only fine detail a degraded input shows,
    so without this the network flattens any texture it meets; texture in the target
    teaches it to keep detail that survived the degradation.
    """
    h, w = image.shape[:2]
    x = image.astype(np.float32) / 255.0
    for _ in range(int(rng.integers(1, 4))):
        cell = int(rng.choice([1, 2, 4, 8]))  # feature size in HR pixels
        small = rng.normal(size=(max(1, h // cell), max(1, w // cell), 3)).astype(np.float32)
        if rng.random() < 0.6:
            small[...] = small[..., :1]  # luminance texture
        amp = float(rng.uniform(0.01, 0.08))
        layer = np.stack(
            [
                np.asarray(Image.fromarray(small[..., c]).resize((w, h), Image.Resampling.BICUBIC))
                for c in range(3)
            ],
            axis=-1,
        )
        x = x + amp * layer
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)


def degrade_fixed(hr: np.ndarray, scale: int, index: int) -> np.ndarray:
    """The evaluation degradation of held-out picture `index` (its noise is seeded by it)."""
    return degrade(hr, scale, eval_degradation(scale), np.random.default_rng(10_000 + index))


def clean_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    h, w = hr.shape[:2]
    return np.asarray(
        Image.fromarray(hr).resize((w // scale, h // scale), Image.Resampling.BICUBIC)
    )


# --- model, inference and scoring --------------------------------------------------------------


def to_tensor(images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0)


@torch.no_grad()
def upscale(model: Compact, lr: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (h*scale, w*scale, 3) uint8."""
    y = model(to_tensor([lr]))[0].clamp(0, 1)
    return (y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def resize(lr: np.ndarray, scale: int, method: Image.Resampling) -> np.ndarray:
    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), method))


def psnr(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """PSNR in dB of two uint8 RGB pictures over [0, 255], `border` pixels cropped each side."""
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * math.log10(255.0**2 / max(mse, 1e-10)))


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- training --------------------------------------------------------------------------------


def batch_pairs(
    images: list[np.ndarray],
    scale: int,
    crop: int,
    batch: int,
    rng: np.random.Generator,
    recolour_p: float = 0.5,
    texture_p: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of (LR, HR) crops: random picture, crop, flip/rotation, recolouring, texture
    and degradation."""
    lrs, hrs = [], []
    for _ in range(batch):
        image = images[int(rng.integers(len(images)))]
        h, w = image.shape[:2]
        c = min(crop, h, w) // scale * scale
        oy, ox = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
        hr = image[oy : oy + c, ox : ox + c]
        hr = np.ascontiguousarray(np.rot90(hr, int(rng.integers(4))))
        if rng.random() < 0.5:
            hr = np.ascontiguousarray(hr[:, ::-1])
        # Drawn only when enabled, so with both off (--recolour 0 --texture 0) the random
        # stream is that of the first, palette-bound release of the files.
        if recolour_p > 0 and rng.random() < recolour_p:
            hr = recolour(hr, rng)
        if texture_p > 0 and rng.random() < texture_p:
            hr = add_texture(hr, rng)
        lrs.append(degrade(hr, scale, sample_degradation(rng, scale), rng))
        hrs.append(hr)
    return to_tensor(lrs), to_tensor(hrs)


def train(
    images: list[np.ndarray], args: argparse.Namespace, log: Log = print
) -> tuple[Compact, dict[str, float | int]]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = Compact(features=args.features, convs=args.convs, scale=args.scale).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    warmup = 100

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    t0 = time.time()
    running = 0.0
    for step in range(args.steps):
        lr_img, hr_img = batch_pairs(
            images, args.scale, args.crop, args.batch, rng, args.recolour, args.texture
        )
        loss = F.l1_loss(model(lr_img), hr_img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % 200 == 0 or step + 1 == args.steps:
            done = step + 1
            spent = time.time() - t0
            log(
                f"x{args.scale} step {done}/{args.steps} l1 {running / 200:.5f} "
                f"lr {sched.get_last_lr()[0]:.2e} ({spent / done:.3f}s/step, {spent:.0f}s)"
            )
            running = 0.0
    stats = {"steps": args.steps, "train_seconds": round(time.time() - t0, 1)}
    return model.eval(), stats


def save(model: Compact, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
    path.chmod(0o644)  # safetensors creates the file owner-only; it ships to every user


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=(2, 4), required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cached pictures")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="diffusion model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--convs", type=int, default=8)
    parser.add_argument("--steps", type=int, help=f"default {TRAIN_STEPS} by scale")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=64, help="HR crop side, pixels")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--recolour", type=float, default=0.5, help="share of crops recoloured")
    parser.add_argument("--texture", type=float, default=0.3, help="share of crops given texture")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-only", action="store_true", help="generate the data and stop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.steps is None:
        args.steps = TRAIN_STEPS[args.scale]

    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    manifest = ensure_data(args.data, args.model, log)
    if args.data_only:
        return
    images = load_split(args.data, "train")
    log(f"{len(images)} training pictures from {args.data}")
    model, stats = train(images, args, log)
    parts = ", ".join(f"{p.n} at {p.size}px" for p in PARTS if p.split == "train")
    metadata = {
        "ldstudio.architecture": "Compact",
        "ldstudio.scale": str(args.scale),
        "ldstudio.features": str(args.features),
        "ldstudio.convs": str(args.convs),
        "ldstudio.parameters": str(param_count(model)),
        "ldstudio.trained_on": f"ldstudio-shapes generations ({parts}), Real-ESRGAN-style "
        "first-order degradations (blur, bicubic/bilinear/area downscale, noise, JPEG)",
        "ldstudio.training": json.dumps(
            {
                **stats,
                "seed": args.seed,
                "batch": args.batch,
                "crop": args.crop,
                "lr": args.lr,
                "recolour": args.recolour,
                "texture": args.texture,
                "threads": args.threads,
                "torch": torch.__version__,
                "data_generation_seconds": manifest.get("generation_seconds"),
            }
        ),
        "license": "MIT",
    }
    path = args.out / file_name(args.scale)
    save(model, path, metadata)
    log(f"saved {path} ({path.stat().st_size} bytes, {param_count(model)} parameters)")


if __name__ == "__main__":
    main()
