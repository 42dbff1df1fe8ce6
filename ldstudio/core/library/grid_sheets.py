"""A finished X/Y/Z plot's sheets saved: the grid image(s) composed from the saved cell files and
written into the library (linked to their cells) or a folder; any thread (it decodes every cell
and encodes the sheets: seconds on a large grid, so a GUI calls it off its thread).

Shared by `ldstudio grid` and the window's X/Y/Z plot, so both save the same grid the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ldstudio.core.grid import GridPlan, compose, grid_text, script_pairs
from ldstudio.core.imagefiles import numbered, prompt_slug, write_png_new
from ldstudio.core.library.grids import save_grid
from ldstudio.core.library.store import LibraryStore


def save_sheets(
    plan: GridPlan,
    cells: Sequence[Path],
    z_layout: str,
    folder: Path | None,
    library: LibraryStore | None,
) -> list[Path]:
    """Compose the grid sheet(s) from the saved cell files (one per plan cell, in its order)
    and save each: into `library` when given (linked to the cells it holds), else into
    `folder`; their paths."""
    images = []
    for path in cells:
        with Image.open(path) as opened:
            opened.load()
            images.append(opened.convert("RGB"))
    saved: list[Path] = []
    for sheet in compose(plan, images, z_layout):
        first = cells[sheet.cells[0]]
        with Image.open(first) as opened:
            first_text = {str(k): str(v) for k, v in getattr(opened, "text", {}).items()}
        names = [cell_name(cells[i], library) for i in sheet.cells]
        text = grid_text(first_text, plan, sheet, names)
        if library is not None:
            entries = [library.entry_for_path(cells[i]) for i in sheet.cells]
            linked = [e for e in entries if e is not None]
            entry = save_grid(library, sheet.image, text, linked, script_pairs(plan))
            saved.append(entry.path)
        else:
            if folder is None:
                raise ValueError("grid: neither a library nor a folder to save the grid in")
            stem = f"grid-{prompt_slug(plan.cells[sheet.cells[0]].request.params.prompt)}"
            saved.append(write_png_new(sheet.image, numbered(folder / f"{stem}.png"), text))
    return saved


def cell_name(path: Path, library: LibraryStore | None) -> str:
    """A cell's file as the grid's chunk names it: relative to the library, else its name."""
    if library is not None and path.is_relative_to(library.root):
        return path.relative_to(library.root).as_posix()
    return path.name
