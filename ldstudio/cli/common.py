"""Exit codes, the bad-input error and the input checks shared by several CLI commands."""

from __future__ import annotations

import os
from pathlib import Path

from ldstudio.core.models import ModelFileError
from ldstudio.core.models.preflight import check_model

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
# What a shell reports for a process killed by SIGPIPE (128 + 13), e.g. `... | head -1`.
EXIT_BROKEN_PIPE = 141
# After a second Ctrl+C, how long the engine's worker may take to reach its next step before
# the process leaves it behind (see `abandon_engine`).
ABORT_GRACE_SECONDS = 1.0
_abandoned: list[bool] = []


def abandon_engine() -> None:
    """The engine's worker is still inside a step the user aborted: the process must end
    without waiting for it, and without finalising the interpreter under a thread that is
    running torch (that can abort the process instead of exiting 130)."""
    _abandoned.append(True)


def engine_abandoned() -> bool:
    return bool(_abandoned)


class BadInput(Exception):
    """A command-line value that is not allowed; the message says what and why (exit 2)."""


def checked_model(path: Path) -> str:
    """`path` checked the way the engine checks it before loading: its variant ("" for a
    diffusers folder), or BadInput naming what is wrong. Reads only headers and JSON."""
    try:
        return check_model(path)
    except (ModelFileError, ValueError) as exc:
        raise BadInput(str(exc)) from None


def make_folder(folder: Path, option: str) -> list[Path]:
    """Create `folder` (and its parents) now, so that a path that cannot hold files is bad
    input up front instead of a failure after minutes of loading and generating.

    Returns the folders it created, outermost first (see `remove_folders`).
    """
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"{option}: {folder} is a file; give a folder")
    created = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(
            f"{option}: cannot create the folder {folder}: {exc.strerror or exc}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"{option}: cannot write into {folder}: permission denied")
    return created


def remove_folders(created: list[Path]) -> None:
    """Undo `make_folder` for a run refused after all: only folders that are still empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return
