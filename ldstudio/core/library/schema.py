"""The index's schema: migrations, the full-text index, and the images columns entries map to."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import fields

from ldstudio.core.library.entries import LibraryEntry, NewEntry
from ldstudio.core.library.errors import LibraryError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4


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
    # 3 -> 4: img2img / inpaint / outpaint: the face of the job and the request beyond its
    # params (kind, input blob hashes, inpaint settings). Every ldstudio image before was
    # txt2img; an imported image's A1111 keys (kept in extra_json) say what it was.
    """
    ALTER TABLE images ADD COLUMN face TEXT NOT NULL DEFAULT '';
    ALTER TABLE images ADD COLUMN request_json TEXT;
    UPDATE images SET face = 'txt2img' WHERE params_json IS NOT NULL;
    UPDATE images SET face = 'img2img'
        WHERE source != 'ldstudio' AND params_json IS NOT NULL AND json_valid(extra_json)
          AND json_extract(extra_json, '$."Denoising strength"') IS NOT NULL
          AND json_extract(extra_json, '$."Hires upscale"') IS NULL
          AND json_extract(extra_json, '$."Hires upscaler"') IS NULL
          AND json_extract(extra_json, '$."Hires steps"') IS NULL;
    UPDATE images SET face = 'inpaint'
        WHERE source != 'ldstudio' AND params_json IS NOT NULL AND json_valid(extra_json)
          AND (json_extract(extra_json, '$."Mask blur"') IS NOT NULL
               OR json_extract(extra_json, '$."Masked content"') IS NOT NULL);
    CREATE INDEX images_by_face ON images(face, created, id) WHERE trashed_at IS NULL;
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


def fts5_available() -> bool:
    """Whether this Python's SQLite was built with the FTS5 full-text extension."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as conn:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    return True


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
        raise LibraryError(
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


# The one field list: the entry dataclasses' fields are the images columns of the same names.
# A LibraryEntry reads every field but `tags` (from image_tags); a NewEntry writes every field,
# its `copied_from` (a CopySource) as three columns. The SELECT, the INSERT and its upsert,
# and the row -> LibraryEntry mapping are all derived from these.
ENTRY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LibraryEntry) if f.name != "tags")
NEW_ENTRY_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(NewEntry) if f.name != "copied_from"
)
assert ENTRY_COLUMNS[0] == "id"  # rows are keyed by r[0]
COPIED_FROM_COLUMNS = ("copied_from", "copied_from_size", "copied_from_mtime_ns")
# Columns a second INSERT for an indexed path (an adoption racing a save) leaves as the first
# row wrote them; every other NewEntry column is replaced, and `missing` is cleared.
_KEPT_ON_CONFLICT = frozenset({"path", "created", "width", "height", "trashed_at"})

SELECT_ENTRY = ", ".join(ENTRY_COLUMNS)
INSERT_ENTRY = (
    f"INSERT INTO images ({', '.join((*NEW_ENTRY_COLUMNS, *COPIED_FROM_COLUMNS))})"
    f" VALUES ({','.join('?' * (len(NEW_ENTRY_COLUMNS) + len(COPIED_FROM_COLUMNS)))})"
    " ON CONFLICT(path) DO UPDATE SET "
    + ", ".join(
        f"{name} = excluded.{name}" for name in NEW_ENTRY_COLUMNS if name not in _KEPT_ON_CONFLICT
    )
    + ", missing = 0, "
    # An adoption racing a copy-import knows nothing of the copy's source: keep it.
    + ", ".join(f"{name} = COALESCE(excluded.{name}, {name})" for name in COPIED_FROM_COLUMNS)
    + " RETURNING id"
)
