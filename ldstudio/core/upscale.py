"""UpscaleSettings: enlarge any image ×2/×4, then (optionally) refine it tile by tile; pure data.

Two stages, as Ultimate SD Upscale and Krita's tiled upscale run them:

1. **upscale**: an upscaler model (ESRGAN family; the bundled `ldstudio-compact-x2/x4` unless
   another is named) or a Pillow resampler ("lanczos", "bicubic") enlarges the pixels. Model
   inference runs in tiles too, so its memory is bounded by the tile.
2. **refine** (when `refine_strength` > 0): img2img at that strength on `tile`-sized tiles that
   overlap by `overlap` pixels, blended by TileBlender (no visible grid: each tile's detail
   over the source's tone, feathered, the contrast a cross-fade loses restored); each tile's
   noise is canvas-position noise, so overlapping tiles start from the same noise. Memory is
   bounded by the tile, not the output. Strength 0 never loads a diffusion model.

TileBlender is pure numpy and Pillow, so a synthetic refine can test the blend.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from ldstudio.core.params import SIZE_MULTIPLE

UPSCALE_SCALES = (2, 4)
# Pillow resamplers, available without any model file.
RESAMPLERS: tuple[str, ...] = ("lanczos", "bicubic")
BUNDLED_UPSCALERS = {2: "ldstudio-compact-x2", 4: "ldstudio-compact-x4"}
REFINE_STRENGTH_RANGE = (0.0, 1.0)
TILE_RANGE = (128, 2048)
DEFAULT_TILE = 512
# 96 px on a 512 px tile: the seam bench (docs/benchmarks.md) reads 1.100 at 64 px, 1.082 at
# 96 and 1.059 at 128 (goal ≤ 1.1), for 81 / 100 / 121 tiles at 1024 → 4096.
DEFAULT_OVERLAP = 96
DEFAULT_REFINE_STRENGTH = 0.3
# The output's longest side: a 2048 px image at ×4. The refine's memory is bounded by the
# tile; the finished image itself (and the upscaler's output) is held whole.
MAX_OUTPUT_SIDE = 8192


@dataclass(frozen=True)
class UpscaleSettings:
    """How to enlarge the request's source image.

    `upscaler` "" is the bundled model for the scale (BUNDLED_UPSCALERS); a resampler name;
    else an upscaler model's path here (a name in the portable form, see core/request.py).
    """

    scale: int = 2
    upscaler: str = ""
    refine_strength: float = DEFAULT_REFINE_STRENGTH
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP

    def validate(self) -> UpscaleSettings:
        """Raise ValueError naming the field, the bad value and what is allowed; return self."""
        if self.scale not in UPSCALE_SCALES or isinstance(self.scale, bool):
            raise ValueError(
                f"upscale scale: {self.scale!r} is not allowed; allowed: "
                f"{', '.join(map(str, UPSCALE_SCALES))}"
            )
        if not isinstance(self.upscaler, str):
            raise ValueError(f"upscaler: {self.upscaler!r} is not a name")
        low, high = REFINE_STRENGTH_RANGE
        strength = self.refine_strength
        if (
            not isinstance(strength, int | float)
            or isinstance(strength, bool)
            or not math.isfinite(strength)
            or not low <= strength <= high
        ):
            raise ValueError(
                f"refine strength: {strength!r} is not allowed; allowed: {low:g} (no refine) "
                f"to {high:g}"
            )
        t_low, t_high = TILE_RANGE
        if (
            not isinstance(self.tile, int)
            or isinstance(self.tile, bool)
            or not t_low <= self.tile <= t_high
            or self.tile % SIZE_MULTIPLE
        ):
            raise ValueError(
                f"tile: {self.tile!r} is not allowed; allowed: multiples of {SIZE_MULTIPLE} "
                f"from {t_low} to {t_high} pixels"
            )
        most = self.max_overlap
        if (
            not isinstance(self.overlap, int)
            or isinstance(self.overlap, bool)
            or not 0 <= self.overlap <= most
            or self.overlap % SIZE_MULTIPLE
        ):
            raise ValueError(
                f"overlap: {self.overlap!r} is not allowed; allowed: multiples of "
                f"{SIZE_MULTIPLE} from 0 to {most} pixels (a quarter of the {self.tile} px tile)"
            )
        return self

    @staticmethod
    def default_overlap(tile: int) -> int:
        """The overlap used when none is given: DEFAULT_OVERLAP, or less for a small tile."""
        return min(DEFAULT_OVERLAP, UpscaleSettings(tile=tile).max_overlap)

    @property
    def max_overlap(self) -> int:
        """The widest overlap a tile allows: a quarter of it (multiple of 8), so every tile
        keeps a core that is its own."""
        tile = self.tile if isinstance(self.tile, int) else 0
        return tile // 4 // SIZE_MULTIPLE * SIZE_MULTIPLE

    @property
    def refines(self) -> bool:
        return self.refine_strength > 0

    @property
    def resampler(self) -> bool:
        """Whether the upscaler is a Pillow resampler (no model file)."""
        return self.upscaler in RESAMPLERS

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width * self.scale, height * self.scale

    def size_problem(self, width: int, height: int) -> str | None:
        """Why a `width`×`height` source cannot be upscaled with these settings, or None."""
        out_w, out_h = self.output_size(width, height)
        if max(out_w, out_h) > MAX_OUTPUT_SIDE:
            return (
                f"upscale ×{self.scale}: {width}×{height} becomes {out_w}×{out_h}; allowed: at "
                f"most {MAX_OUTPUT_SIDE} pixels a side (a source of at most "
                f"{MAX_OUTPUT_SIDE // self.scale} px a side at ×{self.scale})"
            )
        return None

    def replace(self, **changes: Any) -> UpscaleSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> UpscaleSettings:
        """Build and validate; unknown keys (from newer versions) are ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"upscale: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validate()


def upscaler_label(settings: UpscaleSettings) -> str:
    """The upscaler as people name it: the resampler, the bundled model's name or the file's
    stem (a path in the local form)."""
    if settings.resampler:
        return settings.upscaler
    if not settings.upscaler:
        return BUNDLED_UPSCALERS[settings.scale]
    return model_label(settings.upscaler)


def model_label(text: str) -> str:
    """An upscaler model as people name it: a path's file stem, a name as it is."""
    name = text.replace("\\", "/").rsplit("/", 1)[-1]
    return name[: -len(".safetensors")] if name.lower().endswith(".safetensors") else name


@dataclass(frozen=True)
class Tile:
    """One refine tile: its box in the output (x0, y0, x1, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def tile_grid(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles of at most `tile` px covering width×height, neighbours overlapping by at least
    `overlap` px; the last tile in a row/column is moved back inside the image (so every tile
    but a small image's one is full-sized), with its boxes on multiples of 8."""
    xs = _starts(width, tile, overlap)
    ys = _starts(height, tile, overlap)
    return [Tile(x, y, min(x + tile, width), min(y + tile, height)) for y in ys for x in xs]


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    span = length - tile  # the last tile's start
    starts = [round(span * i / (count - 1)) // SIZE_MULTIPLE * SIZE_MULTIPLE for i in range(count)]
    starts[-1] = span
    return starts


def feather(size: int, start_ramp: int, end_ramp: int) -> list[float]:
    """1-D blend weights for a tile side: towards each neighbour (none at the image border),
    near zero on the outer quarter of the overlap — where a tile's own decode is least like
    its neighbours' (the VAE sees no context past the tile's edge) — then a cosine ramp over
    the middle half, so two neighbours' ramps add up to one; 1 in between. Never exactly 0,
    so every pixel has weight."""
    weights = [1.0] * size
    for ramp, from_end in ((start_ramp, False), (end_ramp, True)):
        if ramp <= 0:
            continue
        margin = ramp // 4
        for i in range(min(ramp, size)):
            t = (i + 0.5 - margin) / max(ramp - 2 * margin, 1)
            value = 0.5 - 0.5 * math.cos(math.pi * min(max(t, 0.0), 1.0))
            at = size - 1 - i if from_end else i
            weights[at] = min(weights[at], max(value, 1e-3))
    return weights


def low_pass_radius(overlap: int) -> float:
    """The Gaussian σ (px) below which a refined tile takes the source's frequencies: a
    quarter of the overlap, so the band is smooth across the blend (8 px at the least)."""
    return max(8.0, overlap / 4)


# The window (box half-width, px, applied twice) over which the blend's gradient energy is
# compared with its tiles' own: small against the ramp (a quarter of it at the 64 px default
# overlap's 32 px ramp), large enough to average texture.
ENERGY_WINDOW = 2
# A cross-fade of n unrelated details keeps about 1/n of their energy; at most four meet.
MAX_DETAIL_GAIN = 2.0
# Gradient energy (level² over the three channels) below which there is no detail to
# restore: a flat area's quantisation noise is not boosted.
ENERGY_FLOOR = 1.0
_STRIP = 256  # rows finished at a time: the finishing pass's temporaries stay strip-sized


class TileBlender:
    """The refine's blend of overlapping tiles into the output image.

    Each tile keeps the upscaled source's low frequencies (tone, shading) and gives only its
    detail above them (a "colour fix" as StableSR does): tiles refined apart drift in tone,
    and a drift shows as a band across the overlap however it is blended. A tile's low-pass is
    taken with the source around it as context, so its detail has no edge artefact of the
    blur. The details are cross-faded with feathered weights; a cross-fade of details that
    differ loses contrast (two unrelated ones keep half their energy midway), which shows as a
    soft band along every border, so the blend's detail is scaled until its local gradient
    energy is its tiles' own, weighted alike (variance-preserving blending, as by-example
    texture synthesis does; measured on the gradient, since the fine contrast is what a
    cross-fade loses). The gain is never below 1 and is 1 away from the overlaps.

    Memory: the source and its low-pass (3 bytes a pixel each) and float sums of weighted
    detail, weights and weighted gradient energy (20 bytes a pixel); the rest is tile- or
    strip-sized.
    """

    def __init__(self, source: Image.Image, overlap: int) -> None:
        self.source = source.convert("RGB")
        self.width, self.height = self.source.size
        self.overlap = overlap
        self.radius = low_pass_radius(overlap)
        blur = ImageFilter.GaussianBlur(self.radius)
        self.low_source = np.asarray(self.source.filter(blur))
        self.detail = np.zeros((self.height, self.width, 3), np.float32)
        self.weights = np.zeros((self.height, self.width), np.float32)
        self.energy = np.zeros((self.height, self.width), np.float32)

    def weights_for(self, tile: Tile) -> np.ndarray:
        """The tile's 2-D feather: ramps towards its neighbours, none at the image's edge."""
        ramp = self.overlap
        wx = feather(tile.width, ramp if tile.x0 > 0 else 0, ramp if tile.x1 < self.width else 0)
        wy = feather(tile.height, ramp if tile.y0 > 0 else 0, ramp if tile.y1 < self.height else 0)
        return np.outer(np.asarray(wy, np.float32), np.asarray(wx, np.float32))

    def tile_detail(self, tile: Tile, made: Image.Image) -> np.ndarray:
        """The refined tile above its own low-pass, that low-pass taken with the source
        around the tile (3σ of it), so the blur sees past the tile's edge: blurred alone, the
        edge's pixels repeated would leave a false ramp in the detail along every border."""
        pad = math.ceil(3 * self.radius)
        x0, y0 = max(tile.x0 - pad, 0), max(tile.y0 - pad, 0)
        x1, y1 = min(tile.x1 + pad, self.width), min(tile.y1 + pad, self.height)
        box = (tile.x0 - x0, tile.y0 - y0, tile.x1 - x0, tile.y1 - y0)
        context = np.asarray(self.source.crop((x0, y0, x1, y1)), np.float32)
        # The source around the tile, shifted by the tile's drift in tone, so a tile that
        # only drifted has no step at its edge for the blur to spread into its detail.
        own = np.asarray(made, np.float32)
        inside = np.s_[box[1] : box[3], box[0] : box[2]]
        drift = own.mean(axis=(0, 1)) - context[inside].mean(axis=(0, 1))
        context = np.clip(np.rint(context + drift), 0, 255).astype(np.uint8)
        context[inside] = np.asarray(made)
        low = Image.fromarray(context, "RGB").filter(ImageFilter.GaussianBlur(self.radius))
        return own - np.asarray(low.crop(box), np.float32)

    def add(self, tile: Tile, made: Image.Image) -> None:
        """Blend one refined tile (RGB, the tile's size) in."""
        if made.size != (tile.width, tile.height):
            raise ValueError(
                f"tile at {tile.x0},{tile.y0}: image is {made.width}×{made.height}; expected "
                f"{tile.width}×{tile.height}"
            )
        detail = self.tile_detail(tile, made.convert("RGB"))
        w = self.weights_for(tile)
        box = np.s_[tile.y0 : tile.y1, tile.x0 : tile.x1]
        self.detail[box] += detail * w[..., None]
        self.weights[box] += w
        self.energy[box] += _gradient_energy(detail) * w

    def result(self) -> Image.Image:
        """The blended image: the source's low-pass plus the tiles' detail, its energy
        restored where tiles cross-fade; the source itself where no tile reached."""
        out = np.empty((self.height, self.width, 3), np.uint8)
        for top, bottom in _strips(self.height):
            out[top:bottom] = self._finish(top, bottom)
        return Image.fromarray(out, "RGB")

    def _finish(self, top: int, bottom: int) -> np.ndarray:
        halo = 2 * ENERGY_WINDOW + 1  # the tent smoothing, and the next row of a difference
        lo, hi = max(top - halo, 0), min(bottom + halo, self.height)
        weights = self.weights[lo:hi]
        covered = weights > 0
        safe = np.where(covered, weights, 1.0)[..., None]
        mean = self.detail[lo:hi] / safe
        blended = _gradient_energy(mean)
        own = self.energy[lo:hi] / safe[..., 0]
        gain = np.sqrt(
            (_smooth(own) + ENERGY_FLOOR) / (_smooth(blended) + ENERGY_FLOOR), dtype=np.float32
        )
        gain = np.clip(gain, 1.0, MAX_DETAIL_GAIN)[..., None]
        made = self.low_source[lo:hi] + mean * gain
        if not covered.all():  # (tile_grid covers every pixel; a caller's tiles may not)
            source = np.asarray(self.source.crop((0, lo, self.width, hi)), np.float32)
            made = np.where(covered[..., None], made, source)
        return np.clip(np.rint(made[top - lo : bottom - lo]), 0, 255).astype(np.uint8)


def _gradient_energy(pixels: np.ndarray) -> np.ndarray:
    """Squared differences to the next pixel across and down, over the channels: the fine
    contrast a cross-fade loses (the last row and column repeat their neighbours')."""
    dx = np.diff(pixels, axis=1, append=pixels[:, -1:])
    dy = np.diff(pixels, axis=0, append=pixels[-1:])
    energy: np.ndarray = (dx * dx + dy * dy).sum(axis=2)
    return energy


def _strips(height: int) -> Iterator[tuple[int, int]]:
    for top in range(0, height, _STRIP):
        yield top, min(top + _STRIP, height)


def _box(values: np.ndarray, axis: int, half: int) -> np.ndarray:
    """A running mean over 2·half+1 samples along `axis`, the edges' samples repeated."""
    padded = np.pad(
        values, [(half, half) if a == axis else (0, 0) for a in range(values.ndim)], mode="edge"
    )
    sums = np.cumsum(padded, axis=axis, dtype=np.float64)
    zero = np.zeros_like(np.take(sums, [0], axis=axis))
    sums = np.concatenate([zero, sums], axis=axis)
    size = 2 * half + 1
    n = values.shape[axis]
    ahead = np.take(sums, np.arange(size, size + n), axis=axis)
    behind = np.take(sums, np.arange(0, n), axis=axis)
    return ((ahead - behind) / size).astype(np.float32)


def _smooth(values: np.ndarray) -> np.ndarray:
    """Local mean of a 2-D field: a box of 2·ENERGY_WINDOW+1, twice along each axis (a
    tent)."""
    for axis in (0, 1, 0, 1):
        values = _box(values, axis, ENERGY_WINDOW)
    return values
