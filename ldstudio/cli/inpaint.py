"""`generate --init-image`: img2img, inpaint and outpaint options, checked before any model loads.

One job kind with three faces: `--init-image` alone is img2img (the whole image, `--strength`),
with `--mask` it is inpaint (white or transparent = repaint), with `--outpaint` the canvas grows
and the new area is masked. Every value is checked here, up front, with a message naming it and
what is allowed; an option that would do nothing (a mask option without a mask) is refused, not
ignored. The source image and the mask go into the library's blob store as PNG bytes and the
request names them by hash (`Request.inpainting`).
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageOps

from ldstudio.cli.common import BadInput
from ldstudio.core.inpaint import (
    INPAINT_AREAS,
    MASK_BLUR_RANGE,
    MASK_PADDING_RANGE,
    MASKED_CONTENTS,
    MAX_CANVAS_SIDE,
    OUTPAINT_MULTIPLE,
    OUTPAINT_RANGE,
    OUTPAINT_SIDES,
    STRENGTH_RANGE,
    InpaintSettings,
    canvas_size_problem,
    check_outpaint,
)
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

# The largest source (and canvas with its outpaint) a side may have: the canvas's limit, so no
# image accepted here is refused later.
MAX_SOURCE_SIDE = MAX_CANVAS_SIDE
AUTO = "auto"
_DEFAULTS = InpaintSettings()
# The CLI spells masked contents with hyphens, as its other multi-word values.
_CONTENTS = {name.replace("_", "-"): name for name in MASKED_CONTENTS}
# Options that only act on a mask (--mask, or an outpaint's new area).
_MASK_OPTIONS = (
    ("mask_blur", "--mask-blur"),
    ("masked_content", "--masked-content"),
    ("no_soft_inpaint", "--no-soft-inpaint"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "img2img, inpaint and outpaint (start from an image; white in the mask = repaint)"
    )
    group.add_argument(
        "--init-image",
        default=None,
        metavar="IMG",
        help="start from this image (PNG, JPEG, WebP, ...): img2img on its own, inpaint with "
        "--mask, outpaint with --outpaint; the output has its size (plus the outpaint)",
    )
    group.add_argument(
        "--strength",
        default=None,
        metavar="0-1|auto",
        help="how far from the image to go: 0 keeps it, 1 repaints fully (default auto: 1.0 "
        "on an inpainting model with a mask, else 0.75)",
    )
    group.add_argument(
        "--mask",
        default=None,
        metavar="MASK.png",
        help="what to repaint, the image's size: white (or transparent) repaints, black keeps, "
        "grey repaints partly",
    )
    group.add_argument(
        "--mask-blur",
        default=None,
        metavar="PX",
        help=f"feather the mask's edge, {MASK_BLUR_RANGE[0]}-{MASK_BLUR_RANGE[1]} px "
        f"(default {_DEFAULTS.mask_blur})",
    )
    group.add_argument(
        "--inpaint-area",
        default=None,
        metavar="whole|masked",
        help="whole: run on the whole picture (default); masked: crop to the mask plus "
        "--mask-padding, run at the model's size, paste back (A1111's 'Only masked')",
    )
    group.add_argument(
        "--mask-padding",
        default=None,
        metavar="PX",
        help=f"with --inpaint-area masked: context around the mask, "
        f"{MASK_PADDING_RANGE[0]}-{MASK_PADDING_RANGE[1]} px (default {_DEFAULTS.mask_padding})",
    )
    group.add_argument(
        "--masked-content",
        default=None,
        metavar="KIND",
        help=f"what the masked area starts from: {', '.join(_CONTENTS)} "
        f"(default {_DEFAULTS.masked_content})",
    )
    group.add_argument(
        "--invert-mask", action="store_true", help="repaint where the mask is black instead"
    )
    group.add_argument(
        "--no-soft-inpaint",
        action="store_true",
        help="binarise the blurred mask while denoising (default: soft, honoured step by step)",
    )
    group.add_argument(
        "--outpaint",
        default=None,
        metavar="LEFT,TOP,RIGHT,BOTTOM",
        help=f"extend the canvas by these pixels per side (multiples of {OUTPAINT_MULTIPLE}, "
        f"{OUTPAINT_RANGE[0]}-{OUTPAINT_RANGE[1]}), e.g. 128,0,128,0",
    )


@dataclass(frozen=True)
class SourceJob:
    """A checked img2img/inpaint/outpaint job whose images are not stored yet (`store`)."""

    path: Path
    image_png: bytes  # RGB, or RGBA as given
    mask_png: bytes | None  # mode "L", 255 = repaint
    size: tuple[int, int]
    settings: InpaintSettings

    def request(self, params: GenerationParams, blobs: BlobPut) -> Request:
        """Store the image (and mask) in `blobs`; the validated request that names them."""
        image = blobs.put(self.image_png)
        mask = blobs.put(self.mask_png) if self.mask_png is not None else None
        try:
            return Request.inpainting(params, self.settings, image, mask).validate()
        except ValueError as exc:
            raise BadInput(str(exc)) from None


class BlobPut(Protocol):
    """What `SourceJob.request` stores into: the library's BlobStore."""

    def put(self, data: bytes) -> str: ...


def source_from_args(args: argparse.Namespace) -> SourceJob | None:
    """The checked job for --init-image and its options; None without --init-image.

    BadInput naming the value and what is allowed: options without --init-image, a mask
    option without a mask, numbers out of range, an unreadable image or mask, a mask of
    another size, an image too large or (whole picture) too small to run at its own size.
    """
    given = _given(args)
    if args.init_image is None:
        if given:
            raise BadInput(
                f"{given[0]}: only with --init-image IMG (img2img, inpaint and outpaint start "
                "from an image)"
            )
        return None
    outpaint = parse_outpaint(args.outpaint)
    masked = args.mask is not None or any(outpaint)
    if not masked:
        for name, option in (*_MASK_OPTIONS, ("inpaint_area", "--inpaint-area masked")):
            value = getattr(args, name)
            if value not in (None, False) and not (name == "inpaint_area" and value == "whole"):
                raise BadInput(
                    f"{option}: only with --mask MASK.png or --outpaint; without them the whole "
                    "image is repainted (img2img)"
                )
    if args.invert_mask and args.mask is None:
        raise BadInput("--invert-mask: only with --mask MASK.png (it inverts that mask)")
    area = _choice("--inpaint-area", args.inpaint_area, INPAINT_AREAS, _DEFAULTS.inpaint_area)
    if args.mask_padding is not None and area != "masked":
        raise BadInput("--mask-padding: only with --inpaint-area masked (the padding of its crop)")
    content = _choice("--masked-content", args.masked_content, tuple(_CONTENTS), None)
    settings = InpaintSettings(
        strength=parse_strength(args.strength),
        mask_blur=_int("--mask-blur", args.mask_blur, MASK_BLUR_RANGE, _DEFAULTS.mask_blur),
        inpaint_area=area,
        mask_padding=_int(
            "--mask-padding", args.mask_padding, MASK_PADDING_RANGE, _DEFAULTS.mask_padding
        ),
        masked_content=_CONTENTS[content] if content else _DEFAULTS.masked_content,
        invert_mask=bool(args.invert_mask),
        outpaint=outpaint,
        soft=not args.no_soft_inpaint,
    ).validate()

    path = Path(args.init_image).expanduser()
    image = open_image("--init-image", path)
    if image.mode not in ("RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    _check_size(path, image.size, settings, masked=masked, sized=args.size is not None)
    mask_png: bytes | None = None
    if args.mask is not None:
        mask_path = Path(args.mask).expanduser()
        mask = open_image("--mask", mask_path)
        if mask.size != image.size:
            raise BadInput(
                f"--mask: {mask_path} is {_wxh(mask.size)} but --init-image {path} is "
                f"{_wxh(image.size)}; allowed: a mask of the image's size"
            )
        from ldstudio.core.masking import mask_from_image

        levels = mask_from_image(mask)
        _refuse_empty(mask_path, levels, settings)
        mask_png = _png(levels)
    return SourceJob(path, _png(image), mask_png, image.size, settings)


def parse_strength(text: str | None) -> float | None:
    if text is None or text.strip().lower() == AUTO:
        return None
    low, high = STRENGTH_RANGE
    allowed = f"allowed: {low:g} to {high:g}, or {AUTO}"
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"--strength: {text!r} is not a number; {allowed}") from None
    if not low <= value <= high:  # also NaN
        raise BadInput(f"--strength: {text} is out of range; {allowed}")
    return value


def parse_outpaint(text: str | None) -> tuple[int, int, int, int]:
    if text is None:
        return (0, 0, 0, 0)
    low, high = OUTPAINT_RANGE
    allowed = (
        f"allowed: LEFT,TOP,RIGHT,BOTTOM in pixels, multiples of {OUTPAINT_MULTIPLE} from {low} "
        f"to {high}, e.g. 128,0,128,0"
    )
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != len(OUTPAINT_SIDES) or not all(_is_int(part) for part in parts):
        raise BadInput(f"--outpaint: {text!r} is not four whole numbers; {allowed}")
    amounts = [int(part) for part in parts]
    for side, amount in zip(OUTPAINT_SIDES, amounts, strict=True):
        try:
            check_outpaint(side, amount)
        except ValueError as exc:
            raise BadInput(f"--{exc}") from None
    return (amounts[0], amounts[1], amounts[2], amounts[3])


def open_image(option: str, path: Path) -> Image.Image:
    """The image at `path`, decoded and upright (EXIF orientation applied); BadInput naming the
    file and why it cannot be used. A side over MAX_SOURCE_SIDE is refused before decoding."""
    from ldstudio.core.readers import not_a_regular_file

    why = not_a_regular_file(path)
    if why is not None:
        raise BadInput(f"{option}: {path}: {why}")
    try:
        with Image.open(path) as opened:
            if max(opened.size) > MAX_SOURCE_SIDE:
                raise BadInput(
                    f"{option}: {path} is {_wxh(opened.size)}; allowed: at most "
                    f"{MAX_SOURCE_SIDE} pixels a side"
                )
            opened.load()
            return ImageOps.exif_transpose(opened)
    except BadInput:
        raise
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise BadInput(f"{option}: {path}: cannot be read ({exc.strerror or exc})") from None
        raise BadInput(
            f"{option}: {path}: not a readable image ({exc}); allowed: PNG, JPEG, WebP or "
            "another image file Pillow reads"
        ) from None
    except Exception as exc:  # Pillow raises a zoo (bomb errors, struct.error, ...)
        raise BadInput(
            f"{option}: {path}: not a readable image ({exc}); allowed: PNG, JPEG, WebP or "
            "another image file Pillow reads"
        ) from None


def _refuse_empty(path: Path, levels: Image.Image, settings: InpaintSettings) -> None:
    """A mask that repaints nothing would run a whole job to return the input."""
    if settings.outpainting:
        return  # the new area is repainted all the same
    lowest, highest = levels.getextrema()
    if settings.invert_mask and lowest == 255:
        raise BadInput(
            f"--mask: {path} with --invert-mask marks nothing to repaint (the mask is white "
            "everywhere); allowed: black where to repaint when inverted"
        )
    if not settings.invert_mask and highest == 0:
        raise BadInput(
            f"--mask: {path} marks nothing to repaint (it is black, or opaque, everywhere); "
            "allowed: white (or transparent) where to repaint"
        )


def _check_size(
    path: Path, size: tuple[int, int], settings: InpaintSettings, *, masked: bool, sized: bool
) -> None:
    """The canvas (source + outpaint) fits the canvas limit, and the model's size range when
    the whole picture runs at its own size (no --size)."""
    problem = canvas_size_problem(size, settings, masked=masked, sized=sized)
    if problem is None:
        return
    problem = problem.replace(" with outpaint ", " with --outpaint ")
    if "whole picture" in problem:
        problem += ". Give --size WxH to run at another size, or --inpaint-area masked with --mask"
    raise BadInput(f"--init-image: {path} {problem}")


def _given(args: argparse.Namespace) -> list[str]:
    """The img2img options given on the command line, by their flags."""
    names = (
        ("strength", "--strength"),
        ("mask", "--mask"),
        ("mask_blur", "--mask-blur"),
        ("inpaint_area", "--inpaint-area"),
        ("mask_padding", "--mask-padding"),
        ("masked_content", "--masked-content"),
        ("invert_mask", "--invert-mask"),
        ("no_soft_inpaint", "--no-soft-inpaint"),
        ("outpaint", "--outpaint"),
    )
    return [option for name, option in names if getattr(args, name) not in (None, False)]


def _choice(option: str, text: str | None, allowed: tuple[str, ...], default: str | None) -> str:
    if text is None:
        return default or ""
    if text not in allowed:
        raise BadInput(f"{option}: {text!r} is not supported; allowed: {', '.join(allowed)}")
    return text


def _int(option: str, text: str | None, bounds: tuple[int, int], default: int) -> int:
    if text is None:
        return default
    low, high = bounds
    if not _is_int(text.strip()):
        raise BadInput(f"{option}: {text!r} is not a whole number; allowed: {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise BadInput(f"{option}: {value} is out of range; allowed: {low} to {high}")
    return value


def _is_int(text: str) -> bool:
    return text.isascii() and text.lstrip("-").isdigit()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
