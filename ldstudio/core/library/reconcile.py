"""reconcile(): make the index agree with the files after a crash or outside changes."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ldstudio.core.library.entries import NewEntry, ReconcileReport
from ldstudio.core.library.files import (
    _from_stored,
    _is_empty,
    _is_image_or_temp_name,
    _move_file,
    _walk,
)
from ldstudio.core.library.grids import relink_grids
from ldstudio.core.library.layout import TEMP_SUFFIX
from ldstudio.core.readers import UnreadableImage

if TYPE_CHECKING:
    from ldstudio.core.library.store import LibraryStore

log = logging.getLogger(__name__)


def _is_leftover(store: LibraryStore, item: os.DirEntry[str]) -> bool:
    try:
        return item.stat().st_mtime < store._opened_at
    except FileNotFoundError:
        return False  # renamed into place (or removed) while we looked


def run_reconcile(store: LibraryStore) -> ReconcileReport:
    """Make the index agree with the files; see the package docstring. Worker thread."""
    started = time.perf_counter()
    report = ReconcileReport()
    _finish_moves(store, report)
    stale_sessions, live_others = store._session.others()
    # Another live process may be mid-write: its temp files are not leftovers.
    sweep_temp = live_others == 0
    conn = store._conn()
    indexed: dict[str, tuple[int, bool]] = {
        _from_stored(p): (int(i), bool(m))
        for i, p, m in conn.execute("SELECT id, path, missing FROM images")
    }
    on_disk: set[str] = set()
    prefix = str(store.root) + os.sep
    adopt: list[NewEntry] = []
    now = time.time()
    for folder, trashed in ((store.images_dir, None), (store.trash_dir, now)):
        # One walk per folder finds both images and temp files: this loop runs once per
        # library file, so it avoids Path objects and uses string slicing.
        for item in _walk(folder, _is_image_or_temp_name):
            if item.name.endswith(TEMP_SUFFIX):
                if sweep_temp and _is_leftover(store, item):
                    Path(item.path).unlink(missing_ok=True)
                    report.temp_files_removed.append(Path(item.path))
                continue
            stored = item.path[len(prefix) :].replace(os.sep, "/")
            on_disk.add(stored)
            if stored in indexed:
                continue
            if _is_empty(item):
                # A name claimed without hard links whose writer died before the rename
                # onto it: no image was ever in it, and no row names it.
                on_disk.discard(stored)
                if sweep_temp and _is_leftover(store, item):
                    Path(item.path).unlink(missing_ok=True)
                    report.temp_files_removed.append(Path(item.path))
                continue
            path = Path(item.path)
            try:
                adopt.append(NewEntry.from_file(path, trashed_at=trashed))
            except (UnreadableImage, OSError) as exc:
                log.warning("reconcile: %s is not a readable image (%s); left alone", path, exc)
                report.unreadable.append(path)
                continue
            report.adopted.append(path)
    refused: list[tuple[NewEntry, str]] = []
    adopted_ids = store.add_entries(adopt, failed=refused)
    for entry, why in refused:
        log.warning("reconcile: %s: %s; left alone", entry.path, why)
        report.adopted.remove(entry.path)
        report.unreadable.append(entry.path)
    if adopted_ids:
        # An adopted grid (its writer died before linking it, or the index was rebuilt)
        # gets its links back from its file; the warnings are logged there.
        relink_grids(store, adopted_ids)
    missing_now: list[int] = []
    back_now: list[int] = []
    for stored, (image_id, was_missing) in indexed.items():
        # Files indexed in place outside the library need a stat each; ours were listed.
        exists = stored in on_disk or (os.path.isabs(stored) and os.path.isfile(stored))
        if not exists and not was_missing:
            missing_now.append(image_id)
        elif exists and was_missing:
            back_now.append(image_id)
    if missing_now or back_now:
        with store._write() as conn:
            conn.executemany(
                "UPDATE images SET missing = 1 WHERE id = ?", [(i,) for i in missing_now]
            )
            conn.executemany("UPDATE images SET missing = 0 WHERE id = ?", [(i,) for i in back_now])
    report.flagged_missing = missing_now
    known = {image_id for image_id, _ in indexed.values()} | set(adopted_ids)
    for item in _walk(store.thumbnails.folder, lambda _name: True):
        if item.name.endswith(TEMP_SUFFIX):
            if sweep_temp and _is_leftover(store, item):
                Path(item.path).unlink(missing_ok=True)
                report.temp_files_removed.append(Path(item.path))
            continue
        head = item.name.split("-", 1)[0]
        if head.isdigit() and int(head) not in known:
            os.unlink(item.path)
            report.thumbnails_removed += 1
    report.found_again = back_now
    # Recovery is complete: the crashed sessions need no second look.
    for path in stale_sessions:
        path.unlink(missing_ok=True)
    report.seconds = time.perf_counter() - started
    if report.changed:
        log.info(
            "library reconciled: %d adopted, %d flagged missing, %d found again, "
            "%d moves finished, %d temp files removed",
            len(report.adopted),
            len(missing_now),
            len(back_now),
            len(report.moves_finished),
            len(report.temp_files_removed),
        )
    return report


def _finish_moves(store: LibraryStore, report: ReconcileReport) -> None:
    rows = (
        store._conn()
        .execute("SELECT id, path, moving_from FROM images WHERE moving_from IS NOT NULL")
        .fetchall()
    )
    for image_id, stored, moving_from in rows:
        target, source = store._abs(stored), store._abs(moving_from)
        if not target.exists() and source.exists():
            _move_file(source, target)
        with store._write() as conn:
            conn.execute(
                "UPDATE images SET moving_from = NULL, missing = ? WHERE id = ?",
                (0 if target.exists() else 1, image_id),
            )
        report.moves_finished.append(int(image_id))
