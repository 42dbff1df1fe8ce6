"""Thumbnails cached on disk, made lazily; any thread except the GUI thread (they decode images).

A thumbnail is a WebP file at most `size` pixels on its longer side, named by the image's
library id and the source file's modification time (nanoseconds), so an edited file gets a
fresh thumbnail and stale ones are simply never asked for again. `path_for()` is pure (no disk
access, safe anywhere); `get()` returns an existing thumbnail or builds it atomically.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from ldstudio.core.readers import UnreadableImage

THUMBNAIL_SIZE = 256
THUMBNAIL_SUFFIX = ".webp"


class ThumbnailCache:
    """Thumbnails of library images under one folder, sharded by id so no folder grows huge."""

    def __init__(self, folder: Path, size: int = THUMBNAIL_SIZE) -> None:
        if not 16 <= size <= 2048:
            raise ValueError(f"thumbnail size: {size} is out of range; allowed: 16 to 2048")
        self.folder = folder
        self.size = size

    def _shard(self, image_id: int) -> Path:
        return self.folder / f"{image_id % 256:02x}"

    def path_for(self, image_id: int, mtime_ns: int) -> Path:
        """Where the thumbnail of this image version lives (it may not exist yet)."""
        return self._shard(image_id) / f"{image_id}-{mtime_ns}-{self.size}{THUMBNAIL_SUFFIX}"

    def get(self, image_id: int, source: Path) -> Path:
        """The thumbnail of `source`, built now if missing. FileNotFoundError / UnreadableImage."""
        mtime_ns = source.stat().st_mtime_ns
        target = self.path_for(image_id, mtime_ns)
        if target.exists():
            return target
        thumbnail = make_thumbnail(source, self.size)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                thumbnail.save(handle, format="WEBP", quality=80, method=4)
            # No fsync: a thumbnail lost in a crash is rebuilt on demand.
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return target

    def discard(self, image_id: int) -> int:
        """Delete every cached thumbnail of an image (all versions and sizes); returns how many."""
        removed = 0
        shard = self._shard(image_id)
        if not shard.is_dir():
            return 0
        for path in shard.glob(f"{image_id}-*{THUMBNAIL_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed


def make_thumbnail(source: Path, size: int) -> Image.Image:
    """A decoded, orientation-corrected image no larger than size x size (RGB or RGBA)."""
    try:
        with Image.open(source) as image:
            # JPEG decoders can scale by 1/2..1/8 while decoding: far less work for big photos.
            image.draft("RGB", (size, size))
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail((size, size), Image.Resampling.LANCZOS)
            mode = "RGBA" if "A" in upright.getbands() or "transparency" in image.info else "RGB"
            return upright.convert(mode)
    except FileNotFoundError:
        raise
    except Exception as exc:  # Pillow raises a zoo (struct.error, zlib.error, bomb errors, ...)
        raise UnreadableImage(f"{source}: cannot make a thumbnail ({exc})") from None
