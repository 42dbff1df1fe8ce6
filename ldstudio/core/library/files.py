"""File helpers: how paths are stored, walking folders, crash-safe copy and move, fsync."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ldstudio.core.atomic import write_new_file
from ldstudio.core.library.layout import IMAGE_SUFFIXES, TEMP_SUFFIX


def _storable(path: str) -> str | bytes:
    """A path as the index stores it: TEXT, or its bytes (a BLOB) when it is not valid UTF-8.

    POSIX file names are bytes; Python holds one that is not UTF-8 with surrogate escapes,
    which SQLite's TEXT cannot take. The bytes name exactly that file, and os.fsdecode turns
    them back into the same Path (see _from_stored).
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _from_stored(stored: str | bytes) -> str:
    return os.fsdecode(stored) if isinstance(stored, bytes) else stored


def _path_range(folder: Path) -> tuple[str, str]:
    """Bounds that every absolute path under `folder`, and no other, sorts between.

    The folder's path with a separator, and the same with that separator bumped by one
    character: an index on a path column answers the range at once.
    """
    prefix = os.path.join(str(folder), "")
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _blob_range(folder: Path) -> tuple[bytes, bytes]:
    """_path_range for paths stored as bytes (BLOBs sort apart from TEXT in SQLite)."""
    low, high = _path_range(folder)
    return os.fsencode(low), os.fsencode(high)


def _is_image_or_temp_name(name: str) -> bool:
    if name.endswith(TEMP_SUFFIX):
        return True
    return not name.startswith(".") and name[name.rfind(".") :].lower() in IMAGE_SUFFIXES


def _is_empty(item: os.DirEntry[str]) -> bool:
    try:
        return item.stat().st_size == 0
    except FileNotFoundError:
        return False


def _walk(folder: Path, wanted: Callable[[str], bool]) -> Iterator[os.DirEntry[str]]:
    """Files under `folder` whose name passes `wanted`.

    os.scandir with DirEntry (file type from the directory listing, no stat, no Path objects)
    keeps a walk over 100,000 library files well under a second.
    """
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for item in it:
                    if item.is_dir(follow_symlinks=False):
                        stack.append(item.path)
                    elif wanted(item.name) and item.is_file(follow_symlinks=False):
                        yield item
        except FileNotFoundError:
            continue


def _copy_file(source: Path, target: Path) -> None:
    """Copy so that `target` is absent or complete: temp file beside it, fsync, rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem[:40]}.", suffix=TEMP_SUFFIX, dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(source, tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _copy_new(source: Path, names: Iterable[Path]) -> Path:
    """Copy `source` under the first of `names` nobody has (claimed atomically); that name."""
    with open(source, "rb") as src:
        return write_new_file(
            names,
            lambda out: shutil.copyfileobj(src, out, 1 << 20),
            finish=lambda tmp: shutil.copystat(source, tmp),
        )


def _move_file(source: Path, target: Path) -> None:
    """Rename; across file systems copy completely first, then remove the source."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:
        _copy_file(source, target)
        source.unlink()
