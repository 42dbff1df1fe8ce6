"""Converting pixels to QImage and loading thumbnails; any thread (QImage only, never QPixmap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

THUMBNAIL_SIZE = 160


def array_to_qimage(rgb: np.ndarray) -> QImage:
    """An HxWx3 uint8 array as a QImage that owns its pixels (the array may be freed after)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 array, got shape {rgb.shape} {rgb.dtype}")
    data = np.ascontiguousarray(rgb)
    height, width = data.shape[:2]
    image = QImage(data.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()


def pil_to_qimage(image: Image.Image) -> QImage:
    return array_to_qimage(np.asarray(image.convert("RGB")))


def load_qimage(path: Path) -> QImage:
    """The full image at `path`; raises OSError when unreadable."""
    with Image.open(path) as image:
        return pil_to_qimage(image)


def load_thumbnail(path: Path, size: int = THUMBNAIL_SIZE) -> QImage:
    """A thumbnail no larger than size×size; small images are upscaled smoothly to `size`."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    scale = size / max(image.width, image.height)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # Bicubic for upscaling tiny model outputs, Lanczos (antialiased) for shrinking.
    method = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS
    return pil_to_qimage(image.resize(target, method))
