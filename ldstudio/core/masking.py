"""Masks and canvases for img2img, inpaint and outpaint: pure numpy + PIL, any thread.

Every function is pure (no state, no I/O) and returns new images/arrays; inputs are never
modified. Conventions:

- A mask image is mode "L", 255 = repaint, 0 = keep, grey = partly (soft).
- A prepared mask is float32 HxW in [0, 1] (`prepare_mask`); functions that take a mask array
  also accept uint8 0..255.
- Regions are (x0, y0, x1, y1) with exclusive ends, as `Image.crop` takes them.
- Distances are Chebyshev (square) distances: PIL's Gaussian blur is a separable box blur, so
  what it can reach from a pixel is a square.

The API (what the engine and the canvas use):

- `mask_from_image(image)`: a user's mask file (or an image with transparency) as an "L" mask.
- `blur_reach(blur)`: how far, in pixels, `GaussianBlur(blur)` can spread a painted pixel.
- `prepare_mask(mask, invert=, blur=)`: invert, then blur (A1111), as float32 in [0, 1].
- `crop_region(mask, padding, width, height, aspect)`: A1111 "Only masked" crop box.
- `paste_crop(base, crop, region)`: a generated crop scaled back and pasted into a copy of base.
- `extend_canvas(image, mask, outpaint)`: the outpaint canvas and its mask.
- `fill_masked(image, mask)`: A1111 "fill" masked content.
- `match_colour(generated, original, mask, band)`: remove a colour shift at the seam.
- `composite(original, generated, mask)`: the final image; unmasked pixels bit for bit.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]
Region = tuple[int, int, int, int]
MaskArray = npt.NDArray[Any]  # float 0..1, uint8 0..255 or bool

# A box blur pass of radius r turns one 255 pixel into 255/(2r+1) per pixel; keeping that >= 1
# makes the "any painted pixel within reach" test exact without relying on PIL's rounding.
_DILATE_STEP = 127
_COLOUR_MODES = {"RGB": "RGB", "RGBA": "RGB", "L": "L", "LA": "L"}
_EXTEND_BLUR_MAX = 64  # px: how much the stretched edge colours of an outpaint are smoothed


def mask_from_image(image: Image.Image) -> Image.Image:
    """An "L" mask (255 = repaint) from a mask file or an image with transparency.

    With an alpha channel that is not fully opaque: repaint where transparent (255 - alpha).
    Otherwise the luminance (white = repaint); greys are kept. 16-bit greyscale is scaled down.
    """
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = image.getchannel("A")
        if int(np.asarray(alpha).min()) < 255:
            return alpha.point(lambda v: 255 - v)
        image = image.convert("RGB") if image.mode in ("RGBA", "RGBa", "PA") else image
    if image.mode.startswith("I"):
        values = np.asarray(image).astype(np.int64)
        if values.size and int(values.max()) > 255:  # 16-bit (or wider) greyscale
            values = (values * 255 + 32767) // 65535
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    if image.mode == "F":
        values_f = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if values_f.size and float(values_f.max()) <= 1.0:  # a 0..1 float mask
            values_f = values_f * 255.0
        return Image.fromarray(np.clip(np.rint(values_f), 0, 255).astype(np.uint8))
    return image.convert("L")


def blur_reach(blur: int) -> int:
    """How far (Chebyshev px) PIL's `GaussianBlur(blur)` spreads a pixel: its kernel support.

    Pillow approximates the Gaussian by 3 passes of an extended box blur whose fractional radius
    r has the variance blur**2 / 3 (so r is about blur - 0.5); a pass reaches floor(r) + 1 px.
    """
    if blur <= 0:
        return 0
    sigma2 = blur * blur / 3.0
    length = math.sqrt(12.0 * sigma2 + 1.0)
    whole = math.floor((length - 1.0) / 2.0)
    return 3 * (whole + 1)


def prepare_mask(mask: Image.Image, *, invert: bool, blur: int) -> FloatArray:
    """The mask the engine and `composite` use: float32 HxW in [0, 1].

    Invert first, then Gaussian blur of radius `blur` (A1111: PIL `GaussianBlur(mask_blur)`).
    Pixels farther than `blur_reach(blur)` from every painted pixel are exactly 0, pixels
    farther than that from every pixel below 255 are exactly 1: a probe proves that of this
    Pillow's blur once per radius (see `_blur_stays_within`); where it fails, a clip keeps it.
    """
    if blur < 0:
        raise ValueError(f"blur: {blur} is negative; allowed: 0 or more")
    grey = mask if mask.mode == "L" else mask.convert("L")
    if invert:
        grey = grey.point(lambda v: 255 - v)
    values = np.asarray(grey)
    out = np.zeros(values.shape, np.float32)
    reach = blur_reach(blur)
    painted = values > 0
    if not painted.any():
        return out
    if reach == 0:
        unblurred: FloatArray = np.divide(values, np.float32(255), dtype=np.float32)
        return unblurred
    # Outside the painted box grown by the reach the answer is 0: blur only that part. PIL
    # replicates edge pixels; the crop's edges are either zeros or the image's own edges, so
    # the result equals blurring the whole image.
    x0, y0, x1, y1 = _grow(_bbox(painted), reach, values.shape[1], values.shape[0])
    part = grey.crop((x0, y0, x1, y1))
    blurred = np.asarray(part.filter(ImageFilter.GaussianBlur(blur)))
    result = np.divide(blurred, np.float32(255), dtype=np.float32)
    if not _blur_stays_within(blur, reach):
        # This Pillow's blur spreads farther than `reach`: clip (two dilations, ~1 s at 4096²).
        result[~_dilate(values[y0:y1, x0:x1] > 0, reach)] = 0.0
        below = values[y0:y1, x0:x1] < 255
        if below.any():
            result[~_dilate(below, reach)] = 1.0
        else:
            result[:] = 1.0
    out[y0:y1, x0:x1] = result
    return out


@cache
def _blur_stays_within(blur: int, reach: int) -> bool:
    """Whether this Pillow's `GaussianBlur(blur)` provably leaves a pixel at 0 when every pixel
    within `reach` of it is 0, and at 255 when every pixel within `reach` is 255.

    Pillow's blur is passes of sums with non-negative weights, each rounded: a monotone map. So
    the worst case for "0 stays 0" is everything 255 except the (2 reach + 1)² square around the
    pixel, and the worst for "255 stays 255" is its mirror. A 1 px border suffices: the blur
    replicates edge pixels outwards. Probing both once per radius proves the property for every
    mask and lets `prepare_mask` skip the clip, the costliest part of a large mask.
    """
    side = 2 * reach + 3
    hole = np.full((side, side), 255, np.uint8)
    hole[1:-1, 1:-1] = 0
    island = 255 - hole
    centre = side // 2
    kernel = ImageFilter.GaussianBlur(blur)
    zero = np.asarray(Image.fromarray(hole).filter(kernel))[centre, centre] == 0
    full = np.asarray(Image.fromarray(island).filter(kernel))[centre, centre] == 255
    return bool(zero and full)


def crop_region(mask: MaskArray, padding: int, width: int, height: int, aspect: float) -> Region:
    """A1111 "Only masked": the box (x0, y0, x1, y1) the model repaints at its own size.

    The bounding box of mask > 0, grown by `padding` on every side, then grown (never shrunk) to
    the processing `aspect` (width / height), kept inside the `width` x `height` image by
    shifting it at edges and corners; where the image is too small for the aspect in one axis,
    that axis is the whole image. Pass the prepared (blurred) mask so the blur band is inside.
    """
    if mask.shape[:2] != (height, width):
        raise ValueError(
            f"mask: {mask.shape[1]}x{mask.shape[0]} is not the image size {width}x{height}"
        )
    if padding < 0:
        raise ValueError(f"padding: {padding} is negative; allowed: 0 or more")
    if not (math.isfinite(aspect) and aspect > 0):
        raise ValueError(f"aspect: {aspect} is not a positive number")
    painted = np.asarray(mask) > 0
    if not painted.any():
        raise ValueError("mask: nothing is painted, so there is no region to crop")
    x0, y0, x1, y1 = _grow(_bbox(painted), padding, width, height)
    w, h = x1 - x0, y1 - y0
    if w < h * aspect:
        x0, x1 = _widen(x0, x1, max(w, round(h * aspect)), width)
    else:
        y0, y1 = _widen(y0, y1, max(h, round(w / aspect)), height)
    return x0, y0, x1, y1


def paste_crop(base: Image.Image, crop: Image.Image, region: Region) -> Image.Image:
    """A copy of `base` with `crop` scaled (Lanczos) to `region` and pasted there.

    For "Only masked": the generated crop back in the full picture, before `composite`.
    Only the colour bands are replaced; an alpha channel of `base` is kept.
    """
    x0, y0, x1, y1 = region
    if not (0 <= x0 < x1 <= base.width and 0 <= y0 < y1 <= base.height):
        raise ValueError(f"region: {region} is not inside the image {base.width}x{base.height}")
    bands = _colour_mode(base)
    piece = crop.convert(bands) if crop.mode != bands else crop
    if piece.size != (x1 - x0, y1 - y0):
        piece = piece.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
    out = np.array(base)
    _bands(out)[y0:y1, x0:x1] = _bands(np.asarray(piece))
    return Image.fromarray(out)


def extend_canvas(
    image: Image.Image, mask: Image.Image | None, outpaint: tuple[int, int, int, int]
) -> tuple[Image.Image, Image.Image]:
    """The outpaint canvas: `image` at (left, top) of a bigger one, and the "L" mask to repaint.

    The source pixels are copied unchanged. The new area holds the source's edge colours
    stretched outwards and blurred across: the colours stay those of the edge (so outpainting
    again and again does not drift darker), never black; an alpha channel is opaque there. The
    mask is 255 over the new area, the user's `mask` (source-sized) over the source, else 0.
    """
    left, top, right, bottom = outpaint
    if min(outpaint) < 0:
        raise ValueError(f"outpaint: {outpaint} has a negative side; allowed: 0 or more")
    if mask is not None and mask.size != image.size:
        raise ValueError(
            f"mask: {mask.width}x{mask.height} is not the image size {image.width}x{image.height}"
        )
    source = _supported(image)
    values = np.asarray(source)
    pad = ((top, bottom), (left, right)) + ((0, 0),) * (values.ndim - 2)
    stretched = np.pad(values, pad, mode="edge")
    height, width = stretched.shape[:2]
    new_area = np.ones((height, width), bool)
    new_area[top : top + image.height, left : left + image.width] = False
    if new_area.any():
        # Stretched edges make streaks; blurring mixes neighbouring streaks (never with black:
        # PIL's blur replicates the canvas edges, which are stretched colours too).
        radius = min(_EXTEND_BLUR_MAX, max(1, max(outpaint) // 4))
        smooth = np.asarray(Image.fromarray(stretched).filter(ImageFilter.GaussianBlur(radius)))
        spread = new_area if stretched.ndim == 2 else new_area[..., None]
        np.copyto(stretched, smooth, where=spread)
        if source.mode in ("RGBA", "LA"):
            np.copyto(stretched[..., -1], np.uint8(255), where=new_area)
    out_mask = np.where(new_area, np.uint8(255), np.uint8(0))
    if mask is not None:
        user = np.asarray(mask_from_image(mask) if mask.mode != "L" else mask)
        out_mask[top : top + image.height, left : left + image.width] = user
    return Image.fromarray(stretched), Image.fromarray(out_mask)


def fill_masked(image: Image.Image, mask: MaskArray) -> Image.Image:
    """A1111 "fill": masked pixels replaced by the blurred colours of their surroundings.

    The colours come from the unmasked pixels (weighted by 1 - mask) spread inwards by a
    pull-push pyramid (a normalised blur at every scale), then softened; a partly masked pixel
    gets that much of the fill. Pixels where mask == 0 are unchanged bit for bit; alpha is kept.
    With nothing unmasked, the fill is the image's own mean colour.
    """
    source = _supported(image)
    weight = _unit_mask(mask, source.size)
    masked = weight > 0
    out = source.copy()
    if not masked.any():
        return out
    # The fill comes from around the hole: work in its box grown by half its size.
    bx0, by0, bx1, by1 = _bbox(masked)
    margin = max(bx1 - bx0, by1 - by0) // 2 + 16
    box = _grow((bx0, by0, bx1, by1), margin, source.width, source.height)
    x0, y0, x1, y1 = box
    patch = np.array(source.crop(box))
    target = _bands(patch)
    colour = target.astype(np.float32)
    if colour.ndim == 2:
        colour = colour[..., None]
    m = weight[y0:y1, x0:x1]
    known = 1.0 - m
    if float(known.max()) <= 0.0:
        filled = np.broadcast_to(colour.mean(axis=(0, 1)), colour.shape)
    else:
        filled = _pull_push(colour * known[..., None], known)
    # The pyramid's coarse levels are blocky: soften the fill (only its masked part is used).
    rounded = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    smooth = Image.fromarray(rounded[..., 0] if rounded.shape[-1] == 1 else rounded)
    soft = np.asarray(smooth.filter(ImageFilter.GaussianBlur(4))).astype(np.float32)
    if soft.ndim == 2:
        soft = soft[..., None]
    blended = np.clip(np.rint(colour + (soft - colour) * m[..., None]), 0, 255).astype(np.uint8)
    inside = masked[y0:y1, x0:x1]
    if target.ndim == 2:
        np.copyto(target, blended[..., 0], where=inside)
    else:
        np.copyto(target, blended, where=inside[..., None])
    out.paste(Image.fromarray(patch), box)
    return out


def match_colour(
    generated: MaskArray,
    original: MaskArray,
    mask: MaskArray,
    band: int,
) -> MaskArray:
    """`generated` shifted per channel so it matches `original` just outside the mask.

    The offset is the mean of original - generated over the ring of kept pixels (mask == 0)
    within `band` px of a masked pixel: there the result must equal the original, so a colour
    shift there is what would show as a seam. Arrays are HxWx3 in 0..255; a uint8 `generated`
    gives uint8, anything else float32, clipped to 0..255. With no ring (nothing or everything
    masked) the colours are unchanged.
    """
    if band < 1:
        raise ValueError(f"band: {band} is below 1; allowed: 1 or more")
    gen = np.asarray(generated)
    orig = np.asarray(original)
    if gen.shape != orig.shape or gen.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"match_colour: generated {gen.shape}, original {orig.shape} and mask "
            f"{mask.shape} differ in size"
        )
    painted = np.asarray(mask) > 0
    ring = np.zeros(painted.shape, bool)
    if painted.any():
        x0, y0, x1, y1 = _grow(_bbox(painted), band, painted.shape[1], painted.shape[0])
        ring[y0:y1, x0:x1] = _dilate(painted[y0:y1, x0:x1], band) & ~painted[y0:y1, x0:x1]
    shifted = gen.astype(np.float32)
    if ring.any():
        offset = (orig[ring].astype(np.float64) - gen[ring].astype(np.float64)).mean(axis=0)
        shifted += offset.astype(np.float32)
    np.clip(shifted, 0.0, 255.0, out=shifted)
    if gen.dtype == np.uint8:
        return np.rint(shifted).astype(np.uint8)
    return shifted


def composite(original: Image.Image, generated: Image.Image, mask: MaskArray) -> Image.Image:
    """The final image: `original` where mask == 0 (bit for bit), `generated` where mask == 1.

    In between the two are blended in proportion to the mask (8-bit steps), monotone in it.
    The result has the original's size and mode (RGB, RGBA, L or LA); an alpha channel is the
    original's; `generated` may be RGB, RGBA or L and is converted to the original's bands.
    """
    source = _supported(original)
    if generated.size != original.size:
        raise ValueError(
            f"generated: {generated.width}x{generated.height} is not the original "
            f"size {original.width}x{original.height}"
        )
    values = _sized(mask, original.size)
    painted = values > 0
    out = source.copy()
    if not painted.any():
        return out
    # Only the painted box is touched: the rest of the copy is the original's own bytes.
    box = _bbox(painted)
    x0, y0, x1, y1 = box
    inside = painted[y0:y1, x0:x1]
    bands = _colour_mode(source)
    region = source.crop(box)
    colour = region if region.mode == bands else region.convert(bands)
    gen = generated.crop(box)
    gen = gen if gen.mode == bands else gen.convert(bands)
    # PIL's composite is exact at 0 and 255 and rounds in between (monotone in the mask); the
    # copy below writes only where mask > 0 all the same.
    level = Image.fromarray(_level_mask(values[y0:y1, x0:x1]))
    blended = _bands(np.asarray(Image.composite(gen, colour, level)))
    patch = np.array(region)
    target = _bands(patch)
    np.copyto(target, blended, where=inside[..., None] if target.ndim == 3 else inside)
    out.paste(Image.fromarray(patch), box)
    return out


# --- helpers --------------------------------------------------------------------------------


def _supported(image: Image.Image) -> Image.Image:
    if image.mode not in _COLOUR_MODES:
        raise ValueError(f"image mode: {image.mode}; allowed: RGB, RGBA, L, LA")
    return image


def _colour_mode(image: Image.Image) -> str:
    return _COLOUR_MODES[image.mode]


def _bands(values: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The colour bands of an image array (a view: writing to it writes the image)."""
    if values.ndim == 2:
        return values
    if values.shape[-1] in (2, 4):  # LA, RGBA: drop alpha
        colour = values[..., :-1]
        return colour[..., 0] if colour.shape[-1] == 1 else colour
    return values


def _sized(mask: MaskArray, size: tuple[int, int]) -> MaskArray:
    """`mask` as an array, checked to be HxW for an image of `size` (width, height)."""
    values = np.asarray(mask)
    if values.shape != (size[1], size[0]):
        shape = "x".join(str(n) for n in values.shape[::-1]) or "a scalar"
        raise ValueError(f"mask: {shape} is not the image size {size[0]}x{size[1]}")
    return values


def _level_mask(values: MaskArray) -> UInt8Array:
    """A mask array as uint8 0..255 (float masks are 0..1; NaN counts as 0)."""
    if values.dtype == np.uint8:
        same: UInt8Array = values
        return same
    scaled = np.multiply(values, np.float32(255), dtype=np.float32)
    np.fmax(scaled, 0.0, out=scaled)  # also turns NaN into 0
    np.fmin(scaled, 255.0, out=scaled)
    scaled += 0.5
    level: UInt8Array = scaled.astype(np.uint8)
    # A faint but non-zero mask still counts as painted (it is inside the blur band).
    np.maximum(level, values > 0, out=level)
    return level


def _unit_mask(mask: MaskArray, size: tuple[int, int]) -> FloatArray:
    """A mask array as float32 0..1 (uint8 masks are 0..255; NaN counts as 0)."""
    values = _sized(mask, size)
    if values.dtype == np.uint8:
        unit: FloatArray = np.divide(values, np.float32(255), dtype=np.float32)
        return unit
    unit = np.fmax(values.astype(np.float32), np.float32(0.0))
    return np.fmin(unit, np.float32(1.0))


def _bbox(painted: npt.NDArray[np.bool_]) -> Region:
    rows = np.flatnonzero(painted.any(axis=1))
    cols = np.flatnonzero(painted.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _grow(box: Region, by: int, width: int, height: int) -> Region:
    x0, y0, x1, y1 = box
    return max(0, x0 - by), max(0, y0 - by), min(width, x1 + by), min(height, y1 + by)


def _widen(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """[lo, hi) grown about its centre to `size` (at most `limit`), shifted inside [0, limit)."""
    size = min(size, limit)
    extra = size - (hi - lo)
    lo -= extra // 2
    hi = lo + size
    if lo < 0:
        lo, hi = 0, size
    if hi > limit:
        lo, hi = limit - size, limit
    return lo, hi


def _dilate(painted: npt.NDArray[np.bool_], radius: int) -> npt.NDArray[np.bool_]:
    """Pixels within Chebyshev distance `radius` of a True pixel (PIL box blurs, separable)."""
    image = Image.fromarray(np.where(painted, np.uint8(255), np.uint8(0)))
    left = radius
    while left > 0:
        step = min(left, _DILATE_STEP)
        for xy in ((step, 0), (0, step)):
            image = image.filter(ImageFilter.BoxBlur(xy)).point(lambda v: 255 if v else 0)
        left -= step
    return np.asarray(image) > 0


def _pull_push(premultiplied: FloatArray, weight: FloatArray) -> FloatArray:
    """Colours everywhere from weighted samples (pull-push): halve down to one cell, summing
    weights (capped at 1), then fill each level's missing weight from the level below it.
    Needs some weight somewhere."""
    levels: list[tuple[FloatArray, FloatArray]] = [(premultiplied, weight)]
    while max(levels[-1][1].shape) > 1:
        colour, w = levels[-1]
        h, wd = w.shape
        fy, fx = min(h, 2), min(wd, 2)
        # Zero-weight padding to even sizes adds no colour.
        pad_y, pad_x = h % fy, wd % fx
        if pad_y or pad_x:
            colour = np.pad(colour, ((0, pad_y), (0, pad_x), (0, 0)))
            w = np.pad(w, ((0, pad_y), (0, pad_x)))
        ny, nx = w.shape[0] // fy, w.shape[1] // fx
        sum_w = w.reshape(ny, fy, nx, fx).sum(axis=(1, 3))
        sum_c = colour.reshape(ny, fy, nx, fx, -1).sum(axis=(1, 3))
        next_w = np.minimum(sum_w, np.float32(1.0))
        scale = np.divide(next_w, sum_w, out=np.zeros_like(sum_w), where=sum_w > 0)
        levels.append((sum_c * scale[..., None], next_w))
    colour, w = levels[-1]
    full: FloatArray = (colour / np.maximum(w[..., None], np.float32(1e-12))).astype(np.float32)
    for colour, w in reversed(levels[:-1]):
        up = _upsample(full, w.shape)
        full = (colour + (np.float32(1.0) - w[..., None]) * up).astype(np.float32, copy=False)
    return full


def _upsample(values: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """Bilinear upscale of an HxWxC float array to `shape` (PIL's "F" resize, per channel)."""
    size = (shape[1], shape[0])
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(values[..., c])).resize(
                size, Image.Resampling.BILINEAR
            )
        )
        for c in range(values.shape[-1])
    ]
    return np.stack(channels, axis=-1).astype(np.float32)
