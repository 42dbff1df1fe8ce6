"""A grid and its cells linked in the library, and the details' "Made from" box showing the
links (a grid lists its cells, a cell names its grid) whose clicks ask to open that image."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ldstudio.core.library import LibraryStore
from ldstudio.core.library.grids import GRID_CELLS, GRID_OF, grid_cells, grid_of, save_grid
from ldstudio.core.params import GenerationParams


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
