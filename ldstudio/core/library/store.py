"""The gallery library: image files plus an SQLite index (WAL, FTS5); any thread, see below.

Layout of a library folder (default `paths.home_dir() / "library"`):

    library.sqlite3        the index (WAL mode; -wal/-shm beside it while open)
    images/YYYY-MM/        images ldstudio generated (or imported with copy=True)
    trash/                 deleted images, restorable until the trash is emptied
    thumbnails/xx/         cached thumbnails (see ldstudio.core.thumbnails)
    sessions/              one locked file per process that has the library open

Images imported in place stay where they are, outside the library: those files are the user's,
so deleting one only marks its row as trashed, and emptying the trash drops the row and never
the file. Only files inside the library are moved into trash/ and deleted from there.

Files are the source of truth; the index can always be rebuilt from them. Every write keeps
this order: the image file is complete (temp file, fsync, rename) before the row that names it
commits, so a process killed at any moment leaves at worst an orphan file, never a row that
points to nothing. `reconcile()` adopts orphans (reading their metadata with
`ldstudio.core.readers`), flags rows whose file vanished, finishes interrupted trash/restore
moves and removes leftover temp files. It runs automatically on open when the previous session
ended without `close()` (its session file is no longer locked), and can be run at any time.

New file names are claimed atomically (`atomic.write_new_file`), so several writers (two
processes saving the same prompt and seed in the same second) never replace each other's
images. A damaged index file raises `IndexDamaged`, which names the way out:
`rebuild_index()` keeps the damaged file aside and indexes every image from its file.

Threads: every public method may be called from any thread. Each thread gets its own SQLite
connection (created on first use, closed by `close()`); SQLite serialises writers
(`busy_timeout`), WAL lets readers run beside a writer. Methods that touch image files or decode
images (`save`, `import_folder`, `reconcile`, `trash`, `restore`, `empty_trash`, `thumbnail`)
take milliseconds to minutes and belong on a worker thread; `count`, `page`, `ids`, `entries`
and `get` are index-only queries (a few ms on 100,000 images, see benchmarks/bench_gallery.py)
but still do disk I/O, so a GUI should run them off its thread too (e.g. `run_in_executor`).

Virtual grid protocol: `count(f)` gives the row count for filter `f`; `page(f, offset, limit)`
returns `GalleryEntry` rows in sort order (newest first by default); `ids(f)` returns all ids
in order at once (cheap: 100,000 ints) for views that prefer to page by id with `entries()`.
`thumbnail_path(entry)` is pure (no disk access); `thumbnail(entry)` builds it if missing.
`revision()` changes whenever any connection (any process) commits, so a view can poll it to
know when to refresh its counts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from PIL import Image

from ldstudio.core import paths
from ldstudio.core.atomic import write_new_file
from ldstudio.core.events import ImageRecord
from ldstudio.core.imagefiles import free_name, numbered, prompt_slug, write_png_new
from ldstudio.core.metadata import png_text_chunks
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import ReadResult, UnreadableImage, not_a_regular_file, read_file
from ldstudio.core.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
DB_NAME = "library.sqlite3"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
# Other pictures an output folder may hold: an import lists them as skipped (captions, JSON
# and other non-images are passed over quietly).
OTHER_IMAGE_SUFFIXES = frozenset({".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".jxl"})
TEMP_SUFFIX = ".tmp"
_BATCH = 500
# From this many text matches on, paging walks the date index instead of sorting the matches
# (benchmarks/bench_gallery.py: sorting costs ~1.3 ms per 1,000 matches).
_DATE_SCAN_HITS = 5000

# Each entry migrates the schema from version i to i + 1. Never edit a released entry: add one.
# The full-text index is derived data and managed apart (see _ensure_fts), so a platform whose
# SQLite lacks FTS5 still opens every schema version.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the first index: one row per image.
    """
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        params_json TEXT,
        prompt TEXT NOT NULL DEFAULT '',
        negative_prompt TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        seed INTEGER,
        width INTEGER,
        height INTEGER,
        seconds REAL,
        created REAL NOT NULL,
        favourite INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX images_created ON images(created, id);
    """,
    # 1 -> 2: tags, trash, missing-file flags, the tool that made an image, file facts.
    """
    ALTER TABLE images ADD COLUMN source TEXT NOT NULL DEFAULT 'ldstudio';
    ALTER TABLE images ADD COLUMN extra_json TEXT;
    ALTER TABLE images ADD COLUMN steps INTEGER;
    ALTER TABLE images ADD COLUMN guidance_scale REAL;
    ALTER TABLE images ADD COLUMN scheduler TEXT NOT NULL DEFAULT '';
    ALTER TABLE images ADD COLUMN device TEXT NOT NULL DEFAULT '';
    ALTER TABLE images ADD COLUMN dtype TEXT NOT NULL DEFAULT '';
    ALTER TABLE images ADD COLUMN mtime_ns INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE images ADD COLUMN file_size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE images ADD COLUMN trashed_at REAL;
    ALTER TABLE images ADD COLUMN original_path TEXT;
    ALTER TABLE images ADD COLUMN moving_from TEXT;
    ALTER TABLE images ADD COLUMN missing INTEGER NOT NULL DEFAULT 0;
    UPDATE images SET scheduler = COALESCE(json_extract(params_json, '$.scheduler'), ''),
                      steps = json_extract(params_json, '$.steps'),
                      guidance_scale = json_extract(params_json, '$.guidance_scale')
                  WHERE json_valid(params_json);
    CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE);
    CREATE TABLE image_tags (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
        PRIMARY KEY (image_id, tag_id)
    ) WITHOUT ROWID;
    CREATE INDEX image_tags_by_tag ON image_tags(tag_id, image_id);
    DROP INDEX images_created;
    CREATE INDEX images_live_by_date ON images(created, id) WHERE trashed_at IS NULL;
    CREATE INDEX images_trash_by_date ON images(trashed_at, id) WHERE trashed_at IS NOT NULL;
    CREATE INDEX images_by_model ON images(model, created, id) WHERE trashed_at IS NULL;
    CREATE INDEX images_favourites ON images(created, id)
        WHERE favourite = 1 AND trashed_at IS NULL;
    CREATE INDEX images_moving ON images(id) WHERE moving_from IS NOT NULL;
    """,
    # 2 -> 3: the file a copy-import copied, as it was then, so importing again skips it.
    """
    ALTER TABLE images ADD COLUMN copied_from TEXT;
    ALTER TABLE images ADD COLUMN copied_from_size INTEGER;
    ALTER TABLE images ADD COLUMN copied_from_mtime_ns INTEGER;
    CREATE INDEX images_copied_from ON images(copied_from) WHERE copied_from IS NOT NULL;
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION

_FTS_SQL = """
CREATE VIRTUAL TABLE images_fts USING fts5(
    prompt, content='images', content_rowid='id', tokenize='unicode61 remove_diacritics 2',
    prefix='2 3'
);
CREATE TRIGGER images_fts_insert AFTER INSERT ON images BEGIN
    INSERT INTO images_fts(rowid, prompt) VALUES (new.id, new.prompt);
END;
CREATE TRIGGER images_fts_delete AFTER DELETE ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, prompt) VALUES ('delete', old.id, old.prompt);
END;
CREATE TRIGGER images_fts_update AFTER UPDATE OF prompt ON images BEGIN
    INSERT INTO images_fts(images_fts, rowid, prompt) VALUES ('delete', old.id, old.prompt);
    INSERT INTO images_fts(rowid, prompt) VALUES (new.id, new.prompt);
END;
INSERT INTO images_fts(images_fts) VALUES ('rebuild');
"""

# SQLite's INTEGER is signed 64-bit; other tools write bigger numbers (ComfyUI seeds reach
# 2**64 - 1).
_SQLITE_INTEGERS = range(-(2**63), 2**63)
# Errors SQLite (or the binding) raises for one row's values, not for the database's state:
# a file name that is not valid Unicode, a number no column type holds, a value far too big.
_ROW_ERRORS = (ValueError, OverflowError, sqlite3.DataError, sqlite3.IntegrityError)

_COLUMNS = (
    "id, path, params_json, prompt, negative_prompt, model, seed, width, height, seconds, "
    "created, favourite, source, extra_json, steps, guidance_scale, scheduler, device, dtype, "
    "mtime_ns, file_size, trashed_at, original_path, missing"
)


class GalleryError(Exception):
    """A library operation that cannot be done; the message says which image and why."""


# SQLite's primary result codes for a damaged database file (truncated, overwritten, garbage).
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def is_damage(exc: BaseException) -> bool:
    """Whether an exception says the index file itself is damaged (not locked, not full)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


class IndexDamaged(GalleryError):
    """The library's index file is damaged; the image files are not, and rebuild it from them."""

    def __init__(self, root: Path, cause: BaseException | str) -> None:
        self.root = root
        self.db_path = root / DB_NAME
        super().__init__(
            f"the library index {self.db_path} is damaged ({cause}). The images are safe: "
            f"rebuild the index from them with `ldstudio gallery --library "
            f"{shlex.quote(str(root))} rebuild` (close ldstudio's window first). The damaged "
            f"file is kept as {DB_NAME}.bad-<date>; what only it held (favourites, tags, images "
            "indexed in place elsewhere) is lost where it no longer reads"
        )


def default_library_dir() -> Path:
    """The library folder used unless the user configures another one."""
    return paths.home_dir() / "library"


def fts5_available() -> bool:
    """Whether this Python's SQLite was built with the FTS5 full-text extension."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as conn:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    return True


@dataclass(frozen=True)
class GalleryFilter:
    """What a gallery view shows. Empty fields filter nothing.

    `text`: prompt words (each word matches as a prefix, all must match). `tags`: images carrying
    all of them. `since`/`until`: creation time in Unix seconds, since <= created < until.
    `trashed`: the trash instead of the library. `missing`: include rows whose file is gone.
    """

    text: str = ""
    model: str = ""
    favourites: bool = False
    tags: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    trashed: bool = False
    missing: bool = True
    newest_first: bool = True


@dataclass(frozen=True)
class GalleryEntry:
    """One image in the library, as the index records it."""

    id: int
    path: Path
    prompt: str
    negative_prompt: str
    model: str
    seed: int | None
    width: int | None
    height: int | None
    steps: int | None
    guidance_scale: float | None
    scheduler: str
    seconds: float | None
    device: str
    dtype: str
    created: float
    favourite: bool
    source: str
    mtime_ns: int
    file_size: int
    trashed_at: float | None
    original_path: Path | None
    missing: bool
    params_json: str | None = field(default=None, repr=False)
    extra_json: str | None = field(default=None, repr=False)
    tags: tuple[str, ...] = ()

    @property
    def params(self) -> GenerationParams | None:
        """The exact parameters (ldstudio images, or other tools' when they map fully)."""
        if self.params_json is None:
            return None
        try:
            return GenerationParams.from_json(self.params_json)
        except ValueError:
            return None

    @property
    def extra(self) -> dict[str, Any]:
        """Values the source tool wrote that have no GenerationParams field."""
        if not self.extra_json:
            return {}
        data = json.loads(self.extra_json)
        return data if isinstance(data, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "model": self.model,
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "scheduler": self.scheduler,
            "seconds": self.seconds,
            "created": datetime.fromtimestamp(self.created).isoformat(timespec="seconds"),
            "favourite": self.favourite,
            "tags": list(self.tags),
            "source": self.source,
            "trashed": self.trashed_at is not None,
            "missing": self.missing,
            "params": self.params.to_dict() if self.params else None,
        }


@dataclass(frozen=True)
class CopySource:
    """The file a copy-import copied into the library, as it was when copied."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class NewEntry:
    """A row to add for a file that is already in place (imports, adoption, benchmarks)."""

    path: Path
    created: float
    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str = ""
    seconds: float | None = None
    device: str = ""
    dtype: str = ""
    params_json: str | None = None
    extra_json: str | None = None
    source: str = "ldstudio"
    mtime_ns: int = 0
    file_size: int = 0
    trashed_at: float | None = None
    copied_from: CopySource | None = None

    @classmethod
    def from_file(cls, path: Path, *, trashed_at: float | None = None) -> NewEntry:
        """Describe an image file from its metadata. FileNotFoundError / UnreadableImage."""
        result = read_file(path)
        stat = path.stat()
        with Image.open(path) as image:
            width, height = image.size
        return cls.from_read(
            path, result, created=stat.st_mtime, width=width, height=height, stat=stat
        )._with_trash(trashed_at)

    @classmethod
    def from_read(
        cls,
        path: Path,
        result: ReadResult,
        *,
        created: float,
        width: int,
        height: int,
        stat: os.stat_result,
    ) -> NewEntry:
        fields = result.fields
        extra = dict(result.extra)
        extra.pop("prompt_graph", None)  # ComfyUI graphs stay in the file; the index needs none
        extra.pop("workflow", None)
        if result.warnings:  # what the reader left out (metadata too large, ...): kept in view
            extra["metadata_warnings"] = "\n".join(result.warnings)
        # An integer too big for its column leaves it empty; `extra` keeps the exact value.
        seed = _column_int("seed", fields.get("seed"), extra)
        steps = _column_int("steps", fields.get("steps"), extra)
        return cls(
            path=path,
            created=created,
            prompt=str(fields.get("prompt", "")),
            negative_prompt=str(fields.get("negative_prompt", "")),
            model=str(result.extra.get("model_name") or fields.get("model", "")),
            seed=seed,
            width=width,
            height=height,
            steps=steps,
            guidance_scale=_float_or_none(fields.get("guidance_scale")),
            scheduler=str(fields.get("scheduler", "")),
            params_json=result.params.to_json() if result.params else None,
            extra_json=json.dumps(extra, ensure_ascii=False, default=str) if extra else None,
            source=result.source,
            mtime_ns=stat.st_mtime_ns,
            file_size=stat.st_size,
        )

    def _with_trash(self, trashed_at: float | None) -> NewEntry:
        if trashed_at is None:
            return self
        return NewEntry(**{**self.__dict__, "trashed_at": trashed_at})


def _column_int(name: str, value: Any, extra: dict[str, Any]) -> int | None:
    """`value` if an INTEGER column holds it; a bigger integer goes to `extra` instead.

    The index so keeps the exact value where `gallery show` and the details view read it,
    while the column (sorting, filtering) stays empty.
    """
    if not isinstance(value, int):
        return None
    if value in _SQLITE_INTEGERS:
        return value
    extra.setdefault(name, value)
    return None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class ReconcileReport:
    """What reconcile() changed."""

    adopted: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)  # or refused by the index; left alone
    flagged_missing: list[int] = field(default_factory=list)
    found_again: list[int] = field(default_factory=list)
    moves_finished: list[int] = field(default_factory=list)
    temp_files_removed: list[Path] = field(default_factory=list)
    thumbnails_removed: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.adopted
            or self.flagged_missing
            or self.found_again
            or self.moves_finished
            or self.temp_files_removed
        )


@dataclass
class ImportReport:
    """What import_folder() did."""

    added: list[int] = field(default_factory=list)
    already_in_library: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


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
            raise GalleryError(f"{self.path}: cannot lock this session's file")

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


def _fts_query(text: str) -> str:
    """User words -> an FTS5 query: every word must match. No FTS syntax leaks through.

    Words of two or more characters match as prefixes ("drag" finds "dragon"); a single
    character matches only itself, since as a prefix it would match most of the library.
    """
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(f'"{word}"*' if len(word) > 1 else f'"{word}"' for word in words)


def _symbol_chunks(text: str, *, words_found: bool) -> list[str]:
    """Runs of non-word characters a search must still find: emoji and other symbols ("🦊",
    "★"). Beside words, plain ASCII punctuation is ignored, as a search engine would; alone
    (`"`, `:)`), the whole text is looked for as typed.
    """
    chunks = re.findall(r"[^\w\s]+", text, flags=re.UNICODE)
    if not words_found:
        return [text.strip()] if text.strip() else []
    return [chunk for chunk in chunks if not chunk.isascii()]


def _like_pattern(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema up to `target`; returns the version it started from.

    Each step runs in one transaction with its version bump, so a crash mid-migration leaves
    the previous version intact.
    """
    if not 0 <= target <= SCHEMA_VERSION:
        raise ValueError(
            f"schema version: {target} is out of range; allowed: 0 to {SCHEMA_VERSION}"
        )
    start = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if start > SCHEMA_VERSION:
        raise GalleryError(
            f"the library index has schema version {start}, newer than this ldstudio "
            f"understands ({SCHEMA_VERSION}); update ldstudio to open it"
        )
    for version in range(start, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("library index migrated to schema version %d", version + 1)
    return start


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (it holds no ';' inside strings or triggers)."""
    return [s.strip() for s in script.split(";") if s.strip()]


class GalleryStore:
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
            raise GalleryError("full-text search was requested but this SQLite lacks FTS5")
        self.use_fts = available if use_fts is None else use_fts
        if self.use_fts:
            self._ensure_fts(conn)
        elif not available:
            log.warning("SQLite has no FTS5: text search falls back to slower LIKE matching")

    # --- connections --------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise GalleryError(f"the library at {self.root} is closed")
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

    def __enter__(self) -> GalleryStore:
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

    # --- paths --------------------------------------------------------------------------------

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

    # --- saving (ImageSink) -------------------------------------------------------------------

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
    ) -> GalleryEntry:
        """Write `image` as a PNG with metadata into the library and index it; the new entry.

        IndexDamaged (naming the file, which is saved) when the index cannot record it.
        """
        entry = self._write_image(image, params, model_name, device, dtype, seconds)
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
    ) -> NewEntry:
        """The image file, complete and durable, and the row to add for it."""
        # Claimed atomically: another writer (a second `generate`, the window) saving the same
        # prompt and seed in the same second gets the next name, never this file.
        path = write_png_new(
            image, self._new_image_names(params), png_text_chunks(params, model_name)
        )
        _fsync_dir(path.parent)  # the rename itself survives a power cut, not just a kill
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
    ) -> ImageRecord:
        """`ImageSink.save`: the engine's finished images go straight into the library.

        Saved means the file: an index that cannot take the row (damaged, locked for longer
        than the busy timeout) does not undo a complete image. The save is listed in
        `unindexed` with why, and reconcile() or rebuild_index() adds the file later.
        """
        entry = self._write_image(image, params, model_name, device, dtype, seconds)
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
        row = conn.execute(
            "INSERT INTO images (path, params_json, prompt, negative_prompt, model, seed,"
            " width, height, seconds, created, source, extra_json, steps, guidance_scale,"
            " scheduler, device, dtype, mtime_ns, file_size, trashed_at, copied_from,"
            " copied_from_size, copied_from_mtime_ns)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(path) DO UPDATE SET params_json = excluded.params_json,"
            " prompt = excluded.prompt, negative_prompt = excluded.negative_prompt,"
            " model = excluded.model, seed = excluded.seed, seconds = excluded.seconds,"
            " source = excluded.source, extra_json = excluded.extra_json,"
            " steps = excluded.steps, guidance_scale = excluded.guidance_scale,"
            " scheduler = excluded.scheduler, device = excluded.device,"
            " dtype = excluded.dtype, mtime_ns = excluded.mtime_ns,"
            " file_size = excluded.file_size, missing = 0,"
            # An adoption racing a copy-import knows nothing of the copy's source: keep it.
            " copied_from = COALESCE(excluded.copied_from, copied_from),"
            " copied_from_size = COALESCE(excluded.copied_from_size, copied_from_size),"
            " copied_from_mtime_ns = COALESCE(excluded.copied_from_mtime_ns, copied_from_mtime_ns)"
            " RETURNING id",
            (
                self._db_path(e.path),
                e.params_json,
                e.prompt,
                e.negative_prompt,
                e.model,
                e.seed,
                e.width,
                e.height,
                e.seconds,
                e.created,
                e.source,
                e.extra_json,
                e.steps,
                e.guidance_scale,
                e.scheduler,
                e.device,
                e.dtype,
                e.mtime_ns,
                e.file_size,
                e.trashed_at,
                _storable(source.path) if source else None,
                source.size if source else None,
                source.mtime_ns if source else None,
            ),
        ).fetchone()
        return int(row[0])

    # --- queries ------------------------------------------------------------------------------

    def _where(self, f: GalleryFilter, *, scan_by_date: bool = False) -> tuple[str, list[Any]]:
        """SQL condition and arguments for a filter.

        `scan_by_date` writes the text match as `+id IN (...)`, which stops SQLite from
        fetching every match by rowid and sorting them: it walks the date index instead and
        probes the match set, which is far cheaper when a word matches a large part of the
        library (see _prefers_date_scan).
        """
        clauses = ["trashed_at IS NOT NULL" if f.trashed else "trashed_at IS NULL"]
        args: list[Any] = []
        if f.text.strip():
            if self.use_fts:
                query = _fts_query(f.text)
                if query:
                    column = "+id" if scan_by_date else "id"
                    clauses.append(
                        f"{column} IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)"
                    )
                    args.append(query)
                # The tokenizer drops emoji and other symbols: those match as substrings.
                for chunk in _symbol_chunks(f.text, words_found=bool(query)):
                    clauses.append("prompt LIKE ? ESCAPE '\\'")
                    args.append(_like_pattern(chunk))
            else:
                words = re.findall(r"\w+", f.text, flags=re.UNICODE)
                for word in [*words, *_symbol_chunks(f.text, words_found=bool(words))]:
                    clauses.append("prompt LIKE ? ESCAPE '\\'")
                    args.append(_like_pattern(word))
        if f.model:
            clauses.append("model = ?")
            args.append(f.model)
        if f.favourites:
            clauses.append("favourite = 1")
        for tag in f.tags:
            clauses.append(
                "id IN (SELECT image_id FROM image_tags JOIN tags ON tags.id = tag_id"
                " WHERE tags.name = ?)"
            )
            args.append(tag)
        if f.since is not None:
            clauses.append("created >= ?")
            args.append(f.since)
        if f.until is not None:
            clauses.append("created < ?")
            args.append(f.until)
        if not f.missing:
            clauses.append("missing = 0")
        return " AND ".join(clauses), args

    @staticmethod
    def _order(f: GalleryFilter) -> str:
        column = "trashed_at" if f.trashed else "created"
        direction = "DESC" if f.newest_first else "ASC"
        return f"ORDER BY {column} {direction}, id {direction}"

    def _text_hits(self, f: GalleryFilter) -> int | None:
        """Matches of the filter's words in the whole index (trash too); None without FTS."""
        query = _fts_query(f.text) if self.use_fts else ""
        if not query:
            return None
        row = (
            self._conn()
            .execute("SELECT count(*) FROM images_fts WHERE images_fts MATCH ?", (query,))
            .fetchone()
        )
        return int(row[0])

    def _prefers_date_scan(self, f: GalleryFilter) -> bool:
        hits = self._text_hits(f)
        return hits is not None and hits >= _DATE_SCAN_HITS

    def count(self, f: GalleryFilter | None = None) -> int:
        """How many images match the filter (the virtual grid's row count)."""
        f = f or GalleryFilter()
        conn = self._conn()
        text_only = f == GalleryFilter(
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
        self, f: GalleryFilter | None = None, offset: int = 0, limit: int = 100
    ) -> list[GalleryEntry]:
        """Entries `offset` .. `offset + limit` of the filter's sort order."""
        if offset < 0 or limit < 0:
            raise ValueError(f"page: offset {offset} and limit {limit} must not be negative")
        f = f or GalleryFilter()
        where, args = self._where(f, scan_by_date=self._prefers_date_scan(f))
        rows = (
            self._conn()
            .execute(
                f"SELECT {_COLUMNS} FROM images WHERE {where} {self._order(f)} LIMIT ? OFFSET ?",
                [*args, limit, offset],
            )
            .fetchall()
        )
        return self._entries_from_rows(rows)

    def ids(self, f: GalleryFilter | None = None) -> list[int]:
        """Every matching id in sort order."""
        f = f or GalleryFilter()
        where, args = self._where(f, scan_by_date=self._prefers_date_scan(f))
        rows = self._conn().execute(f"SELECT id FROM images WHERE {where} {self._order(f)}", args)
        return [int(r[0]) for r in rows]

    def entries(self, ids: Sequence[int]) -> list[GalleryEntry]:
        """Entries for these ids, in the same order (ids no longer in the index are skipped)."""
        found: dict[int, GalleryEntry] = {}
        conn = self._conn()
        for start in range(0, len(ids), _BATCH):
            chunk = list(ids[start : start + _BATCH])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT {_COLUMNS} FROM images WHERE id IN ({marks})", chunk)
            for entry in self._entries_from_rows(rows.fetchall()):
                found[entry.id] = entry
        return [found[i] for i in ids if i in found]

    def get(self, image_id: int) -> GalleryEntry:
        """One entry; GalleryError if no image has this id."""
        entries = self.entries([image_id])
        if not entries:
            raise GalleryError(f"image {image_id}: not in the library")
        return entries[0]

    def entry_for_path(self, path: Path) -> GalleryEntry | None:
        row = (
            self._conn()
            .execute(f"SELECT {_COLUMNS} FROM images WHERE path = ?", (self._db_path(path),))
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

    def _entries_from_rows(self, rows: Sequence[Any]) -> list[GalleryEntry]:
        if not rows:
            return []
        tags: dict[int, list[str]] = {}
        ids = [int(r[0]) for r in rows]
        marks = ",".join("?" * len(ids))
        for image_id, name in self._conn().execute(
            "SELECT image_id, name FROM image_tags JOIN tags ON tags.id = tag_id"
            f" WHERE image_id IN ({marks}) ORDER BY name COLLATE NOCASE",
            ids,
        ):
            tags.setdefault(int(image_id), []).append(str(name))
        return [
            GalleryEntry(
                id=int(r[0]),
                path=self._abs(r[1]),
                params_json=r[2],
                prompt=r[3],
                negative_prompt=r[4],
                model=r[5],
                seed=r[6],
                width=r[7],
                height=r[8],
                seconds=r[9],
                created=r[10],
                favourite=bool(r[11]),
                source=r[12],
                extra_json=r[13],
                steps=r[14],
                guidance_scale=r[15],
                scheduler=r[16],
                device=r[17],
                dtype=r[18],
                mtime_ns=r[19],
                file_size=r[20],
                trashed_at=r[21],
                original_path=self._abs(r[22]) if r[22] else None,
                missing=bool(r[23]),
                tags=tuple(tags.get(int(r[0]), ())),
            )
            for r in rows
        ]

    # --- favourites and tags ------------------------------------------------------------------

    def set_favourite(self, image_id: int, favourite: bool) -> None:
        with self._write() as conn:
            done = conn.execute(
                "UPDATE images SET favourite = ? WHERE id = ?", (int(favourite), image_id)
            )
            if done.rowcount == 0:
                raise GalleryError(f"image {image_id}: not in the library")

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
                raise GalleryError(f"image {image_id}: not in the library")
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

    # --- trash --------------------------------------------------------------------------------

    def _is_outside(self, path: Path) -> bool:
        """Whether an image was indexed in place from elsewhere: then its file is the user's."""
        return not path.is_relative_to(self.root)

    def trash(self, ids: Iterable[int]) -> list[int]:
        """Move images to the library's trash (restorable until emptied); the ids trashed.

        An image indexed in place is only marked as trashed: its file stays where it is.
        """
        done: list[int] = []
        for image_id in ids:
            entry = self.get(image_id)
            if entry.trashed_at is not None:
                continue
            if self._is_outside(entry.path):
                self._set_trashed(entry.id, time.time())
            else:
                target = free_name(self.trash_dir / f"{entry.id}-{entry.path.name}")
                self._move(entry, target, trashed_at=time.time(), original=entry.path)
            done.append(entry.id)
        return done

    def restore(self, ids: Iterable[int]) -> list[int]:
        """Put trashed images back where they were (a free name if that place is taken).

        GalleryError, changing nothing, if any of them has no file left to restore.
        """
        entries = [entry for entry in map(self.get, ids) if entry.trashed_at is not None]
        gone = [entry for entry in entries if not entry.path.is_file()]
        if gone:
            first = gone[0]
            where = "has gone" if self._is_outside(first.path) else "is missing from the trash"
            more = f" (and {len(gone) - 1} other image(s) likewise)" if len(gone) > 1 else ""
            raise GalleryError(
                f"image {first.id}: its file {where} ({first.path}); nothing to restore{more}"
            )
        for entry in entries:
            if self._is_outside(entry.path):
                self._set_trashed(entry.id, None)
                continue
            home = entry.original_path or self.images_dir / entry.path.name.split("-", 1)[-1]
            self._move(entry, free_name(home), trashed_at=None, original=None)
        return [entry.id for entry in entries]

    def _set_trashed(self, image_id: int, trashed_at: float | None) -> None:
        with self._write() as conn:
            conn.execute("UPDATE images SET trashed_at = ? WHERE id = ?", (trashed_at, image_id))

    def _move(
        self, entry: GalleryEntry, target: Path, *, trashed_at: float | None, original: Path | None
    ) -> None:
        """Move an image file and its row together, crash-safe.

        The row first records the new place plus `moving_from`; then the file moves; then the
        mark is cleared. A crash between the steps leaves the mark, and reconcile() finishes
        the move (or undoes it if the file never left).
        """
        source = entry.path
        with self._write() as conn:
            conn.execute(
                "UPDATE images SET path = ?, moving_from = ?, trashed_at = ?, original_path = ?"
                " WHERE id = ?",
                (
                    self._db_path(target),
                    self._db_path(source),
                    trashed_at,
                    self._db_path(original) if original else None,
                    entry.id,
                ),
            )
        if source.exists():
            _move_file(source, target)
            missing = 0
        else:
            missing = 1
        with self._write() as conn:
            conn.execute(
                "UPDATE images SET moving_from = NULL, missing = ? WHERE id = ?",
                (missing, entry.id),
            )

    def empty_trash(self) -> int:
        """Delete every trashed image for good (rows, files, thumbnails); how many.

        An image indexed in place only leaves the index: its file is never deleted.
        """
        conn = self._conn()
        rows = conn.execute(
            "SELECT id, path, original_path FROM images WHERE trashed_at IS NOT NULL"
        ).fetchall()
        if not rows:
            return 0
        for _image_id, stored, original in rows:
            # Earlier versions moved images indexed in place into the trash as well: those files
            # are the user's, so they go back to their folder, not away. This happens before the
            # rows go: a crash leaves at worst a row whose file reconcile() flags missing.
            path = self._abs(stored)
            if (
                original
                and self._is_outside(self._abs(original))
                and path.is_relative_to(self.trash_dir)
                and path.is_file()
            ):
                _move_file(path, free_name(self._abs(original)))
        # Rows go first: a crash before the unlinks leaves files in trash/ that reconcile()
        # adopts back into the trash, never a row naming a deleted file.
        with self._write() as conn:
            conn.executemany("DELETE FROM images WHERE id = ?", [(r[0],) for r in rows])
        for image_id, stored, _original in rows:
            path = self._abs(stored)
            # Only files inside the trash are deleted; an image indexed in place only leaves the
            # index, its file stays where it is.
            if path.is_relative_to(self.trash_dir):
                path.unlink(missing_ok=True)
            self.thumbnails.discard(int(image_id))
        return len(rows)

    # --- thumbnails ---------------------------------------------------------------------------

    def thumbnail_path(self, entry: GalleryEntry) -> Path:
        """Where the entry's thumbnail is or will be; no disk access (safe on the GUI thread)."""
        return self.thumbnails.path_for(entry.id, entry.mtime_ns)

    def thumbnail(self, entry: GalleryEntry) -> Path:
        """The entry's thumbnail file, built if missing. FileNotFoundError / UnreadableImage."""
        return self.thumbnails.get(entry.id, entry.path)

    # --- import -------------------------------------------------------------------------------

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
        folder = folder.expanduser().resolve()
        if not folder.is_dir():
            raise GalleryError(f"{folder}: not a folder; give a folder of images to import")
        if folder == self.root or self.root in folder.parents:
            raise GalleryError(f"{folder}: is inside the library already; use reconcile instead")
        report = ImportReport()
        # One range scan of an index each, not a query per file: folders hold 100,000 images.
        indexed_before = set() if copy else self._paths_under(folder)
        copied_before = self._copied_from(folder) if copy else set()
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
            if not copy and self._db_path(path) in indexed_before:
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
                target = _copy_new(path, numbered(self.images_dir / month / path.name))
                entry = replace(
                    entry, path=target, mtime_ns=target.stat().st_mtime_ns, copied_from=source
                )
            pending.append(entry)
            if len(pending) >= _BATCH:
                self._add_imported(pending, report)
                pending = []
        self._add_imported(pending, report)
        if progress is not None:
            progress(len(files), len(files))
        return report

    def _paths_under(self, folder: Path) -> set[str | bytes]:
        """The stored paths of the images indexed in place under `folder` (outside the library)."""
        rows = self._conn().execute(
            "SELECT path FROM images WHERE path >= ? AND path < ?"
            " OR path >= ? AND path < ?",  # the bytes of names that are not UTF-8 (BLOBs)
            [*_path_range(folder), *_blob_range(folder)],
        )
        return {r[0] for r in rows}

    def _copied_from(self, folder: Path) -> set[CopySource]:
        """The files under `folder` that copy-imports copied in."""
        rows = self._conn().execute(
            "SELECT copied_from, copied_from_size, copied_from_mtime_ns FROM images"
            " WHERE copied_from >= ? AND copied_from < ? OR copied_from >= ? AND copied_from < ?",
            [*_path_range(folder), *_blob_range(folder)],
        )
        return {CopySource(_from_stored(p), int(size), int(mtime_ns)) for p, size, mtime_ns in rows}

    def _add_imported(self, pending: list[NewEntry], report: ImportReport) -> None:
        failed: list[tuple[NewEntry, str]] = []
        report.added.extend(self.add_entries(pending, failed=failed))
        for entry, why in failed:
            if entry.copied_from is None:
                report.skipped.append((entry.path, why))
            else:
                entry.path.unlink(missing_ok=True)  # our copy: no row will ever name it
                report.skipped.append((Path(entry.copied_from.path), why))

    # --- reconcile ----------------------------------------------------------------------------

    def _is_leftover(self, item: os.DirEntry[str]) -> bool:
        try:
            return item.stat().st_mtime < self._opened_at
        except FileNotFoundError:
            return False  # renamed into place (or removed) while we looked

    def reconcile(self) -> ReconcileReport:
        """Make the index agree with the files; see the module docstring. Worker thread."""
        started = time.perf_counter()
        report = ReconcileReport()
        self._finish_moves(report)
        stale_sessions, live_others = self._session.others()
        # Another live process may be mid-write: its temp files are not leftovers.
        sweep_temp = live_others == 0
        conn = self._conn()
        indexed: dict[str, tuple[int, bool]] = {
            _from_stored(p): (int(i), bool(m))
            for i, p, m in conn.execute("SELECT id, path, missing FROM images")
        }
        on_disk: set[str] = set()
        prefix = str(self.root) + os.sep
        adopt: list[NewEntry] = []
        now = time.time()
        for folder, trashed in ((self.images_dir, None), (self.trash_dir, now)):
            # One walk per folder finds both images and temp files: this loop runs once per
            # library file, so it avoids Path objects and uses string slicing.
            for item in _walk(folder, _is_image_or_temp_name):
                if item.name.endswith(TEMP_SUFFIX):
                    if sweep_temp and self._is_leftover(item):
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
                    if sweep_temp and self._is_leftover(item):
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
        adopted_ids = self.add_entries(adopt, failed=refused)
        for entry, why in refused:
            log.warning("reconcile: %s: %s; left alone", entry.path, why)
            report.adopted.remove(entry.path)
            report.unreadable.append(entry.path)
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
            with self._write() as conn:
                conn.executemany(
                    "UPDATE images SET missing = 1 WHERE id = ?", [(i,) for i in missing_now]
                )
                conn.executemany(
                    "UPDATE images SET missing = 0 WHERE id = ?", [(i,) for i in back_now]
                )
        report.flagged_missing = missing_now
        known = {image_id for image_id, _ in indexed.values()} | set(adopted_ids)
        for item in _walk(self.thumbnails.folder, lambda _name: True):
            if item.name.endswith(TEMP_SUFFIX):
                if sweep_temp and self._is_leftover(item):
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

    def _finish_moves(self, report: ReconcileReport) -> None:
        rows = (
            self._conn()
            .execute("SELECT id, path, moving_from FROM images WHERE moving_from IS NOT NULL")
            .fetchall()
        )
        for image_id, stored, moving_from in rows:
            target, source = self._abs(stored), self._abs(moving_from)
            if not target.exists() and source.exists():
                _move_file(source, target)
            with self._write() as conn:
                conn.execute(
                    "UPDATE images SET moving_from = NULL, missing = ? WHERE id = ?",
                    (0 if target.exists() else 1, image_id),
                )
            report.moves_finished.append(int(image_id))

    def _carry_over(self, old: Sequence[_OldRow], unreadable: list[Path]) -> int:
        """rebuild_index(): put back what only the old index knew; how many rows it reached."""
        # Images indexed in place live outside the library: only the old index named them.
        outside: list[NewEntry] = []
        for row in old:
            path = self._abs(row.stored)
            if not self._is_outside(path) or not path.is_file():
                continue
            try:
                outside.append(NewEntry.from_file(path, trashed_at=row.trashed_at))
            except (UnreadableImage, OSError):
                unreadable.append(path)
        refused: list[tuple[NewEntry, str]] = []
        self.add_entries(outside, failed=refused)
        unreadable.extend(entry.path for entry, _why in refused)
        recovered = 0
        with self._write() as conn:
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
                    conn.execute(
                        "INSERT INTO tags (name) VALUES (?) ON CONFLICT DO NOTHING", (name,)
                    )
                    conn.execute(
                        "INSERT OR IGNORE INTO image_tags (image_id, tag_id)"
                        " SELECT ?, id FROM tags WHERE name = ?",
                        (int(done[0]), name),
                    )
        return recovered


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


def _check_tag(tag: str) -> str:
    name = tag.strip()
    if not name or len(name) > 100 or any(c in name for c in "\n\r\t"):
        raise GalleryError(f"tag {tag!r}: not allowed; a tag is 1 to 100 characters on one line")
    if "," in name:  # the app's tag fields split on commas: such a tag could never be typed
        raise GalleryError(f"tag {tag!r}: not allowed; a tag cannot contain a comma")
    return name


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


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":
        return  # Windows cannot open a directory for fsync; NTFS journals the rename
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        target = write_new_file(names, lambda out: shutil.copyfileobj(src, out, 1 << 20))
    shutil.copystat(source, target)
    return target


def _move_file(source: Path, target: Path) -> None:
    """Rename; across file systems copy completely first, then remove the source."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:
        _copy_file(source, target)
        source.unlink()


@dataclass
class RebuildReport:
    """What rebuild_index() did."""

    damaged_copy: Path | None  # where the old index file was kept (None: there was none)
    images: int  # rows in the new index
    recovered: int  # of them, rows whose favourite, tags and dates came from the old index
    unreadable: list[Path] = field(default_factory=list)  # image files not indexed, left alone
    salvage_error: str | None = None  # why the old index could not be read to the end


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
    library) is copied over from the old index as far as it still reads. GalleryError if
    another ldstudio has the library open (the window, a running command).
    """
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise GalleryError(f"{root}: no library folder there; nothing to rebuild")
    db_path = root / DB_NAME
    guard = _SessionLock(root / "sessions")
    try:
        _stale, live = guard.others()
        if live:
            raise GalleryError(
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
    with GalleryStore(root, reconcile=True) as store:
        assert store.last_reconcile is not None
        unreadable = list(store.last_reconcile.unreadable)
        recovered = store._carry_over(old, unreadable)
        images = store.count() + store.count(GalleryFilter(trashed=True))
    return RebuildReport(damaged_copy, images, recovered, unreadable, salvage_error)


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
