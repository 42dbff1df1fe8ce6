"""Grids in the library: saving an X/Y/Z plot's grid image linked to its cells, following the
links both ways, and linking them again from the grid files; any thread (writes take the
index's write lock).

Every cell is an ordinary library image saved by its job. The grid's row lists its cells' ids
(`extra["grid_cells"]`, in grid order) and each cell's row names its grid (`extra["grid"]`),
so the details of either find the other with one indexed read. The PNG keeps the same links by
file name in its `ldstudio-grid` chunk: `relink_grids` puts the index's links back from it
when the rows were made anew from the files (a rebuilt index, a grid file adopted).
"""

from __future__ import annotations

import json
import logging
import struct
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from ldstudio.core.atomic import fsync_dir
from ldstudio.core.grid.sheet import GRID_FORMAT, GRID_KEY, SCRIPT
from ldstudio.core.imagefiles import numbered, prompt_slug, write_png_new
from ldstudio.core.library.entries import LibraryEntry, NewEntry
from ldstudio.core.library.files import _from_stored, _storable
from ldstudio.core.library.layout import _BATCH
from ldstudio.core.readers import not_a_regular_file

if TYPE_CHECKING:  # the store imports reconcile, which relinks grids: no import cycle at run time
    from sqlite3 import Connection

    from ldstudio.core.library.store import LibraryStore

log = logging.getLogger(__name__)

GRID_CELLS = "grid_cells"  # in a grid's extra: its cells' ids, in grid order
GRID_OF = "grid"  # in a cell's extra: its grid's id


def save_grid(
    store: LibraryStore,
    image: Image.Image,
    text: Mapping[str, str],
    cells: Sequence[LibraryEntry],
    extra: Mapping[str, str] | None = None,
) -> LibraryEntry:
    """Write the grid PNG (with `text` chunks) into the library, index it with the first
    cell's facts (a grid reuses as its first cell, as in A1111) and link it to `cells`.
    `extra`: more keys for the grid row (the plot's `Script`, `X Type`, ...)."""
    if not cells:
        raise ValueError("grid: no cells to link")
    first = cells[0]
    now = datetime.now()
    stem = f"{now.strftime('%Y%m%d-%H%M%S')}-grid-{prompt_slug(first.prompt)}"
    path = write_png_new(
        image, numbered(store.images_dir / now.strftime("%Y-%m") / f"{stem}.png"), dict(text)
    )
    fsync_dir(path.parent)
    stat = path.stat()
    entry = NewEntry(
        path=path,
        created=time.time(),
        prompt=first.prompt,
        negative_prompt=first.negative_prompt,
        model=first.model,
        seed=first.seed,
        width=image.width,
        height=image.height,
        steps=first.steps,
        guidance_scale=first.guidance_scale,
        scheduler=first.scheduler,
        seconds=sum(cell.seconds or 0.0 for cell in cells),
        device=first.device,
        dtype=first.dtype,
        params_json=first.params_json,
        extra_json=json.dumps({**(extra or {}), GRID_CELLS: [cell.id for cell in cells]}),
        face=first.face,
        request_json=first.request_json,
        source="ldstudio",
        mtime_ns=stat.st_mtime_ns,
        file_size=stat.st_size,
    )
    (grid_id,) = store.add_entries([entry])
    with store._write() as conn:
        for cell in cells:
            merged = {**cell.extra, GRID_OF: grid_id}
            conn.execute(
                "UPDATE images SET extra_json = ? WHERE id = ?", (json.dumps(merged), cell.id)
            )
    return store.get(grid_id)


def grid_cells(store: LibraryStore, entry: LibraryEntry) -> list[LibraryEntry]:
    """The cells of a grid, in grid order (those in the trash or gone left out, as the
    gallery leaves them out); [] when `entry` is not a grid."""
    ids = entry.extra.get(GRID_CELLS)
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        return []
    found = {cell.id: cell for cell in store.entries(ids) if cell.trashed_at is None}
    return [found[i] for i in ids if i in found]


def grid_of(store: LibraryStore, entry: LibraryEntry) -> LibraryEntry | None:
    """The grid `entry` is a cell of, or None (not a cell, or its grid is in the trash or
    gone)."""
    grid_id = entry.extra.get(GRID_OF)
    if not isinstance(grid_id, int):
        return None
    found = store.entries([grid_id])
    return found[0] if found and found[0].trashed_at is None else None


def cell_position(grid: LibraryEntry, cell: LibraryEntry) -> int | None:
    """The cell's place in its grid (0-based, X fastest), or None."""
    ids = grid.extra.get(GRID_CELLS)
    return ids.index(cell.id) if isinstance(ids, list) and cell.id in ids else None


@dataclass
class GridRelink:
    """What relink_grids() did."""

    grids: int = 0  # grid rows linked to their cells again
    cells: int = 0  # cell rows linked to a grid
    warnings: list[str] = field(default_factory=list)  # grids not (fully) linked, and why


def relink_grids(store: LibraryStore, ids: Iterable[int] | None = None) -> GridRelink:
    """Link grids to their cells again from each grid PNG's `ldstudio-grid` chunk, for the
    rows `ids` (None: every row). Cells are found by their path (a cell since moved to the
    trash by its original place); a cell no longer in the library is left out and named in
    the warnings, as is a grid whose chunk cannot be read. Only the chunks are read (no pixel
    decoding) and every link is written in one transaction."""
    report = GridRelink()
    found: list[tuple[int, Path, list[str], dict[str, str]]] = []
    for image_id, stored in _png_rows(store, ids):
        path = store._abs(stored)
        try:
            text = grid_chunk(path)
            if text is None:
                continue
            names, pairs = _parse_chunk(text)
        except OSError:
            continue  # the file is gone: reconcile flags its row missing; nothing to link
        except ValueError as exc:
            report.warnings.append(
                f"{path}: its {GRID_KEY} chunk is unreadable ({exc}); not linked"
            )
            continue
        found.append((image_id, path, names, pairs))
    if not found:
        return report
    resolve = _Resolver(store)
    with store._write() as conn:
        for grid_id, path, names, pairs in found:
            cell_ids: list[int] = []
            seen = {grid_id}  # a damaged chunk naming the grid, or a cell twice, links once
            lost: list[str] = []
            for name in names:
                cell_id = resolve(name)
                if cell_id is None or cell_id in seen:
                    lost.append(name)
                else:
                    cell_ids.append(cell_id)
                    seen.add(cell_id)
            if lost:
                report.warnings.append(
                    f"{path}: {len(lost)} of its {len(names)} cells are not in the library "
                    f"(first: {lost[0]}); {len(cell_ids)} linked"
                )
            if not cell_ids:
                continue  # a grid with no cell left is no grid to the details
            # The plot's keys as save_grid wrote them; what the file's reader found wins.
            _set_extra(conn, grid_id, {**pairs, **_extra(conn, grid_id), GRID_CELLS: cell_ids})
            for cell_id in cell_ids:
                _set_extra(conn, cell_id, {**_extra(conn, cell_id), GRID_OF: grid_id})
            report.grids += 1
            report.cells += len(cell_ids)
    for warning in report.warnings:
        log.warning("grid links: %s", warning)
    return report


def grid_chunk(path: Path) -> str | None:
    """The `ldstudio-grid` text of a PNG, or None when it has none (or is no PNG, or not a
    regular file). Pillow reads the header and the chunks before the image data, where
    ldstudio writes its text, and decodes no pixels. OSError when the file cannot be read;
    ValueError when the PNG is damaged before its pixels or its text is over Pillow's limits."""
    if not_a_regular_file(path) is not None:
        return None  # gone (reconcile flags it), or swapped for a FIFO that would block
    try:
        with Image.open(path, formats=["PNG"]) as opened:
            text = opened.info.get(GRID_KEY)
    except UnidentifiedImageError:
        return None
    except (SyntaxError, struct.error, zlib.error, EOFError) as exc:  # Pillow's damage zoo
        raise ValueError(f"the PNG is damaged ({exc})") from None
    return text if isinstance(text, str) else None


def _parse_chunk(text: str) -> tuple[list[str], dict[str, str]]:
    """(the cell names in grid order, the plot's keys as save_grid stores them)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != GRID_FORMAT:
        raise ValueError(f"not a {GRID_FORMAT} object")
    names = data.get("cells")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("its `cells` is not a list of file names")
    pairs = {"Script": SCRIPT}
    axes = data.get("axes")
    for axis in axes if isinstance(axes, list) else []:
        if isinstance(axis, dict) and all(
            isinstance(axis.get(k), str) for k in ("name", "label", "values")
        ):
            pairs[f"{axis['name']} Type"] = axis["label"]
            pairs[f"{axis['name']} Values"] = axis["values"]
    return names, pairs


def _png_rows(store: LibraryStore, ids: Iterable[int] | None) -> Iterable[tuple[int, str | bytes]]:
    conn = store._conn()
    if ids is None:
        rows = conn.execute("SELECT id, path FROM images WHERE missing = 0").fetchall()
    else:
        wanted = list(ids)
        rows = []
        for at in range(0, len(wanted), _BATCH):
            chunk = wanted[at : at + _BATCH]
            marks = ",".join("?" * len(chunk))
            rows += conn.execute(
                f"SELECT id, path FROM images WHERE missing = 0 AND id IN ({marks})", chunk
            ).fetchall()
    return [(int(i), p) for i, p in rows if _from_stored(p).lower().endswith(".png")]


class _Resolver:
    """A cell name in a grid chunk (its path relative to the library) to the row now there."""

    def __init__(self, store: LibraryStore) -> None:
        self._conn = store._conn()
        self._trash: tuple[dict[str | bytes, int], dict[str, list[int]]] | None = None

    def __call__(self, name: str) -> int | None:
        row = self._conn.execute(
            "SELECT id FROM images WHERE path = ?", (_storable(name),)
        ).fetchone()
        if row is not None:
            return int(row[0])
        by_origin, by_name = self._trashed()
        if _storable(name) in by_origin:
            return by_origin[_storable(name)]
        # A rebuilt index knows no trashed image's origin: its trash name keeps the file name.
        same = by_name.get(name.rsplit("/", 1)[-1], [])
        return same[0] if len(same) == 1 else None

    def _trashed(self) -> tuple[dict[str | bytes, int], dict[str, list[int]]]:
        if self._trash is None:  # read once, only when a name is not at its place
            by_origin: dict[str | bytes, int] = {}
            by_name: dict[str, list[int]] = {}
            for image_id, stored, original in self._conn.execute(
                "SELECT id, path, original_path FROM images WHERE trashed_at IS NOT NULL"
            ):
                if original is not None:
                    by_origin[original] = int(image_id)
                    continue
                trash_name = _from_stored(stored).rsplit("/", 1)[-1]
                # The trash names a file `<id>-<name>` (see trash.run_trash).
                head, sep, tail = trash_name.partition("-")
                if sep and head.isdigit():
                    by_name.setdefault(tail, []).append(int(image_id))
            self._trash = by_origin, by_name
        return self._trash


def _extra(conn: Connection, image_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT extra_json FROM images WHERE id = ?", (image_id,)).fetchone()
    try:
        data = json.loads(row[0]) if row and row[0] else {}
    except json.JSONDecodeError:
        data = {}
    return data if isinstance(data, dict) else {}


def _set_extra(conn: Connection, image_id: int, extra: Mapping[str, Any]) -> None:
    conn.execute(
        "UPDATE images SET extra_json = ? WHERE id = ?",
        (json.dumps(dict(extra), ensure_ascii=False, default=str), image_id),
    )
