"""Grids in the library: saving an X/Y/Z plot's grid image linked to its cells, and following
the links both ways; any thread (writes take the index's write lock).

Every cell is an ordinary library image saved by its job. The grid's row lists its cells' ids
(`extra["grid_cells"]`, in grid order) and each cell's row names its grid (`extra["grid"]`),
so the details of either find the other with one indexed read. The PNG keeps the same links by
file name in its `ldstudio-grid` chunk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

from PIL import Image

from ldstudio.core.atomic import fsync_dir
from ldstudio.core.imagefiles import numbered, prompt_slug, write_png_new
from ldstudio.core.library.entries import LibraryEntry, NewEntry
from ldstudio.core.library.store import LibraryStore

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
