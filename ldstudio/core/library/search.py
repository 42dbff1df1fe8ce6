"""Text search and filters as SQL: FTS5 queries, the LIKE fallback, WHERE and ORDER BY."""

from __future__ import annotations

import re
from typing import Any

from ldstudio.core.library.entries import LibraryFilter


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


def where(f: LibraryFilter, *, use_fts: bool, scan_by_date: bool = False) -> tuple[str, list[Any]]:
    """SQL condition and arguments for a filter (`use_fts`: the store has a full-text index).

    `scan_by_date` writes the text match as `+id IN (...)`, which stops SQLite from
    fetching every match by rowid and sorting them: it walks the date index instead and
    probes the match set, which is far cheaper when a word matches a large part of the
    library (see LibraryStore._prefers_date_scan).
    """
    clauses = ["trashed_at IS NOT NULL" if f.trashed else "trashed_at IS NULL"]
    args: list[Any] = []
    if f.text.strip():
        if use_fts:
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
    if f.face:
        clauses.append("face = ?")
        args.append(f.face)
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


def order(f: LibraryFilter) -> str:
    column = "trashed_at" if f.trashed else "created"
    direction = "DESC" if f.newest_first else "ASC"
    return f"ORDER BY {column} {direction}, id {direction}"
