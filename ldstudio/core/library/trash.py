"""Trash: moving images to the trash and back, and emptying it; file and row move together."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ldstudio.core.imagefiles import free_name
from ldstudio.core.library.entries import LibraryEntry
from ldstudio.core.library.errors import LibraryError
from ldstudio.core.library.files import _move_file

if TYPE_CHECKING:
    from ldstudio.core.library.store import LibraryStore


def run_trash(store: LibraryStore, ids: Iterable[int]) -> list[int]:
    """LibraryStore.trash(): see there."""
    done: list[int] = []
    for image_id in ids:
        entry = store.get(image_id)
        if entry.trashed_at is not None:
            continue
        if store._is_outside(entry.path):
            _set_trashed(store, entry.id, time.time())
        else:
            target = free_name(store.trash_dir / f"{entry.id}-{entry.path.name}")
            move_with_row(store, entry, target, trashed_at=time.time(), original=entry.path)
        done.append(entry.id)
    return done


def run_restore(store: LibraryStore, ids: Iterable[int]) -> list[int]:
    """LibraryStore.restore(): see there."""
    entries = [entry for entry in map(store.get, ids) if entry.trashed_at is not None]
    gone = [entry for entry in entries if not entry.path.is_file()]
    if gone:
        first = gone[0]
        where = "has gone" if store._is_outside(first.path) else "is missing from the trash"
        more = f" (and {len(gone) - 1} other image(s) likewise)" if len(gone) > 1 else ""
        raise LibraryError(
            f"image {first.id}: its file {where} ({first.path}); nothing to restore{more}"
        )
    for entry in entries:
        if store._is_outside(entry.path):
            _set_trashed(store, entry.id, None)
            continue
        home = entry.original_path or store.images_dir / entry.path.name.split("-", 1)[-1]
        move_with_row(store, entry, free_name(home), trashed_at=None, original=None)
    return [entry.id for entry in entries]


def _set_trashed(store: LibraryStore, image_id: int, trashed_at: float | None) -> None:
    with store._write() as conn:
        conn.execute("UPDATE images SET trashed_at = ? WHERE id = ?", (trashed_at, image_id))


def move_with_row(
    store: LibraryStore,
    entry: LibraryEntry,
    target: Path,
    *,
    trashed_at: float | None,
    original: Path | None,
) -> None:
    """Move an image file and its row together, crash-safe.

    The row first records the new place plus `moving_from`; then the file moves; then the
    mark is cleared. A crash between the steps leaves the mark, and reconcile() finishes
    the move (or undoes it if the file never left).
    """
    source = entry.path
    with store._write() as conn:
        conn.execute(
            "UPDATE images SET path = ?, moving_from = ?, trashed_at = ?, original_path = ?"
            " WHERE id = ?",
            (
                store._db_path(target),
                store._db_path(source),
                trashed_at,
                store._db_path(original) if original else None,
                entry.id,
            ),
        )
    if source.exists():
        _move_file(source, target)
        missing = 0
    else:
        missing = 1
    with store._write() as conn:
        conn.execute(
            "UPDATE images SET moving_from = NULL, missing = ? WHERE id = ?",
            (missing, entry.id),
        )


def run_empty_trash(store: LibraryStore) -> int:
    """LibraryStore.empty_trash(): see there."""
    conn = store._conn()
    rows = conn.execute(
        "SELECT id, path, original_path FROM images WHERE trashed_at IS NOT NULL"
    ).fetchall()
    if not rows:
        return 0
    for _image_id, stored, original in rows:
        # Earlier versions moved images indexed in place into the trash as well: those files
        # are the user's, so they go back to their folder, not away. This happens before the
        # rows go: a crash leaves at worst a row whose file reconcile() flags missing.
        path = store._abs(stored)
        if (
            original
            and store._is_outside(store._abs(original))
            and path.is_relative_to(store.trash_dir)
            and path.is_file()
        ):
            _move_file(path, free_name(store._abs(original)))
    # Rows go first: a crash before the unlinks leaves files in trash/ that reconcile()
    # adopts back into the trash, never a row naming a deleted file.
    with store._write() as conn:
        conn.executemany("DELETE FROM images WHERE id = ?", [(r[0],) for r in rows])
    for image_id, stored, _original in rows:
        path = store._abs(stored)
        # Only files inside the trash are deleted; an image indexed in place only leaves the
        # index, its file stays where it is.
        if path.is_relative_to(store.trash_dir):
            path.unlink(missing_ok=True)
        store.thumbnails.discard(int(image_id))
    return len(rows)
