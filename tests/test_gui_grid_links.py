"""The details pane of a grid lists its cells, a cell's names its grid, and a click on either
link highlights that image in the gallery (the window, the fake backend)."""

from __future__ import annotations

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop
from PIL import Image

from ldstudio.core.events import JobFinished
from ldstudio.core.library.grids import save_grid
from ldstudio.engine.fake import FakeBackend

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def test_grid_and_cell_details_link_each_other_and_open_the_image(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    made = [generate(qtbot, window, f"cell {i}") for i in range(2)]
    assert all(isinstance(outcome, JobFinished) for outcome in made)
    store = window.store
    cells = [store.entry_for_path(outcome.records[0].path) for outcome in made]
    assert all(cell is not None for cell in cells)
    grid = save_grid(store, Image.new("RGB", (140, 80), "white"), {}, [cells[1], cells[0]])
    window.library.refresh()
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 3, timeout=10_000)

    details, view = window.details_view, window.details_view.made_from
    details.show_entry(store.get(grid.id))
    qtbot.waitUntil(lambda: "X/Y/Z plot of 2 cells" in view.text(), timeout=10_000)
    text = view.text()
    first, second = cells[1].path.name, cells[0].path.name  # the grid's order
    assert text.index(first) < text.index(second)

    # A click on a cell's link highlights that cell in the gallery.
    view.grid_links.linkActivated.emit(f"image:{cells[0].id}")
    pane = window.library_pane
    qtbot.waitUntil(
        lambda: pane.current_entry() is not None and pane.current_entry().id == cells[0].id,
        timeout=10_000,
    )
    # The cell's own details (shown by that selection) name its grid; its link goes back.
    qtbot.waitUntil(lambda: f"Cell 2 of 2 of the X/Y/Z plot {grid.path.name}" in view.text())
    view.grid_links.linkActivated.emit(f"image:{grid.id}")
    qtbot.waitUntil(
        lambda: pane.current_entry() is not None and pane.current_entry().id == grid.id,
        timeout=10_000,
    )
    # An image in no grid shows no links.
    plain = generate(qtbot, window, "on its own")
    assert isinstance(plain, JobFinished)
    alone = store.entry_for_path(plain.records[0].path)
    assert alone is not None
    details.show_entry(alone)
    qtbot.wait(300)  # the worker's answer (None) arrives; nothing may show
    assert not view.grid_links.isVisible() and "X/Y/Z" not in view.text()
