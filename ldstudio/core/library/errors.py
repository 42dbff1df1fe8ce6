"""Library errors, and telling a damaged index file from other SQLite errors."""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path

from ldstudio.core.library.layout import DB_NAME

# Errors SQLite (or the binding) raises for one row's values, not for the database's state:
# a file name that is not valid Unicode, a number no column type holds, a value far too big.
_ROW_ERRORS = (ValueError, OverflowError, sqlite3.DataError, sqlite3.IntegrityError)


class LibraryError(Exception):
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


class IndexDamaged(LibraryError):
    """The library's index file is damaged; the image files are not, and rebuild it from them."""

    def __init__(self, root: Path, cause: BaseException | str) -> None:
        self.root = root
        self.db_path = root / DB_NAME
        super().__init__(
            f"the library index {self.db_path} is damaged ({cause}). The images are safe: "
            f"rebuild the index from them with `ldstudio library --library "
            f"{shlex.quote(str(root))} rebuild` (close ldstudio's window first). The damaged "
            f"file is kept as {DB_NAME}.bad-<date>; what only it held (favourites, tags, images "
            "indexed in place elsewhere) is lost where it no longer reads"
        )
