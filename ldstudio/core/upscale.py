"""UpscaleSettings: enlarge any image ×2/×4, then (optionally) refine it tile by tile; pure data.

Two stages, as Ultimate SD Upscale and Krita's tiled upscale run them:

1. **upscale**: an upscaler model (ESRGAN family; the bundled `ldstudio-compact-x2/x4` unless
   another is named) or a Pillow resampler ("lanczos", "bicubic") enlarges the pixels. Model
   inference runs in tiles too, so its memory is bounded by the tile.
2. **refine** (when `refine_strength` > 0): img2img at that strength on `tile`-sized tiles that
   overlap by `overlap` pixels, blended with feathered weights (no visible grid); each tile's
   noise is canvas-position noise, so overlapping tiles start from the same noise. Memory is
   bounded by the tile, not the output. Strength 0 never loads a diffusion model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ldstudio.core.params import SIZE_MULTIPLE

UPSCALE_SCALES = (2, 4)
# Pillow resamplers, available without any model file.
RESAMPLERS: tuple[str, ...] = ("lanczos", "bicubic")
BUNDLED_UPSCALERS = {2: "ldstudio-compact-x2", 4: "ldstudio-compact-x4"}
REFINE_STRENGTH_RANGE = (0.0, 1.0)
TILE_RANGE = (128, 2048)
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64
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
