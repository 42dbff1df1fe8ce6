"""A grid and its cells linked in the library, and the details' "Made from" box showing the
links (a grid lists its cells, a cell names its grid) whose clicks ask to open that image."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from ldstudio.core.grid import GRID_KEY, expand, parse_axis
from ldstudio.core.library import LibraryFilter, LibraryStore, rebuild_index
from ldstudio.core.library.grid_sheets import save_sheets
from ldstudio.core.library.grids import (
    GRID_CELLS,
    GRID_OF,
    cell_position,
    grid_cells,
    grid_chunk,
    grid_of,
    save_grid,
)
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request


def _cells(store: LibraryStore, count: int) -> list:
    cells = []
    for i in range(count):
        params = GenerationParams(prompt="a cat", seed=i, width=64, height=64)
        image = Image.new("RGB", (64, 64), (i * 40, 0, 0))
        cells.append(store.add_image(image, params, model_name="m"))
    return cells


def test_save_grid_links_both_ways_and_keeps_what_a_cell_had(tmp_path: Path) -> None:
    with LibraryStore(tmp_path / "lib") as store:
        cells = _cells(store, 3)
        grid = save_grid(
            store,
            Image.new("RGB", (200, 80)),
            {"parameters": "a cat\nSteps: 20"},
            [cells[2], cells[0], cells[1]],
            {"Script": "X/Y/Z plot"},
        )
        assert grid.extra == {"Script": "X/Y/Z plot", GRID_CELLS: [3, 1, 2]}
        assert (grid.width, grid.height, grid.prompt, grid.seed) == (200, 80, "a cat", 2)
        assert [c.id for c in grid_cells(store, grid)] == [3, 1, 2]  # the grid's order
        for cell in store.entries([1, 2, 3]):
            assert cell.extra == {GRID_OF: grid.id}
            assert grid_of(store, cell) == store.get(grid.id)
        assert Image.open(grid.path).text["parameters"] == "a cat\nSteps: 20"
        # A cell in the trash, or emptied away, leaves the grid listing the others.
        store.trash([1])
        assert [c.id for c in grid_cells(store, store.get(grid.id))] == [3, 2]
        store.empty_trash()
        assert [c.id for c in grid_cells(store, store.get(grid.id))] == [3, 2]
        store.trash([grid.id])  # and a grid in the trash is no cell's grid
        assert grid_of(store, store.get(2)) is None
        store.restore([grid.id])
        assert grid_of(store, store.get(2)) is not None


def test_the_made_from_box_lists_a_grids_cells_and_names_a_cells_grid(qtbot, tmp_path) -> None:
    from ldstudio.qt.made_from import MadeFromView, read_grid_links

    with LibraryStore(tmp_path / "lib") as store:
        cells = _cells(store, 2)
        grid = save_grid(store, Image.new("RGB", (140, 80)), {}, cells)
        view = MadeFromView()
        qtbot.addWidget(view)
        view.show()
        assert read_grid_links(store, store.get(cells[0].id)) is not None
        view.show_grid(read_grid_links(store, grid))
        assert view.isVisible() and not view.source_label.isVisible()  # no source: only links
        text = view.text()
        assert "X/Y/Z plot of 2 cells" in text
        assert cells[0].path.name in text and cells[1].path.name in text
        with qtbot.waitSignal(view.image_requested) as opened:
            view.grid_links.linkActivated.emit(f"image:{cells[1].id}")
        assert opened.args == [cells[1].id]
        view.show_grid(read_grid_links(store, store.get(cells[1].id)))
        assert f"Cell 2 of 2 of the X/Y/Z plot {grid.path.name}" in view.text()
        with qtbot.waitSignal(view.image_requested) as opened:
            view.grid_links.linkActivated.emit(f"image:{grid.id}")
        assert opened.args == [grid.id]
        # An image in no grid, with no source: the box is hidden.
        plain = store.add_image(
            Image.new("RGB", (8, 8)), GenerationParams(prompt="x"), model_name="m"
        )
        view.show_grid(read_grid_links(store, plain))
        view.show_made_from(None)
        assert not view.isVisible() and view.text() == ""


def _plot(store: LibraryStore) -> tuple[Path, list[Path]]:
    """A 2×2 X/Y/Z plot saved as `ldstudio grid` saves one: its grid file and cell files."""
    base = Request.txt2img(GenerationParams(prompt="a cat", seed=7, width=64, height=64))
    plan = expand(base, [parse_axis("cfg=3,5"), parse_axis("steps=10,20", "--y")])
    cells = [
        store.add_image(
            Image.new("RGB", (64, 64), (i * 60, 0, 0)), c.request.params, model_name="m"
        )
        for i, c in enumerate(plan.cells)
    ]
    (grid,) = save_sheets(plan, [c.path for c in cells], "column", None, store)
    return grid, [c.path for c in cells]


def _links(store: LibraryStore, grid_path: Path) -> dict[str, object]:
    """The grid's links as paths (rows get new ids in a rebuilt index)."""
    grid = store.entry_for_path(grid_path)
    assert grid is not None
    cells = grid_cells(store, grid)
    return {
        "cells": [c.path for c in cells],
        "grids": [(g.path if (g := grid_of(store, c)) else None) for c in cells],
        "positions": [cell_position(grid, c) for c in cells],
        "plot": {k: v for k, v in grid.extra.items() if k.startswith(("Script", "X ", "Y "))},
    }


def test_a_rebuilt_index_links_a_grid_to_its_cells_again(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    with LibraryStore(root) as store:
        grid_path, cell_paths = _plot(store)
        before = _links(store, grid_path)
    assert before["cells"] == cell_paths and before["positions"] == [0, 1, 2, 3]
    assert before["plot"] == {
        "Script": "X/Y/Z plot",
        "X Type": "CFG Scale",
        "X Values": "3,5",
        "Y Type": "Steps",
        "Y Values": "10,20",
    }
    report = rebuild_index(root)
    assert report.images == 5 and report.unreadable == []
    with LibraryStore(root) as store:
        assert _links(store, grid_path) == before
        cell = store.entry_for_path(cell_paths[2])
        assert cell is not None and cell.extra[GRID_OF] == store.entry_for_path(grid_path).id


def test_a_cell_file_gone_leaves_the_others_linked_in_grid_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "lib"
    with LibraryStore(root) as store:
        grid_path, cell_paths = _plot(store)
    cell_paths[1].unlink()
    with caplog.at_level("WARNING"):
        report = rebuild_index(root)
    assert report.images == 4
    with LibraryStore(root) as store:
        links = _links(store, grid_path)
        assert links["cells"] == [cell_paths[0], cell_paths[2], cell_paths[3]]
        assert links["grids"] == [grid_path] * 3
    assert f"{grid_path}: 1 of its 4 cells are not in the library" in caplog.text
    assert cell_paths[1].relative_to(root).as_posix() in caplog.text


def test_a_damaged_grid_chunk_does_not_stop_the_rebuild(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "lib"
    with LibraryStore(root) as store:
        grid_path, _cells_of_plot = _plot(store)
        extra = _cells(store, 2)
        damaged = save_grid(store, Image.new("RGB", (140, 80)), {GRID_KEY: '{"cells": ['}, extra)
        before = _links(store, grid_path)
    with caplog.at_level("WARNING"):
        report = rebuild_index(root)
    assert report.images == 8
    with LibraryStore(root) as store:
        assert _links(store, grid_path) == before  # the good grid is linked again
        entry = store.entry_for_path(damaged.path)
        assert entry is not None and grid_cells(store, entry) == []
        for cell in extra:
            found = store.entry_for_path(cell.path)
            assert found is not None and grid_of(store, found) is None
    assert f"{damaged.path}: its {GRID_KEY} chunk is unreadable (not JSON" in caplog.text


def test_a_cell_in_the_trash_is_linked_and_listed_again_once_restored(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    with LibraryStore(root) as store:
        grid_path, cell_paths = _plot(store)
        cell = store.entry_for_path(cell_paths[3])
        assert cell is not None
        store.trash([cell.id])
    rebuild_index(root)
    with LibraryStore(root) as store:
        assert _links(store, grid_path)["cells"] == cell_paths[:3]  # the trash is left out
        (trashed,) = store.entries(store.ids(LibraryFilter(trashed=True)))
        assert grid_of(store, trashed) == store.entry_for_path(grid_path)
        store.restore([trashed.id])
        links = _links(store, grid_path)
        assert links["cells"] == cell_paths and links["positions"] == [0, 1, 2, 3]


def test_reconcile_links_a_grid_file_it_adopts(tmp_path: Path) -> None:
    with LibraryStore(tmp_path / "lib") as store:
        grid_path, _cells_of_plot = _plot(store)
        before = _links(store, grid_path)
        old = store.entry_for_path(grid_path)
        assert old is not None
        with store._write() as conn:  # as if the writer died before indexing the grid
            conn.execute("DELETE FROM images WHERE id = ?", (old.id,))
            conn.execute("UPDATE images SET extra_json = NULL")
        assert grid_of(store, store.get(1)) is None
        report = store.reconcile()
        assert report.adopted == [grid_path]
        assert _links(store, grid_path) == before
        new = store.entry_for_path(grid_path)
        assert new is not None
        assert [c.extra for c in store.entries(store.ids()) if c.id != new.id] == [
            {GRID_OF: new.id}
        ] * 4


def _png(path: Path, info: PngImagePlugin.PngInfo) -> Path:
    Image.new("RGB", (300, 300), (1, 2, 3)).save(path, format="PNG", pnginfo=info)
    return path


@pytest.mark.parametrize("form", ["tEXt", "zTXt", "iTXt", "iTXt zipped"])
def test_grid_chunk_reads_each_text_chunk_form(tmp_path: Path, form: str) -> None:
    text = json.dumps({"format": "ldstudio-grid", "cells": ["images/猫.png"]}, ensure_ascii=False)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat")
    if form == "tEXt":
        text = text.replace("猫", "cat")
        info.add_text(GRID_KEY, text)
    elif form == "zTXt":
        text = text.replace("猫", "cat")
        info.add_text(GRID_KEY, text, zip=True)
    else:
        info.add_itxt(GRID_KEY, text, zip=form == "iTXt zipped")
    assert grid_chunk(_png(tmp_path / "g.png", info)) == text


def test_grid_chunk_of_other_files_and_damaged_ones(tmp_path: Path) -> None:
    assert grid_chunk(_png(tmp_path / "plain.png", PngImagePlugin.PngInfo())) is None
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    assert grid_chunk(tmp_path / "a.jpg") is None
    if hasattr(os, "mkfifo"):  # a file swapped for a FIFO is passed over, not waited on
        os.mkfifo(tmp_path / "fifo.png")
        assert grid_chunk(tmp_path / "fifo.png") is None
    info = PngImagePlugin.PngInfo()
    info.add_text(GRID_KEY, '{"format": "ldstudio-grid", "cells": []}')
    data = _png(tmp_path / "g.png", info).read_bytes()
    at = data.index(b'"cells"')
    (tmp_path / "cut.png").write_bytes(data[:at])
    with pytest.raises((ValueError, OSError)):
        grid_chunk(tmp_path / "cut.png")
