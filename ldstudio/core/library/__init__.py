"""The image library: image files plus an SQLite index (WAL, FTS5); any thread, see below.

Layout of a library folder (default `paths.home_dir() / "library"`):

    library.sqlite3        the index (WAL mode; -wal/-shm beside it while open)
    images/YYYY-MM/        images ldstudio generated (or imported with copy=True)
    trash/                 deleted images, restorable until the trash is emptied
    thumbnails/xx/         cached thumbnails (see ldstudio.core.thumbnails; blobs/ for blobs')
    blobs/ab/<sha256>      source images and masks of img2img/inpaint jobs, by content hash:
                           written once, shared by every image made from them, never deleted
                           by trash or empty_trash (`inputs_of` finds an image's blobs)
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
and `get` are index-only queries (a few ms on 100,000 images, see benchmarks/bench_library.py)
but still do disk I/O, so a GUI should run them off its thread too (e.g. `run_in_executor`).

Virtual grid protocol: `count(f)` gives the row count for filter `f`; `page(f, offset, limit)`
returns `LibraryEntry` rows in sort order (newest first by default); `ids(f)` returns all ids
in order at once (cheap: 100,000 ints) for views that prefer to page by id with `entries()`.
`thumbnail_path(entry)` is pure (no disk access); `thumbnail(entry)` builds it if missing.
`revision()` changes whenever any connection (any process) commits, so a view can poll it to
know when to refresh its counts.
"""

from ldstudio.core.library.entries import (
    CopySource,
    EntryInputs,
    ImportReport,
    LibraryEntry,
    LibraryFilter,
    NewEntry,
    RebuildReport,
    ReconcileReport,
)
from ldstudio.core.library.errors import IndexDamaged, LibraryError, is_damage
from ldstudio.core.library.layout import (
    DB_NAME,
    IMAGE_SUFFIXES,
    OTHER_IMAGE_SUFFIXES,
    TEMP_SUFFIX,
    default_library_dir,
)
from ldstudio.core.library.rebuild import rebuild_index
from ldstudio.core.library.schema import MIGRATIONS, SCHEMA_VERSION, fts5_available, migrate
from ldstudio.core.library.store import LibraryStore

__all__ = [
    "DB_NAME",
    "IMAGE_SUFFIXES",
    "MIGRATIONS",
    "OTHER_IMAGE_SUFFIXES",
    "SCHEMA_VERSION",
    "TEMP_SUFFIX",
    "CopySource",
    "EntryInputs",
    "ImportReport",
    "IndexDamaged",
    "LibraryEntry",
    "LibraryError",
    "LibraryFilter",
    "LibraryStore",
    "NewEntry",
    "RebuildReport",
    "ReconcileReport",
    "default_library_dir",
    "fts5_available",
    "is_damage",
    "migrate",
    "rebuild_index",
]
