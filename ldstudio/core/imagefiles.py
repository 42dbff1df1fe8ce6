"""Saving generated images: safe file names, atomic PNG writes with metadata; any thread."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

from PIL import Image, PngImagePlugin

from ldstudio.core.atomic import atomic_file, write_new_file
from ldstudio.core.events import ImageRecord
from ldstudio.core.metadata import png_text_chunks
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

SLUG_MAX_CHARS = 60
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(10)
}


def prompt_slug(prompt: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """A file-name-safe fragment of a prompt: letters, digits, '-' and '_' only, bounded length."""
    text = unicodedata.normalize("NFKC", prompt)
    text = re.sub(r"[^\w\-]+", "_", text, flags=re.UNICODE).strip("_.-")
    text = re.sub(r"_+", "_", text)[:max_chars].rstrip("_.-")
    if not text or text.upper() in _WINDOWS_RESERVED:
        return "image" if not text else f"{text}_"
    return text


def numbered(path: Path) -> Iterator[Path]:
    """`path`, then `stem-2.ext`, `stem-3.ext`, ... (names to claim with `write_new_file`)."""
    yield path
    for counter in itertools.count(2):
        yield path.with_name(f"{path.stem}-{counter}{path.suffix}")


def free_name(path: Path) -> Path:
    """`path`, or `stem-2.ext`, `stem-3.ext`, ...: the first name not taken now.

    Only for a writer that cannot race another (a row's own move); new files are claimed
    atomically with `write_new_file(numbered(path), ...)`.
    """
    return next(candidate for candidate in numbered(path) if not candidate.exists())


def _png_info(text: dict[str, str]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        # Pillow writes tEXt for Latin-1 and needs iTXt for anything else (prompts in any script).
        try:
            value.encode("latin-1")
            info.add_text(key, value)
        except UnicodeEncodeError:
            info.add_itxt(key, value)
    return info


def write_png_atomic(image: Image.Image, path: Path, text: dict[str, str]) -> None:
    """Write a PNG with text chunks so that `path` is either absent or complete, never partial.

    Replaces a file already at `path`: for a name the caller owns or was allowed to replace.
    """
    info = _png_info(text)
    with atomic_file(path) as handle:
        image.save(handle, format="PNG", pnginfo=info)


def write_png_new(image: Image.Image, candidates: Iterable[Path], text: dict[str, str]) -> Path:
    """Write a PNG under the first candidate name nobody has (claimed atomically); that name."""
    info = _png_info(text)

    def write(handle: IO[bytes]) -> None:
        image.save(handle, format="PNG", pnginfo=info)

    return write_new_file(candidates, write)


class ImageSink(Protocol):
    """Where an engine puts finished images: a plain folder, or the library.

    `request`: the image's own job (kind, input blobs, inpaint settings; its params are
    `params`), written into the PNG's `ldstudio` chunk; None is a txt2img job of `params`.
    """

    def save(
        self,
        image: Image.Image,
        params: GenerationParams,
        *,
        index: int,
        model_name: str,
        device: str,
        dtype: str,
        seconds: float,
        request: Request | None = None,
    ) -> ImageRecord: ...


class FolderSink:
    """Saves each image as `<date>-<time>-<seed>-<prompt slug>.png` in one folder.

    With `exact_path`, the first image goes to that path and later ones to `-2`, `-3`, ... .
    No file the user already has is replaced: a taken exact path raises FileExistsError
    (unless `overwrite`), and a taken `-2` name moves on to the next free one.
    """

    def __init__(self, folder: Path, exact_path: Path | None = None, *, overwrite: bool = False):
        self.folder = folder
        self.exact_path = exact_path
        self.overwrite = overwrite

    def _write(
        self,
        image: Image.Image,
        params: GenerationParams,
        index: int,
        model: str,
        request: Request | None,
    ) -> Path:
        text = png_text_chunks(params, model, request)
        if self.exact_path is not None:
            if index == 0:
                if self.overwrite:
                    write_png_atomic(image, self.exact_path, text)
                    return self.exact_path
                try:
                    return write_png_new(image, [self.exact_path], text)
                except FileExistsError:
                    raise FileExistsError(
                        f"{self.exact_path}: already exists; choose another name, or allow "
                        "replacing it"
                    ) from None
            path = self.exact_path
            return write_png_new(
                image, numbered(path.with_name(f"{path.stem}-{index + 1}{path.suffix}")), text
            )
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        stem = f"{stamp}-{params.seed}-{prompt_slug(params.prompt)}"
        # Claimed, not checked: another run may pick the same name in the same second.
        return write_png_new(image, numbered(self.folder / f"{stem}.png"), text)

    def save(
        self,
        image: Image.Image,
        params: GenerationParams,
        *,
        index: int,
        model_name: str,
        device: str,
        dtype: str,
        seconds: float,
        request: Request | None = None,
    ) -> ImageRecord:
        path = self._write(image, params, index, model_name, request)
        return ImageRecord(
            path=path,
            params=params,
            seed=int(params.seed),
            index=index,
            width=image.width,
            height=image.height,
            model_name=model_name,
            device=device,
            dtype=dtype,
            seconds=seconds,
        )
