"""Session files: one locked file per open store, so a crash is noticed on the next open."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import IO

from ldstudio.core.library.errors import LibraryError


class _SessionLock:
    """A locked file per open store; a stale one (unlocked, still present) means a crash.

    flock / msvcrt locks die with their process, so a killed process's file stays behind
    unlocked: the next opener sees that the previous session did not close cleanly.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{uuid.uuid4().hex}.lock"
        self.handle: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 - held while open
        self.handle.write(f"{os.getpid()}\n".encode())
        self.handle.flush()
        if not _try_lock(self.handle):
            raise LibraryError(f"{self.path}: cannot lock this session's file")

    def others(self) -> tuple[list[Path], int]:
        """(stale session files, number of live sessions) among the other session files.

        Stale files are left in place: reconcile() removes them once it has succeeded, so a
        recovery that fails is tried again on the next open.
        """
        stale: list[Path] = []
        live = 0
        for path in self.folder.glob("*.lock"):
            if path == self.path:
                continue
            try:
                handle = open(path, "r+b")  # noqa: SIM115 - closed below on every path
            except FileNotFoundError:
                continue  # closed cleanly meanwhile
            except OSError:
                live += 1  # Windows refuses to open a file another process holds
                continue
            try:
                if _try_lock(handle):
                    _unlock(handle)
                    stale.append(path)
                else:
                    live += 1
            finally:
                handle.close()
        return stale, live

    def release(self) -> None:
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            _unlock(self.handle)
        self.handle.close()
        self.handle = None
        self.path.unlink(missing_ok=True)


if sys.platform == "win32":
    import msvcrt

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
