"""Saving generated images: safe file names, atomic PNG writes with metadata; any thread."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Protocol

from PIL import Image, PngImagePlugin

from ldstudio.core.atomic import atomic_file
from ldstudio.core.events import ImageRecord
from ldstudio.core.metadata import png_text_chunks
from ldstudio.core.params import GenerationParams

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


def free_name(path: Path) -> Path:
    """`path`, or `stem-2.ext`, `stem-3.ext`, ...: the first name not taken (never overwrite)."""
    candidate, counter = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{counter}{path.suffix}")
        counter += 1
    return candidate


def write_png_atomic(image: Image.Image, path: Path, text: dict[str, str]) -> None:
    """Write a PNG with text chunks so that `path` is either absent or complete, never partial."""
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        # Pillow writes tEXt for Latin-1 and needs iTXt for anything else (prompts in any script).
        try:
            value.encode("latin-1")
            info.add_text(key, value)
        except UnicodeEncodeError:
            info.add_itxt(key, value)
    with atomic_file(path) as handle:
        image.save(handle, format="PNG", pnginfo=info)


class ImageSink(Protocol):
    """Where an engine puts finished images: a plain folder now, the gallery library later."""

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

    def _target(self, params: GenerationParams, index: int) -> Path:
        if self.exact_path is not None:
            if index == 0:
                if self.exact_path.exists() and not self.overwrite:
                    raise FileExistsError(
                        f"{self.exact_path}: already exists; choose another name, or allow "
                        "replacing it"
                    )
                return self.exact_path
            return free_name(
                self.exact_path.with_name(
                    f"{self.exact_path.stem}-{index + 1}{self.exact_path.suffix}"
                )
            )
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        stem = f"{stamp}-{params.seed}-{prompt_slug(params.prompt)}"
        return free_name(self.folder / f"{stem}.png")

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
    ) -> ImageRecord:
        path = self._target(params, index)
        write_png_atomic(image, path, png_text_chunks(params, model_name))
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
