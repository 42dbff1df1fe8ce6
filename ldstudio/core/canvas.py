"""CanvasDocument: the source image, the painted inpaint mask, the outpaint amounts; Qt-free.

The mask is a uint8 array the size of the source (255 = repaint, greys = partly). A brush
segment touches only its dirty rectangle: the distance from each pixel centre to the segment
becomes a coverage (1 inside `hardness` × radius, falling smoothly to 0 at the radius), combined
with `max` when painting and `min` when erasing, so a stroke never darkens where its segments
overlap. Undo keeps, per stroke, the pre-stroke pixels of the stroke's union dirty rectangle;
while the stroke runs they are saved tile by tile as segments first reach them, so a segment
never copies more than the tiles it is the first to touch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ldstudio.core.inpaint import OUTPAINT_SIDES, check_outpaint

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1: pixels x0 <= x < x1, y0 <= y < y1
Listener = Callable[[Rect | None], None]  # None: everything changed

MAX_SIDE = 8192
BRUSH_SIZE_RANGE = (1, 1024)
TILE = 64  # the unit in which a stroke saves the pixels it is about to change
HISTORY_BYTES = 512 * 1024 * 1024  # the oldest undo steps go past this


@dataclass
class _Step:
    """One undoable change: the mask's pixels in `rect` on the other side of the change."""

    rect: Rect
    pixels: np.ndarray


def brush_coverage(
    xs: np.ndarray,
    ys: np.ndarray,
    a: tuple[float, float],
    b: tuple[float, float],
    *,
    radius: float,
    hardness: float,
) -> np.ndarray:
    """Coverage in [0, 1] (float32, len(ys)×len(xs)) of a brush dragged from `a` to `b`.

    `xs`/`ys` are pixel-centre coordinates. Full inside `hardness`·radius, then a smoothstep
    down to 0 at the radius; the ramp is at least one pixel wide, so a hard brush is antialiased.
    """
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    px = (xs - ax)[None, :]
    py = (ys - ay)[:, None]
    length2 = dx * dx + dy * dy
    if length2 > 1e-12:
        t = np.clip((px * dx + py * dy) * (1.0 / length2), 0.0, 1.0)
        ex = px - t * dx
        ey = py - t * dy
        distance = np.sqrt(ex * ex + ey * ey)
    else:
        distance = np.sqrt(px * px + py * py)
    inner = radius * hardness
    width = max(radius - inner, 1.0)
    ramp = np.clip((radius - distance) * (1.0 / width), 0.0, 1.0)
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32, copy=False)


def _union(a: Rect | None, b: Rect) -> Rect:
    if a is None:
        return b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


class CanvasDocument:
    def __init__(self, image: Image.Image) -> None:
        width, height = image.size
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise ValueError(f"image: {width}×{height}; allowed: 1 to {MAX_SIDE} px on each side")
        has_alpha = image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        )
        self.source: Image.Image = image.convert("RGBA" if has_alpha else "RGB")
        self.width, self.height = width, height
        self.mask = np.zeros((height, width), np.uint8)
        self._brush_size = 64
        self._hardness = 0.5
        self.erasing = False
        self.revision = 0  # counts mask changes: a view skips recomposing when it has not moved
        self._outpaint: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._listeners: list[Listener] = []
        # The stroke in progress: its last point, the tiles saved so far, its dirty union.
        self._last: tuple[float, float] | None = None
        self._saved: dict[tuple[int, int], np.ndarray] = {}
        self._stroke_rect: Rect | None = None

    # -- brush ----------------------------------------------------------------------------

    @property
    def brush_size(self) -> int:
        return self._brush_size

    @brush_size.setter
    def brush_size(self, size: int) -> None:
        low, high = BRUSH_SIZE_RANGE
        if not low <= size <= high:
            raise ValueError(f"brush size: {size} px; allowed: {low} to {high}")
        self._brush_size = int(size)

    @property
    def hardness(self) -> float:
        return self._hardness

    @hardness.setter
    def hardness(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"hardness: {value}; allowed: 0 to 1")
        self._hardness = float(value)

    def begin_stroke(self, x: float, y: float) -> Rect:
        """Start a stroke with a dab at (x, y); returns the pixels it changed (maybe empty)."""
        if self._last is not None:
            self.end_stroke()
        self._last = (x, y)
        self._saved = {}
        self._stroke_rect = None
        return self._segment((x, y), (x, y))

    def stroke_to(self, x: float, y: float) -> Rect:
        """Drag the brush from the last point to (x, y); only the dirty rectangle is touched."""
        if self._last is None:
            return self.begin_stroke(x, y)
        start, self._last = self._last, (x, y)
        return self._segment(start, (x, y))

    def end_stroke(self) -> None:
        """Close the stroke as one undo step (nothing when it changed no pixel)."""
        rect, saved = self._stroke_rect, self._saved
        self._last, self._saved, self._stroke_rect = None, {}, None
        if rect is None:
            return
        x0, y0, x1, y1 = rect
        before = self.mask[y0:y1, x0:x1].copy()
        # Outside the saved tiles the stroke changed nothing: the current pixels are the old.
        for (tx, ty), tile in saved.items():
            sx0, sy0 = tx * TILE, ty * TILE
            ix0, iy0 = max(sx0, x0), max(sy0, y0)
            ix1, iy1 = min(sx0 + tile.shape[1], x1), min(sy0 + tile.shape[0], y1)
            if ix0 < ix1 and iy0 < iy1:
                before[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = tile[
                    iy0 - sy0 : iy1 - sy0, ix0 - sx0 : ix1 - sx0
                ]
        self._push(_Step(rect, before))

    def _segment(self, a: tuple[float, float], b: tuple[float, float]) -> Rect:
        radius = self._brush_size / 2
        x0 = max(0, math.floor(min(a[0], b[0]) - radius))
        y0 = max(0, math.floor(min(a[1], b[1]) - radius))
        x1 = min(self.width, math.ceil(max(a[0], b[0]) + radius) + 1)
        y1 = min(self.height, math.ceil(max(a[1], b[1]) + radius) + 1)
        if x0 >= x1 or y0 >= y1:
            return (0, 0, 0, 0)
        rect = (x0, y0, x1, y1)
        self._save_tiles(rect)
        xs = np.arange(x0, x1, dtype=np.float32) + 0.5
        ys = np.arange(y0, y1, dtype=np.float32) + 0.5
        coverage = brush_coverage(xs, ys, a, b, radius=radius, hardness=self._hardness)
        patch = self.mask[y0:y1, x0:x1]
        if self.erasing:
            np.minimum(patch, np.rint(255.0 - coverage * 255.0).astype(np.uint8), out=patch)
        else:
            np.maximum(patch, np.rint(coverage * 255.0).astype(np.uint8), out=patch)
        self._stroke_rect = _union(self._stroke_rect, rect)
        self.revision += 1
        self._notify(rect)
        return rect

    def _save_tiles(self, rect: Rect) -> None:
        x0, y0, x1, y1 = rect
        for ty in range(y0 // TILE, (y1 - 1) // TILE + 1):
            for tx in range(x0 // TILE, (x1 - 1) // TILE + 1):
                if (tx, ty) not in self._saved:
                    self._saved[(tx, ty)] = self.mask[
                        ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE
                    ].copy()

    # -- whole-mask edits -----------------------------------------------------------------

    def invert(self) -> None:
        self._replace(255 - self.mask)

    def clear(self) -> None:
        if self.has_mask():
            self._replace(np.zeros_like(self.mask))

    def load_mask(self, image: Image.Image) -> None:
        """Take a mask file's pixels (white or transparent = repaint) as the mask; undoable."""
        from ldstudio.core.masking import mask_from_image

        if image.size != (self.width, self.height):
            raise ValueError(
                f"mask: {image.width}×{image.height} px; allowed: the source's size, "
                f"{self.width}×{self.height} px"
            )
        mask = np.asarray(mask_from_image(image).convert("L"), dtype=np.uint8)
        self._replace(mask.copy())

    def _replace(self, mask: np.ndarray) -> None:
        if self._last is not None:
            self.end_stroke()
        self._push(_Step((0, 0, self.width, self.height), self.mask))
        self.mask = np.ascontiguousarray(mask, dtype=np.uint8)
        self.revision += 1
        self._notify(None)

    # -- history --------------------------------------------------------------------------

    def _push(self, step: _Step) -> None:
        self._undo.append(step)
        self._redo.clear()
        total = sum(s.pixels.nbytes for s in self._undo)
        while len(self._undo) > 1 and total > HISTORY_BYTES:
            total -= self._undo.pop(0).pixels.nbytes

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> Rect | None:
        """Take back the last stroke or edit; returns the rectangle it changed (None: none)."""
        if self._last is not None:
            self.end_stroke()
        if not self._undo:
            return None
        step = self._undo.pop()
        self._redo.append(self._swap(step))
        return step.rect

    def redo(self) -> Rect | None:
        if not self._redo:
            return None
        step = self._redo.pop()
        self._undo.append(self._swap(step))
        return step.rect

    def _swap(self, step: _Step) -> _Step:
        x0, y0, x1, y1 = step.rect
        self.revision += 1
        if step.rect == (0, 0, self.width, self.height):
            other = _Step(step.rect, self.mask)
            self.mask = step.pixels.copy()
            self._notify(None)
            return other
        other = _Step(step.rect, self.mask[y0:y1, x0:x1].copy())
        self.mask[y0:y1, x0:x1] = step.pixels
        self._notify(step.rect)
        return other

    # -- outpaint -------------------------------------------------------------------------

    @property
    def outpaint(self) -> tuple[int, int, int, int]:
        """Pixels added on the left, top, right and bottom (the new area is all repainted)."""
        return self._outpaint

    def set_outpaint(self, left: int, top: int, right: int, bottom: int) -> None:
        values = (left, top, right, bottom)
        for side, value in zip(OUTPAINT_SIDES, values, strict=True):
            check_outpaint(side, value)
        if values != self._outpaint:
            self._outpaint = values
            self._notify(None)

    @property
    def canvas_size(self) -> tuple[int, int]:
        """The output's size: the source plus the outpaint."""
        left, top, right, bottom = self._outpaint
        return self.width + left + right, self.height + top + bottom

    # -- output ---------------------------------------------------------------------------

    def has_mask(self) -> bool:
        return bool(self.mask.any())

    def mask_image(self) -> Image.Image:
        return Image.fromarray(self.mask, mode="L")

    def source_png(self) -> bytes:
        return _png(self.source)

    def mask_png(self) -> bytes | None:
        return _png(self.mask_image()) if self.has_mask() else None

    # -- listeners ------------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _notify(self, rect: Rect | None) -> None:
        for listener in list(self._listeners):
            listener(rect)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
