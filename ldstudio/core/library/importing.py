"""import_folder(): index a folder of images in place, or copy them into the library."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ldstudio.core.imagefiles import numbered
from ldstudio.core.library.entries import CopySource, ImportReport, NewEntry
from ldstudio.core.library.errors import LibraryError
from ldstudio.core.library.files import _blob_range, _copy_new, _from_stored, _path_range
from ldstudio.core.library.layout import _BATCH, IMAGE_SUFFIXES, OTHER_IMAGE_SUFFIXES
from ldstudio.core.readers import UnreadableImage, not_a_regular_file

if TYPE_CHECKING:
    from ldstudio.core.library.store import LibraryStore


def run_import(
    store: LibraryStore,
    folder: Path,
    *,
    copy: bool = False,
    recursive: bool = True,
    progress: Callable[[int, int], None] | None = None,
    progress_every: float = 0.5,
) -> ImportReport:
    """LibraryStore.import_folder(): see there."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise LibraryError(f"{folder}: not a folder; give a folder of images to import")
    if folder == store.root or store.root in folder.parents:
        raise LibraryError(f"{folder}: is inside the library already; use reconcile instead")
    report = ImportReport()
    # One range scan of an index each, not a query per file: folders hold 100,000 images.
    indexed_before = set() if copy else _paths_under(store, folder)
    copied_before = _copied_from(store, folder) if copy else set()
    pending: list[NewEntry] = []
    files = sorted(folder.rglob("*") if recursive else folder.iterdir())
    report_at = 0.0
    for done, path in enumerate(files):
        if progress is not None and time.monotonic() >= report_at:
            progress(done, len(files))
            report_at = time.monotonic() + progress_every
        suffix = path.suffix.lower()
        if (
            (suffix in IMAGE_SUFFIXES or suffix in OTHER_IMAGE_SUFFIXES)
            and not path.name.startswith(".")
            and not path.is_dir()
        ):
            # A FIFO would block the read for ever; a dangling link has nothing to read.
            why = not_a_regular_file(path)
            if why is not None:
                report.skipped.append((path, why))
                continue
        if suffix in OTHER_IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            # Named, not passed over in silence: the user may expect them imported.
            report.skipped.append(
                (
                    path,
                    f"{suffix[1:].upper()} is not imported; ldstudio keeps PNG, JPEG "
                    "and WebP images",
                )
            )
            continue
        if suffix not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.name.startswith("."):
            continue  # hidden and temp files of other tools
        if not copy and store._db_path(path) in indexed_before:
            report.already_in_library.append(path)
            continue
        try:
            stat = path.stat()
            source = CopySource(str(path), stat.st_size, stat.st_mtime_ns)
            if copy and source in copied_before:
                report.already_in_library.append(path)
                continue
            entry = NewEntry.from_file(path)
        except (UnreadableImage, OSError) as exc:
            report.skipped.append((path, str(exc)))
            continue
        if copy:
            month = datetime.fromtimestamp(entry.created).strftime("%Y-%m")
            try:
                target = _copy_new(path, numbered(store.images_dir / month / path.name))
            except OSError as exc:  # that file is listed; the copies made so far are indexed
                report.skipped.append((path, f"not copied into the library: {exc}"))
                continue
            entry = replace(
                entry, path=target, mtime_ns=target.stat().st_mtime_ns, copied_from=source
            )
        pending.append(entry)
        if len(pending) >= _BATCH:
            _add_imported(store, pending, report)
            pending = []
    _add_imported(store, pending, report)
    if progress is not None:
        progress(len(files), len(files))
    return report


def _paths_under(store: LibraryStore, folder: Path) -> set[str | bytes]:
    """The stored paths of the images indexed in place under `folder` (outside the library)."""
    rows = store._conn().execute(
        "SELECT path FROM images WHERE path >= ? AND path < ?"
        " OR path >= ? AND path < ?",  # the bytes of names that are not UTF-8 (BLOBs)
        [*_path_range(folder), *_blob_range(folder)],
    )
    return {r[0] for r in rows}


def _copied_from(store: LibraryStore, folder: Path) -> set[CopySource]:
    """The files under `folder` that copy-imports copied in."""
    rows = store._conn().execute(
        "SELECT copied_from, copied_from_size, copied_from_mtime_ns FROM images"
        " WHERE copied_from >= ? AND copied_from < ? OR copied_from >= ? AND copied_from < ?",
        [*_path_range(folder), *_blob_range(folder)],
    )
    return {CopySource(_from_stored(p), int(size), int(mtime_ns)) for p, size, mtime_ns in rows}


def _add_imported(store: LibraryStore, pending: list[NewEntry], report: ImportReport) -> None:
    failed: list[tuple[NewEntry, str]] = []
    report.added.extend(store.add_entries(pending, failed=failed))
    for entry, why in failed:
        if entry.copied_from is None:
            report.skipped.append((entry.path, why))
        else:
            entry.path.unlink(missing_ok=True)  # our copy: no row will ever name it
            report.skipped.append((Path(entry.copied_from.path), why))
