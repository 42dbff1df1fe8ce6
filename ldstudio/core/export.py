"""Save as / export: an image to PNG, JPEG or WebP, with its metadata kept or stripped; any thread.

Kept metadata: a PNG gets every text chunk of the source (ldstudio's `ldstudio` JSON and the
A1111 `parameters` text, or another tool's chunks); JPEG and WebP get the A1111 `parameters`
text in the EXIF UserComment (0x9286, "UNICODE" + UTF-16BE), as AUTOMATIC1111 writes it, so
A1111, Forge, civitai and ldstudio read it back. Stripped metadata (the privacy option): no text
chunks, no EXIF, no XMP, no comment; only the colour profile stays, since it is no private
data and dropping it changes colours. Writes are atomic: the target is absent or complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageOps, PngImagePlugin

from ldstudio.core.atomic import atomic_file, write_new_file
from ldstudio.core.imagefiles import numbered
from ldstudio.core.metadata import PARAMETERS_KEY, a1111_parameters
from ldstudio.core.readers import (
    EXIF_IFD,
    USER_COMMENT,
    ReadResult,
    UnreadableImage,
    read_text,
    text_metadata,
)

FORMATS: dict[str, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
QUALITY_RANGE = (1, 100)
JPEG_EXIF_MAX = 65_533  # one APP1 segment: 64 KiB minus its length field and "Exif\0\0"
# Text keys that belong to the image container rather than to generation metadata.
_CONTAINER_KEYS = {"comment", "icc_profile", "exif", "xmp", "XML:com.adobe.xmp"}


def format_for(path: Path) -> str:
    """The export format a file name asks for; ValueError naming the allowed suffixes."""
    try:
        return _SUFFIX_FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"{path.name}: cannot export to {path.suffix or 'a name without suffix'!r}; "
            f"allowed: {', '.join(sorted(_SUFFIX_FORMATS))}"
        ) from None


def parameters_text(result: ReadResult) -> str | None:
    """A1111 `parameters` text for what a reader found: the original text, or rebuilt."""
    if result.parameters_text:
        return result.parameters_text
    if result.params is not None and isinstance(result.params.seed, int):
        model = str(result.extra.get("model_name") or result.fields.get("model", ""))
        return a1111_parameters(result.params, model)
    if not result.found:
        return None
    fields = result.fields
    text = str(fields.get("prompt", ""))
    if fields.get("negative_prompt"):
        text += f"\nNegative prompt: {fields['negative_prompt']}"
    pairs = {
        "Steps": fields.get("steps"),
        "Sampler": fields.get("scheduler") or result.extra.get("sampler_name"),
        "CFG scale": fields.get("guidance_scale"),
        "Seed": fields.get("seed"),
        "Size": f"{fields['width']}x{fields['height']}" if "width" in fields else None,
        "Model": fields.get("model"),
    }
    line = ", ".join(
        f"{k}: {v}" for k, v in pairs.items() if v not in (None, "") and "," not in str(v)
    )
    return f"{text}\n{line}" if line else text


def user_comment(text: str) -> bytes:
    """EXIF UserComment bytes as A1111 (piexif) writes them."""
    return b"UNICODE\0" + text.encode("utf-16-be")


class MetadataTooLarge(ValueError):
    """The metadata cannot travel in the chosen format (a JPEG's EXIF is at most 64 KiB)."""


def export_image(
    source: Path,
    target: Path,
    *,
    fmt: str | None = None,
    keep_metadata: bool = True,
    quality: int = 95,
) -> Path:
    """Write `source` as `target` in `fmt` (default: from target's suffix); returns target.

    Raises FileNotFoundError, UnreadableImage, MetadataTooLarge, or ValueError for a bad
    format or quality. A file already at `target` is replaced (the user chose that name).
    """
    fmt = fmt.lower() if fmt else format_for(target)
    fmt = "jpeg" if fmt == "jpg" else fmt
    image, options = _encoded(source, fmt, keep_metadata, quality)
    with atomic_file(target) as handle:
        image.save(handle, format=fmt.upper(), **options)
    return target


def _encoded(
    source: Path, fmt: str, keep_metadata: bool, quality: int
) -> tuple[Image.Image, dict[str, Any]]:
    """The image to save and Pillow's save options for `fmt` ("jpeg", not "jpg")."""
    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    if not QUALITY_RANGE[0] <= quality <= QUALITY_RANGE[1]:
        raise ValueError(
            f"quality: {quality} is out of range; allowed: {QUALITY_RANGE[0]} to {QUALITY_RANGE[1]}"
        )
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    try:
        with Image.open(source) as opened:
            opened.load()
            text = text_metadata(opened)
            icc = opened.info.get("icc_profile")
            image = ImageOps.exif_transpose(opened)
    except FileNotFoundError:
        raise
    except Exception as exc:  # Pillow raises a zoo (struct.error, zlib.error, bomb errors, ...)
        raise UnreadableImage(f"{source}: not a readable image ({exc})") from None

    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt == "png":
        if keep_metadata:
            info = PngImagePlugin.PngInfo()
            for key, value in text.items():
                if key in _CONTAINER_KEYS:
                    continue
                try:
                    value.encode("latin-1")
                    info.add_text(key, value)
                except UnicodeEncodeError:
                    info.add_itxt(key, value)
            options["pnginfo"] = info
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "I", "1"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    else:
        if fmt == "jpeg":
            image = _flatten(image)
        elif image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        options["quality"] = quality
        if keep_metadata:
            parameters = parameters_text(read_text(text)) or text.get(PARAMETERS_KEY)
            if parameters:
                exif = Image.Exif()
                exif.get_ifd(EXIF_IFD)[USER_COMMENT] = user_comment(parameters)
                size = len(exif.tobytes())
                if fmt == "jpeg" and size > JPEG_EXIF_MAX:
                    raise MetadataTooLarge(
                        f"{source.name}: its generation metadata ({size:,} bytes) is too large "
                        f"for a JPEG (at most {JPEG_EXIF_MAX:,} bytes of EXIF); save it as PNG "
                        "or WebP, or without metadata"
                    )
                options["exif"] = exif
    return image, options


@dataclass
class FolderExport:
    """What export_to_folder() did: the files written, and each image not written with why."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def export_to_folder(
    images: Sequence[tuple[int, Path]],
    folder: Path,
    *,
    fmt: str = "png",
    keep_metadata: bool = True,
    quality: int = 95,
) -> FolderExport:
    """Each (library id, file) as `<id>-<stem>.<ext>` in `folder` (created if needed).

    Existing files are never overwritten: a taken name gets `-2`, `-3`, ... One unreadable
    or missing image does not stop the rest; it is listed in `failed`. ValueError for a bad
    format or quality, before anything is written.
    """
    fmt = "jpeg" if fmt.lower() == "jpg" else fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    if not QUALITY_RANGE[0] <= quality <= QUALITY_RANGE[1]:
        raise ValueError(
            f"quality: {quality} is out of range; allowed: {QUALITY_RANGE[0]} to {QUALITY_RANGE[1]}"
        )
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: is a file; give a folder to export into")
    folder.mkdir(parents=True, exist_ok=True)
    report = FolderExport()
    for image_id, source in images:
        names = numbered(folder / f"{image_id}-{source.stem}{FORMATS[fmt]}")
        try:
            image, options = _encoded(source, fmt, keep_metadata, quality)
            # Claimed, not checked: another export into this folder may pick the same name.
            target = write_new_file(names, partial(_save, image, fmt, options))
        except (OSError, UnreadableImage, MetadataTooLarge) as exc:
            report.failed.append((source, str(exc)))
            continue
        report.written.append(target)
    return report


def check_outside(folder: Path, library: Path) -> None:
    """ValueError when `folder` is the library folder or inside it.

    Copies written there would be adopted by the next reconcile as new images (the library
    would hold every exported image twice).
    """
    target, root = folder.expanduser().resolve(), library.expanduser().resolve()
    if target == root or target.is_relative_to(root):
        raise ValueError(
            f"{folder}: is inside the image library ({root}); export to a folder outside it"
        )


def _save(image: Image.Image, fmt: str, options: dict[str, Any], out: IO[bytes]) -> None:
    image.save(out, format=fmt.upper(), **options)


def _flatten(image: Image.Image) -> Image.Image:
    """JPEG has no alpha: composite on white, as browsers show a transparent PNG."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
