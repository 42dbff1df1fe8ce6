"""Atomic file writes: the target is absent, the old file, or the complete new one, never partial.

`tempfile.mkstemp` creates its file with mode 0600, and `os.replace` keeps that mode: images
written that way could not be read by other users or a web server, whatever the umask said.
Files meant to be shared get the mode an ordinary `open()` would give (0666 minus the umask).
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _umask() -> int:
    try:  # Linux ≥ 4.7 says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


SHARED_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_file(
    target: Path, *, durable: bool = True, private: bool = False
) -> Iterator[IO[bytes]]:
    """Write `target` through a hidden temp file beside it, renamed into place on success.

    `durable` fsyncs the file before the rename (a crash leaves the old file or the new, not an
    empty one) and the folder after it (the rename itself survives a power cut); `private`
    keeps mkstemp's 0600 (settings), otherwise the file gets the umask's mode.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem[:40]}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if not private:
            os.chmod(tmp_name, SHARED_FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def fsync_dir(folder: Path) -> None:
    """Make the renames and links just done in `folder` durable (POSIX)."""
    if sys.platform == "win32":
        return  # Windows cannot open a directory for fsync; NTFS journals the rename
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(
    candidates: Iterable[Path],
    write: Callable[[IO[bytes]], None],
    *,
    durable: bool = True,
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Write a file under the first of `candidates` that nobody has; returns that name.

    Several writers (threads, processes: two `generate` runs, the window and the CLI) may pick
    the same name in the same second; a name is therefore claimed atomically, never checked
    first and written later. The bytes go into a hidden temp file beside the names once
    (fsynced when `durable`), which is then hard-linked to a candidate: the link fails when the
    name exists, so no file is ever replaced, and the name appears complete or not at all.
    Where hard links are not available the name is claimed with O_CREAT | O_EXCL and the temp
    file renamed onto it (a name this writer owns): a crash in between leaves an empty file,
    which the library's reconcile removes. FileExistsError when every candidate is taken.
    Every candidate must be in the same folder. `finish(temp path)` runs before the claim (a
    copy's timestamps: set before the name is visible, never after).
    """
    names = iter(candidates)
    first = next(names, None)
    if first is None:
        raise ValueError("write_new_file: no candidate name given")
    folder = first.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{first.stem[:40]}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, SHARED_FILE_MODE)
        if finish is not None:
            finish(tmp)
        for candidate in itertools.chain((first,), names):
            if candidate.parent != folder:
                raise ValueError(f"write_new_file: {candidate} is not in {folder}")
            try:
                _claim(tmp, candidate)
            except FileExistsError:
                continue
            return candidate
        raise FileExistsError(f"{folder}: every name tried for {first.name} is taken")
    finally:
        tmp.unlink(missing_ok=True)  # after a link: the claimed name keeps the data


def _claim(tmp: Path, candidate: Path) -> None:
    """Give `tmp`'s complete content the name `candidate`; FileExistsError if it is taken."""
    try:
        os.link(tmp, candidate)
        return
    except FileExistsError:
        raise
    except OSError:
        # No hard links here (FAT and exFAT — EINVAL on Windows —, some network shares): claim
        # with O_EXCL instead, as atomic; a real fault (no space, no access) surfaces below.
        pass
    fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, SHARED_FILE_MODE)
    os.close(fd)
    try:
        os.replace(tmp, candidate)
    except BaseException:
        candidate.unlink(missing_ok=True)  # still the empty file this writer created
        raise
