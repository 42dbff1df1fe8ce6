"""Atomic file writes: the target is absent, the old file, or the complete new one, never partial.

`tempfile.mkstemp` creates its file with mode 0600, and `os.replace` keeps that mode: images
written that way could not be read by other users or a web server, whatever the umask said.
Files meant to be shared get the mode an ordinary `open()` would give (0666 minus the umask).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
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

    `durable` fsyncs before the rename (a crash leaves the old file or the new, not an empty
    one); `private` keeps mkstemp's 0600 (settings), otherwise the file gets the umask's mode.
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
