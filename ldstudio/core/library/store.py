"""LibraryStore: opening a library, its connections, saving, writes, and index-only reads."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from ldstudio.core.atomic import atomic_file, fsync_dir
from ldstudio.core.events import ImageRecord
from ldstudio.core.imagefiles import numbered, prompt_slug, write_png_new
from ldstudio.core.library import search
from ldstudio.core.library.blobs import BlobStore
from ldstudio.core.library.entries import (
    EntryInputs,
    ImportReport,
    LibraryEntry,
    LibraryFilter,
    NewEntry,
    ReconcileReport,
    request_json,
)
from ldstudio.core.library.errors import _ROW_ERRORS, IndexDamaged, LibraryError, is_damage
from ldstudio.core.library.files import _from_stored, _storable
from ldstudio.core.library.importing import run_import
from ldstudio.core.library.layout import _BATCH, DB_NAME, default_library_dir
from ldstudio.core.library.lock import _SessionLock
from ldstudio.core.library.reconcile import run_reconcile
from ldstudio.core.library.schema import (
    _FTS_SQL,
    ENTRY_COLUMNS,
    INSERT_ENTRY,
    NEW_ENTRY_COLUMNS,
    SELECT_ENTRY,
    fts5_available,
    migrate,
)
from ldstudio.core.library.trash import move_with_row, run_empty_trash, run_restore, run_trash
from ldstudio.core.metadata import SOURCE_NOT_RECORDED, png_text_chunks
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import KINDS_WITH_SOURCE, ROLE_IMAGE, ROLE_MASK, Request
from ldstudio.core.thumbnails import THUMBNAIL_SUFFIX, ThumbnailCache, make_thumbnail

log = logging.getLogger(__name__)

# From this many text matches on, paging walks the date index instead of sorting the matches
# (benchmarks/bench_library.py: sorting costs ~1.3 ms per 1,000 matches).
_DATE_SCAN_HITS = 5000


class LibraryStore:
    """The library: save (an `ImageSink`), query, tag, trash, import, reconcile, thumbnails."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        reconcile: bool | None = None,
        use_fts: bool | None = None,
        thumbnail_size: int = 256,
    ) -> None:
        """Open (creating if needed) the library at `root`.

        `reconcile`: None reconciles only after an unclean shutdown, True always, False never.
        `use_fts`: None uses FTS5 when SQLite has it (else LIKE search, with a warning).
        """
        self.root = (root if root is not None else default_library_dir()).expanduser().resolve()
        self.images_dir = self.root / "images"
        self.trash_dir = self.root / "trash"
        # Input images and masks of requests, by content hash (created on first use).
        self.blobs = BlobStore(self.root / "blobs")
        self.db_path = self.root / DB_NAME
        for folder in (self.root, self.images_dir, self.trash_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.thumbnails = ThumbnailCache(self.root / "thumbnails", thumbnail_size)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self.use_fts = False
        self.crashed_before = False
        self.last_reconcile: ReconcileReport | None = None
        # Temp files newer than this may be our own saves in flight (the engine thread writes
        # while a worker reconciles): only older ones can be leftovers of a killed process.
        self._opened_at = time.time()
        # Saves whose image file is written but whose row the index refused (damaged, locked):
        # (path, why). The files are complete; reconcile() or rebuild_index() indexes them.
        self.unindexed: list[tuple[Path, str]] = []
        self._session = _SessionLock(self.root / "sessions")
        try:
            self._open(use_fts)
            stale, _live = self._session.others()
            self.crashed_before = bool(stale)
            if reconcile or (reconcile is None and self.crashed_before):
                self.last_reconcile = self.reconcile()
        except sqlite3.DatabaseError as exc:
            self.close()
            if is_damage(exc):
                raise IndexDamaged(self.root, exc) from None
            raise
        except BaseException:
            self.close()
            raise

    def damage(self, exc: BaseException) -> IndexDamaged | None:
        """The clear error for `exc` when it says this library's index is damaged, else None."""
        if isinstance(exc, IndexDamaged):
            return exc
        return IndexDamaged(self.root, exc) if is_damage(exc) else None

    def _open(self, use_fts: bool | None) -> None:
        conn = self._conn()
        migrate(conn)
        available = fts5_available()
        if use_fts and not available:
            raise LibraryError("full-text search was requested but this SQLite lacks FTS5")
        self.use_fts = available if use_fts is None else use_fts
        if self.use_fts:
            self._ensure_fts(conn)
        elif not available:
            log.warning("SQLite has no FTS5: text search falls back to slower LIKE matching")

    # --- connections ------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise LibraryError(f"the library at {self.root} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write) so that a
            # writer takes the lock up front instead of failing on upgrade.
            conn = sqlite3.connect(
                self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a killed process loses nothing committed; a power cut may lose
            # the last commits but never corrupts, and reconcile() re-adopts their files.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _ensure_fts(self, conn: sqlite3.Connection) -> None:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'images_fts'"
        ).fetchone()
        if exists:
            return
        try:
            # executescript: the trigger bodies hold ';', so the script cannot be split.
            conn.executescript(f"BEGIN IMMEDIATE;\n{_FTS_SQL}\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every thread's connection and release the session (a clean shutdown)."""
        if self._closed:
            return
        self._closed = True
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._session.release()

    def __enter__(self) -> LibraryStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def revision(self) -> int:
        """A number that changes when the index changes (any connection, any process)."""
        conn = self._conn()
        data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        changes = int(conn.execute("SELECT total_changes()").fetchone()[0])
        return data_version * 1_000_003 + changes

    # --- paths ------------------------------------------------------------------------------------

    def _db_path(self, path: Path) -> str | bytes:
        """Paths inside the library are stored relative (the library can move), others absolute.

        See _storable for names that are not valid UTF-8.
        """
        absolute = path if path.is_absolute() else path.resolve()
        try:
            return _storable(absolute.relative_to(self.root).as_posix())
        except ValueError:
            return _storable(str(absolute))

    def _abs(self, stored: str | bytes) -> Path:
        return self.root / _from_stored(stored)  # joining an absolute path yields it unchanged

    # --- saving (ImageSink) -----------------------------------------------------------------------

    def _new_image_names(self, params: GenerationParams) -> Iterator[Path]:
        """Names for a new image; the first one free is claimed when the file is written."""
        now = datetime.now()
        folder = self.images_dir / now.strftime("%Y-%m")
        stem = f"{now.strftime('%Y%m%d-%H%M%S')}-{params.seed}-{prompt_slug(params.prompt)}"
        return numbered(folder / f"{stem}.png")

    def add_image(
        self,
        image: Image.Image,
        params: GenerationParams,
        *,
        model_name: str,
        device: str = "",
        dtype: str = "",
        seconds: float = 0.0,
        request: Request | None = None,
    ) -> LibraryEntry:
        """Write `image` as a PNG with metadata into the library and index it; the new entry.

        `request`: the job it came from (see `ImageSink`). IndexDamaged (naming the file, which
        is saved) when the index cannot record it.
        """
        entry = self._write_image(image, params, model_name, device, dtype, seconds, request)
        try:
            (image_id,) = self.add_entries([entry])
            return self.get(image_id)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            raise IndexDamaged(self.root, f"{exc}; {entry.path} was saved all the same") from None

    def _write_image(
        self,
        image: Image.Image,
        params: GenerationParams,
        model_name: str,
        device: str,
        dtype: str,
        seconds: float,
        request: Request | None = None,
    ) -> NewEntry:
        """The image file, complete and durable, and the row to add for it."""
        job = Request.txt2img(params) if request is None else replace(request, params=params)
        # Claimed atomically: another writer (a second `generate`, the window) saving the same
        # prompt and seed in the same second gets the next name, never this file.
        path = write_png_new(
            image, self._new_image_names(params), png_text_chunks(params, model_name, job)
        )
        fsync_dir(path.parent)  # the rename itself survives a power cut, not just a kill
        stat = path.stat()
        entry = NewEntry(
            path=path,
            created=time.time(),
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            model=model_name,
            seed=params.seed if isinstance(params.seed, int) else None,
            width=image.width,
            height=image.height,
            steps=params.steps,
            guidance_scale=params.guidance_scale,
            scheduler=params.scheduler,
            seconds=seconds,
            device=device,
            dtype=dtype,
            params_json=params.to_json(),
            face=job.face,
            request_json=request_json(job),
            source="ldstudio",
            mtime_ns=stat.st_mtime_ns,
            file_size=stat.st_size,
        )
        return entry

    def save(
        self,
        image: Image.Image,
        params: GenerationParams,
        *,
        index: int,
        model_name: str,
        device: str,
        dtype: str,
        seconds: float,
        request: Request | None = None,
    ) -> ImageRecord:
        """`ImageSink.save`: the engine's finished images go straight into the library.

        Saved means the file: an index that cannot take the row (damaged, locked for longer
        than the busy timeout) does not undo a complete image. The save is listed in
        `unindexed` with why, and reconcile() or rebuild_index() adds the file later.
        """
        entry = self._write_image(image, params, model_name, device, dtype, seconds, request)
        try:
            self.add_entries([entry])
        except sqlite3.Error as exc:
            damaged = self.damage(exc)
            why = str(damaged) if damaged else f"the library index could not record it ({exc})"
            log.warning("%s: saved, but not indexed: %s", entry.path, why)
            self.unindexed.append((entry.path, why))
        return ImageRecord(
            path=entry.path,
            params=params,
            seed=int(params.seed),
            index=index,
            width=image.width,
            height=image.height,
            model_name=model_name,
            device=device,
            dtype=dtype,
            seconds=seconds,
        )

    def add_entries(
        self, entries: Iterable[NewEntry], *, failed: list[tuple[NewEntry, str]] | None = None
    ) -> list[int]:
        """Index files already in place, in batches; a path already indexed is updated instead.

        The upsert matters when another process reconciled (adopted) our file between its
        rename and our commit: our row carries the exact parameters, so it wins.

        An entry SQLite refuses for its values (a file name that is not valid Unicode, say)
        rolls its whole batch back and raises; with `failed` given it is listed there with why
        instead, and the others still go in (so one odd file never stops a large import). The
        ids returned are those of the entries added.
        """
        ids: list[int] = []
        batch: list[NewEntry] = []
        for entry in entries:
            batch.append(entry)
            if len(batch) >= _BATCH:
                ids.extend(self._insert(batch, failed))
                batch = []
        if batch:
            ids.extend(self._insert(batch, failed))
        return ids

    def _insert(
        self, batch: Sequence[NewEntry], failed: list[tuple[NewEntry, str]] | None
    ) -> list[int]:
        ids: list[int] = []
        with self._write() as conn:
            for e in batch:
                try:
                    row = self._insert_one(conn, e)
                except _ROW_ERRORS as exc:
                    if failed is None:
                        raise
                    # The failed statement undid itself; the batch's transaction goes on.
                    failed.append((e, f"the library index cannot store it ({exc})"))
                    continue
                ids.append(row)
        return ids

    def _insert_one(self, conn: sqlite3.Connection, e: NewEntry) -> int:
        source = e.copied_from
        values = [
            self._db_path(e.path) if name == "path" else getattr(e, name)
            for name in NEW_ENTRY_COLUMNS
        ]
        copied = (_storable(source.path), source.size, source.mtime_ns) if source else (None,) * 3
        row = conn.execute(INSERT_ENTRY, (*values, *copied)).fetchone()
        return int(row[0])

    # --- queries ----------------------------------------------------------------------------------

    def _where(self, f: LibraryFilter, *, scan_by_date: bool = False) -> tuple[str, list[Any]]:
        return search.where(f, use_fts=self.use_fts, scan_by_date=scan_by_date)

    @staticmethod
    def _order(f: LibraryFilter) -> str:
        return search.order(f)

    def _text_hits(self, f: LibraryFilter) -> int | None:
        """Matches of the filter's words in the whole index (trash too); None without FTS."""
        query = search._fts_query(f.text) if self.use_fts else ""
        if not query:
            return None
        row = (
            self._conn()
            .execute("SELECT count(*) FROM images_fts WHERE images_fts MATCH ?", (query,))
            .fetchone()
        )
        return int(row[0])

    def _prefers_date_scan(self, f: LibraryFilter) -> bool:
        hits = self._text_hits(f)
        return hits is not None and hits >= _DATE_SCAN_HITS

    def count(self, f: LibraryFilter | None = None) -> int:
        """How many images match the filter (the virtual grid's row count)."""
        f = f or LibraryFilter()
        conn = self._conn()
        text_only = f == LibraryFilter(
            text=f.text, trashed=f.trashed, missing=True, newest_first=f.newest_first
        )
        if text_only and not f.trashed:
            hits = self._text_hits(f)
            if hits is not None and hits >= _DATE_SCAN_HITS:
                # FTS counts a common word at once; checking each match's trash state costs a
                # row lookup per match. Subtract the (few) trashed matches instead.
                where, args = self._where(replace(f, trashed=True), scan_by_date=True)
                trashed = conn.execute(f"SELECT count(*) FROM images WHERE {where}", args)
                return hits - int(trashed.fetchone()[0])
        where, args = self._where(f, scan_by_date=f.trashed and bool(f.text.strip()))
        return int(conn.execute(f"SELECT count(*) FROM images WHERE {where}", args).fetchone()[0])

    def page(
        self, f: LibraryFilter | None = None, offset: int = 0, limit: int = 100
    ) -> list[LibraryEntry]:
        """Entries `offset` .. `offset + limit` of the filter's sort order."""
        if offset < 0 or limit < 0:
            raise ValueError(f"page: offset {offset} and limit {limit} must not be negative")
        f = f or LibraryFilter()
        where, args = self._where(f, scan_by_date=self._prefers_date_scan(f))
        rows = (
            self._conn()
            .execute(
                f"SELECT {SELECT_ENTRY} FROM images WHERE {where} {self._order(f)}"
                " LIMIT ? OFFSET ?",
                [*args, limit, offset],
            )
            .fetchall()
        )
        return self._entries_from_rows(rows)

    def ids(self, f: LibraryFilter | None = None) -> list[int]:
        """Every matching id in sort order."""
        f = f or LibraryFilter()
        where, args = self._where(f, scan_by_date=self._prefers_date_scan(f))
        rows = self._conn().execute(f"SELECT id FROM images WHERE {where} {self._order(f)}", args)
        return [int(r[0]) for r in rows]

    def entries(self, ids: Sequence[int]) -> list[LibraryEntry]:
        """Entries for these ids, in the same order (ids no longer in the index are skipped)."""
        found: dict[int, LibraryEntry] = {}
        conn = self._conn()
        for start in range(0, len(ids), _BATCH):
            chunk = list(ids[start : start + _BATCH])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT {SELECT_ENTRY} FROM images WHERE id IN ({marks})", chunk)
            for entry in self._entries_from_rows(rows.fetchall()):
                found[entry.id] = entry
        return [found[i] for i in ids if i in found]

    def get(self, image_id: int) -> LibraryEntry:
        """One entry; LibraryError if no image has this id."""
        entries = self.entries([image_id])
        if not entries:
            raise LibraryError(f"image {image_id}: not in the library")
        return entries[0]

    def entry_for_path(self, path: Path) -> LibraryEntry | None:
        row = (
            self._conn()
            .execute(f"SELECT {SELECT_ENTRY} FROM images WHERE path = ?", (self._db_path(path),))
            .fetchone()
        )
        return self._entries_from_rows([row])[0] if row else None

    def models(self) -> list[tuple[str, int]]:
        """(model, image count) for the model filter, most used first (trash excluded)."""
        rows = self._conn().execute(
            "SELECT model, count(*) AS n FROM images WHERE trashed_at IS NULL AND model != ''"
            " GROUP BY model ORDER BY n DESC, model"
        )
        return [(str(m), int(n)) for m, n in rows]

    def all_tags(self) -> list[tuple[str, int]]:
        """(tag, image count) for the tag filter, alphabetical."""
        rows = self._conn().execute(
            "SELECT name, count(image_id) FROM tags LEFT JOIN image_tags ON tag_id = tags.id"
            " GROUP BY tags.id ORDER BY name COLLATE NOCASE"
        )
        return [(str(name), int(n)) for name, n in rows]

    def _entries_from_rows(self, rows: Sequence[Any]) -> list[LibraryEntry]:
        if not rows:
            return []
        tags: dict[int, list[str]] = {}
        ids = [int(r[0]) for r in rows]  # ENTRY_COLUMNS starts with id
        marks = ",".join("?" * len(ids))
        for image_id, name in self._conn().execute(
            "SELECT image_id, name FROM image_tags JOIN tags ON tags.id = tag_id"
            f" WHERE image_id IN ({marks}) ORDER BY name COLLATE NOCASE",
            ids,
        ):
            tags.setdefault(int(image_id), []).append(str(name))
        return [self._entry(row, tags) for row in rows]

    def _entry(self, row: Sequence[Any], tags: dict[int, list[str]]) -> LibraryEntry:
        values = dict(zip(ENTRY_COLUMNS, row, strict=True))
        image_id = int(values["id"])
        original = values["original_path"]
        values.update(
            id=image_id,
            path=self._abs(values["path"]),
            original_path=self._abs(original) if original else None,
            favourite=bool(values["favourite"]),
            missing=bool(values["missing"]),
            tags=tuple(tags.get(image_id, ())),
        )
        return LibraryEntry(**values)

    # --- favourites and tags ----------------------------------------------------------------------

    def set_favourite(self, image_id: int, favourite: bool) -> None:
        with self._write() as conn:
            done = conn.execute(
                "UPDATE images SET favourite = ? WHERE id = ?", (int(favourite), image_id)
            )
            if done.rowcount == 0:
                raise LibraryError(f"image {image_id}: not in the library")

    def set_favourites(self, ids: Sequence[int], favourite: bool) -> int:
        """Mark (or unmark) many images in one transaction; how many were in the library."""
        changed = 0
        with self._write() as conn:
            for start in range(0, len(ids), _BATCH):
                chunk = list(ids[start : start + _BATCH])
                marks = ",".join("?" * len(chunk))
                done = conn.execute(
                    f"UPDATE images SET favourite = ? WHERE id IN ({marks})",
                    [int(favourite), *chunk],
                )
                changed += done.rowcount
        return changed

    def add_tags(self, image_id: int, tags: Iterable[str]) -> None:
        names = [_check_tag(t) for t in tags]
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                raise LibraryError(f"image {image_id}: not in the library")
            for name in names:
                conn.execute("INSERT INTO tags (name) VALUES (?) ON CONFLICT DO NOTHING", (name,))
                conn.execute(
                    "INSERT OR IGNORE INTO image_tags (image_id, tag_id)"
                    " SELECT ?, id FROM tags WHERE name = ?",
                    (image_id, name),
                )

    def remove_tags(self, image_id: int, tags: Iterable[str]) -> None:
        with self._write() as conn:
            for name in tags:
                conn.execute(
                    "DELETE FROM image_tags WHERE image_id = ?"
                    " AND tag_id = (SELECT id FROM tags WHERE name = ?)",
                    (image_id, name),
                )
            # A tag nobody uses any more would linger in the filter list.
            conn.execute("DELETE FROM tags WHERE id NOT IN (SELECT tag_id FROM image_tags)")

    # --- trash (ldstudio.core.library.trash) ------------------------------------------------------

    def _is_outside(self, path: Path) -> bool:
        """Whether an image was indexed in place from elsewhere: then its file is the user's."""
        return not path.is_relative_to(self.root)

    def trash(self, ids: Iterable[int]) -> list[int]:
        """Move images to the library's trash (restorable until emptied); the ids trashed.

        An image indexed in place is only marked as trashed: its file stays where it is.
        """
        return run_trash(self, ids)

    def restore(self, ids: Iterable[int]) -> list[int]:
        """Put trashed images back where they were (a free name if that place is taken).

        LibraryError, changing nothing, if any of them has no file left to restore.
        """
        return run_restore(self, ids)

    def empty_trash(self) -> int:
        """Delete every trashed image for good (rows, files, thumbnails); how many.

        An image indexed in place only leaves the index: its file is never deleted.
        """
        return run_empty_trash(self)

    def _move(
        self, entry: LibraryEntry, target: Path, *, trashed_at: float | None, original: Path | None
    ) -> None:
        """Move an image file and its row together, crash-safe (see trash.move_with_row)."""
        move_with_row(self, entry, target, trashed_at=trashed_at, original=original)

    # --- what an image was made from (blobs) ------------------------------------------------------

    def inputs_of(self, entry: LibraryEntry) -> EntryInputs:
        """The request that made `entry` and the blob files of its source image and mask.

        For the details pane ("made from" with a thumbnail, see `blob_thumbnail`) and Reuse all
        (the request rebuilds the same job: its inputs are these blobs). Reads the index row
        and looks for the blob files; decodes nothing. An input whose blob is not in this
        library (an image copied in from elsewhere), or a request read from another tool's
        text (no source recorded), is named in `missing`.
        """
        request = entry.request
        if request is None or request.kind not in KINDS_WITH_SOURCE:
            return EntryInputs(request)
        found: dict[str, Path] = {}
        missing: list[str] = []
        if request.input(ROLE_IMAGE) is None:
            missing.append(SOURCE_NOT_RECORDED)
        for role, what in ((ROLE_IMAGE, "source image"), (ROLE_MASK, "mask")):
            digest = request.input(role)
            if digest is None:
                continue
            if digest in self.blobs:
                found[role] = self.blobs.path(digest)
            else:
                missing.append(
                    f"{what} (blob {digest[:12]}…): not in this library's blob store "
                    f"({self.blobs.root})"
                )
        return EntryInputs(request, found.get(ROLE_IMAGE), found.get(ROLE_MASK), tuple(missing))

    def blob_thumbnail(self, digest: str) -> Path:
        """A thumbnail of a blob (a source image or mask), built if missing; worker thread.

        KeyError when the blob is not stored, UnreadableImage when it is not an image. Blobs
        never change, so their thumbnails are keyed by hash alone.
        """
        source = self.blobs.path(digest)
        if not source.is_file():
            raise KeyError(f"blob {digest}: not in the library's blob store")
        size = self.thumbnails.size
        target = (
            self.thumbnails.folder / "blobs" / digest[:2] / f"{digest}-{size}{THUMBNAIL_SUFFIX}"
        )
        if not target.exists():
            thumbnail = make_thumbnail(source, size)
            with atomic_file(target, durable=False) as handle:  # rebuilt if lost
                thumbnail.save(handle, format="WEBP", quality=80, method=4)
        return target

    # --- thumbnails -------------------------------------------------------------------------------

    def thumbnail_path(self, entry: LibraryEntry) -> Path:
        """Where the entry's thumbnail is or will be; no disk access (safe on the GUI thread)."""
        return self.thumbnails.path_for(entry.id, entry.mtime_ns)

    def thumbnail(self, entry: LibraryEntry) -> Path:
        """The entry's thumbnail file, built if missing. FileNotFoundError / UnreadableImage."""
        return self.thumbnails.get(entry.id, entry.path)

    # --- import and reconcile (ldstudio.core.library.importing, .reconcile) -----------------------

    def import_folder(
        self,
        folder: Path,
        *,
        copy: bool = False,
        recursive: bool = True,
        progress: Callable[[int, int], None] | None = None,
        progress_every: float = 0.5,
    ) -> ImportReport:
        """Index every PNG/JPEG/WebP in `folder`, in place or copied into the library.

        Files stay untouched either way; unreadable files are listed in `skipped` with why.
        Files indexed before (in place), or copied before and unchanged since (same size and
        modification time), are listed in `already_in_library`. `progress(done, total)` says
        how far it got (total: every file found, images or not): at most once per
        `progress_every` seconds, and once at the end with done == total.
        """
        return run_import(
            self,
            folder,
            copy=copy,
            recursive=recursive,
            progress=progress,
            progress_every=progress_every,
        )

    def reconcile(self) -> ReconcileReport:
        """Make the index agree with the files; see the package docstring. Worker thread."""
        return run_reconcile(self)


def _check_tag(tag: str) -> str:
    name = tag.strip()
    if not name or len(name) > 100 or any(c in name for c in "\n\r\t"):
        raise LibraryError(f"tag {tag!r}: not allowed; a tag is 1 to 100 characters on one line")
    if "," in name:  # the app's tag fields split on commas: such a tag could never be typed
        raise LibraryError(f"tag {tag!r}: not allowed; a tag cannot contain a comma")
    return name
