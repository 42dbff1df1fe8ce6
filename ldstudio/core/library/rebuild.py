"""rebuild_index(): a new index from the image files, carrying over what the old one still reads."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ldstudio.core.imagefiles import free_name
from ldstudio.core.library.entries import CopySource, LibraryFilter, NewEntry, RebuildReport
from ldstudio.core.library.errors import LibraryError
from ldstudio.core.library.files import _from_stored, _storable
from ldstudio.core.library.grids import relink_grids
from ldstudio.core.library.layout import DB_NAME
from ldstudio.core.library.lock import _SessionLock
from ldstudio.core.library.store import LibraryStore
from ldstudio.core.readers import UnreadableImage


@dataclass(frozen=True)
class _OldRow:
    """What only the index knew about one image, read back from a damaged index."""

    stored: str | bytes
    favourite: bool
    created: float | None
    trashed_at: float | None
    original_path: str | bytes | None
    copied_from: CopySource | None
    tags: tuple[str, ...]


def rebuild_index(root: Path) -> RebuildReport:
    """Build a new index for the library at `root` from its image files.

    For a damaged index (IndexDamaged), but safe on any: the old file (with its -wal/-shm) is
    renamed to `library.sqlite3.bad-<date>`, never deleted. What the files carry (parameters,
    sizes) comes from the files; what only the index held (favourites, tags, creation and
    trash dates, where a trashed image came from, images indexed in place outside the
    library) is copied over from the old index as far as it still reads. LibraryError if
    another ldstudio has the library open (the window, a running command).
    """
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise LibraryError(f"{root}: no library folder there; nothing to rebuild")
    db_path = root / DB_NAME
    guard = _SessionLock(root / "sessions")
    try:
        _stale, live = guard.others()
        if live:
            raise LibraryError(
                f"{root}: the library is open in another ldstudio ({live} window(s) or "
                "command(s)); close them, then rebuild"
            )
        old, salvage_error = _salvage(db_path)
        damaged_copy: Path | None = None
        if db_path.exists():
            damaged_copy = free_name(
                db_path.with_name(f"{DB_NAME}.bad-{datetime.now():%Y%m%d-%H%M%S}")
            )
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{db_path}{suffix}")
                if source.exists():
                    os.replace(source, f"{damaged_copy}{suffix}")
        # Thumbnails are named by row id, and the new rows get new ids.
        shutil.rmtree(root / "thumbnails", ignore_errors=True)
    finally:
        guard.release()  # before the new store's reconcile: it sweeps temp files only when alone
    with LibraryStore(root, reconcile=True) as store:
        # That reconcile adopted every file in the library and relinked its grids to their
        # cells from the grid files (relink_grids); _carry_over relinks those outside it.
        assert store.last_reconcile is not None
        unreadable = list(store.last_reconcile.unreadable)
        recovered = _carry_over(store, old, unreadable)
        images = store.count() + store.count(LibraryFilter(trashed=True))
    return RebuildReport(damaged_copy, images, recovered, unreadable, salvage_error)


def _carry_over(store: LibraryStore, old: Sequence[_OldRow], unreadable: list[Path]) -> int:
    """rebuild_index(): put back what only the old index knew; how many rows it reached."""
    # Images indexed in place live outside the library: only the old index named them.
    outside: list[NewEntry] = []
    for row in old:
        path = store._abs(row.stored)
        if not store._is_outside(path) or not path.is_file():
            continue
        try:
            outside.append(NewEntry.from_file(path, trashed_at=row.trashed_at))
        except (UnreadableImage, OSError):
            unreadable.append(path)
    refused: list[tuple[NewEntry, str]] = []
    outside_ids = store.add_entries(outside, failed=refused)
    unreadable.extend(entry.path for entry, _why in refused)
    if outside_ids:
        relink_grids(store, outside_ids)
    recovered = 0
    with store._write() as conn:
        for row in old:
            source = row.copied_from
            done = conn.execute(
                # SET expressions see the row as it was: trashed_at is the new row's.
                "UPDATE images SET favourite = ?, created = COALESCE(?, created),"
                " trashed_at = CASE WHEN trashed_at IS NULL THEN NULL"
                "  ELSE COALESCE(?, trashed_at) END,"
                " original_path = CASE WHEN trashed_at IS NULL THEN NULL ELSE ? END,"
                " copied_from = ?, copied_from_size = ?, copied_from_mtime_ns = ?"
                " WHERE path = ? RETURNING id",
                (
                    int(row.favourite),
                    row.created,
                    row.trashed_at,
                    row.original_path,
                    _storable(source.path) if source else None,
                    source.size if source else None,
                    source.mtime_ns if source else None,
                    row.stored,
                ),
            ).fetchone()
            if done is None:
                continue  # its file is gone: nothing to carry over to
            recovered += 1
            for name in row.tags:
                conn.execute("INSERT INTO tags (name) VALUES (?) ON CONFLICT DO NOTHING", (name,))
                conn.execute(
                    "INSERT OR IGNORE INTO image_tags (image_id, tag_id)"
                    " SELECT ?, id FROM tags WHERE name = ?",
                    (int(done[0]), name),
                )
    return recovered


def _salvage(db_path: Path) -> tuple[list[_OldRow], str | None]:
    """Every row of the old index that still reads (a damaged page ends the scan there)."""
    if not db_path.exists():
        return [], None
    rows: list[dict[str, Any]] = []
    tags: dict[int, list[str]] = {}
    error: str | None = None
    try:
        with contextlib.closing(
            sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, isolation_level=None)
        ) as conn:
            cursor = conn.execute("SELECT * FROM images")
            names = [d[0] for d in cursor.description]
            for values in cursor:
                rows.append(dict(zip(names, values, strict=True)))
            for image_id, name in conn.execute(
                "SELECT image_id, name FROM image_tags JOIN tags ON tags.id = tag_id"
            ):
                tags.setdefault(int(image_id), []).append(str(name))
    except sqlite3.Error as exc:
        error = str(exc)
    old = []
    for row in rows:
        source = row.get("copied_from")
        old.append(
            _OldRow(
                stored=row["path"],
                favourite=bool(row.get("favourite")),
                created=row.get("created"),
                trashed_at=row.get("trashed_at"),
                original_path=row.get("original_path"),
                copied_from=CopySource(
                    _from_stored(source),
                    int(row.get("copied_from_size") or 0),
                    int(row.get("copied_from_mtime_ns") or 0),
                )
                if source
                else None,
                tags=tuple(tags.get(int(row["id"]), ())),
            )
        )
    return old, error
