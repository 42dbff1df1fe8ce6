"""The library folder's layout: file names and suffixes, batch size, the default folder."""

from __future__ import annotations

from pathlib import Path

from ldstudio.core import paths

DB_NAME = "library.sqlite3"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
# Other pictures an output folder may hold: an import lists them as skipped (captions, JSON
# and other non-images are passed over quietly).
OTHER_IMAGE_SUFFIXES = frozenset({".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".jxl"})
TEMP_SUFFIX = ".tmp"
_BATCH = 500


def default_library_dir() -> Path:
    """The library folder used unless the user configures another one."""
    return paths.home_dir() / "library"
