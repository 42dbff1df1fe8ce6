"""The library says what it shows (issue 12, point 5): counts, empty results, tags, names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gui_support import fake_backend, make_window, qt_loop
from library_support import A1111_TEXT, png_with_text
from PIL import Image
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QMessageBox
from test_gui_library import ROWS, load_rows, synthetic_library

from ldstudio.core.library import LibraryFilter, LibraryStore
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.image_details import ExportDialog, LibraryActions
from ldstudio.qt.library_model import LibraryModel
from ldstudio.qt.library_pane import ICON_SIZE, LibraryPane

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LibraryStore]:
    s = synthetic_library(tmp_path / "library", count=ROWS)
    yield s
    s.close()


@pytest.fixture
def model(qtbot, store: LibraryStore) -> Iterator[LibraryModel]:
    m = LibraryModel(store, poll_revision=False)
    with qtbot.waitSignal(m.count_changed):
        m.refresh()
    yield m
    m.close()


@pytest.fixture
def pane(qtbot, model: LibraryModel) -> LibraryPane:
    widget = LibraryPane(model)
    qtbot.addWidget(widget)
    widget.resize(600, 500)
    widget.show()
    return widget


def search(qtbot, pane: LibraryPane, text: str) -> None:
    with qtbot.waitSignal(pane.model.count_changed, timeout=3000):
        pane.search_edit.setText(text)


def test_the_header_says_how_many_of_all_when_filtered(qtbot, pane: LibraryPane) -> None:
    assert pane.title.text() == f"&Library — {ROWS} images"
    search(qtbot, pane, "castle")
    assert pane.title.text() == f"&Library — {ROWS // 10} of {ROWS} images"
    search(qtbot, pane, "castle number 290")
    assert pane.title.text() == f"&Library — 1 of {ROWS} images"
    search(qtbot, pane, "")
    assert pane.title.text() == f"&Library — {ROWS} images"


def test_an_empty_search_says_no_images_match(qtbot, pane: LibraryPane) -> None:
    assert pane.grid_stack.currentWidget() is pane.view
    search(qtbot, pane, "unicorn")
    assert pane.grid_stack.currentWidget() is pane.empty_label
    assert pane.empty_label.isVisible() and not pane.view.isVisible()
    assert pane.empty_label.text().startswith(f"No images match: none of the {ROWS} in the library")
    assert pane.title.text() == f"&Library — 0 of {ROWS} images"
    search(qtbot, pane, "castle")
    assert pane.grid_stack.currentWidget() is pane.view
    with qtbot.waitSignal(pane.model.count_changed):
        pane.search_edit.clear()
        pane.trash_check.setChecked(True)
    assert pane.empty_label.text() == "The trash is empty."


def test_an_empty_library_says_where_images_come_from(qtbot, tmp_path: Path) -> None:
    store = LibraryStore(tmp_path / "empty", reconcile=False)
    model = LibraryModel(store, poll_revision=False)
    pane = LibraryPane(model)
    qtbot.addWidget(pane)
    pane.show()
    assert pane.grid_stack.currentWidget() is pane.view  # nothing said before the count
    with qtbot.waitSignal(model.count_changed):
        model.refresh()
    assert pane.empty_label.text().startswith("No images yet.")
    with qtbot.waitSignal(model.count_changed, timeout=3000):
        pane.search_edit.setText("fox")
    assert pane.title.text() == "&Library — 0 images"  # not "0 of 0"
    assert pane.empty_label.text().startswith("No images match.")
    model.close()
    store.close()


def test_the_tag_filter_completes_known_tags(qtbot, pane: LibraryPane, model, store) -> None:
    first, second = store.page(LibraryFilter(), 0, 2)
    store.add_tags(first.id, ["portrait", "keeper"])
    store.add_tags(second.id, ["landscape"])
    with qtbot.waitSignal(model.choices_loaded):
        model.load_choices()
    edit, completer = pane.tags_edit, pane.tag_completer
    edit.setFocus()
    qtbot.keyClicks(edit, "keeper, Po")
    assert completer.splitPath(completer.completionPrefix()) == ["Po"]  # the tag being typed
    assert completer.completionCount() == 1
    assert completer.currentCompletion() == "keeper, portrait"  # the tags before it kept
    completer.popup().setCurrentIndex(completer.completionModel().index(0, 0))
    qtbot.keyClick(completer.popup(), Qt.Key.Key_Return)
    assert edit.text() == "keeper, portrait"
    pane.apply_filter()
    assert model.filter.tags == ("keeper", "portrait")


def test_small_images_fill_their_thumbnail_cells(qtbot, model: LibraryModel) -> None:
    (entry,) = load_rows(qtbot, model, 0)  # a 48×32 image
    model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: model.has_thumbnail(entry.id))
    icon = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    size = icon.actualSize(QSize(ICON_SIZE, ICON_SIZE))
    assert (size.width(), size.height()) == (ICON_SIZE, round(32 * ICON_SIZE / 48))


def test_the_restore_message_names_the_image_not_its_trash_file(
    qtbot, model: LibraryModel, store: LibraryStore
) -> None:
    actions = LibraryActions(store, model)
    (entry,) = load_rows(qtbot, model, 0)
    store.trash([entry.id])
    trashed = store.get(entry.id)
    assert trashed.path.name != entry.path.name  # the trash's own name for the file
    with qtbot.waitSignal(actions.message) as note:
        actions.restore(trashed)
    assert note.args == [f"{entry.path.name} restored to the library"]
    actions.close()


def test_save_as_follows_a_typed_extension(qtbot, tmp_path: Path) -> None:
    dialog = ExportDialog(tmp_path / "x.png")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.format() == "png"
    edit = dialog.path_edit
    for typed, fmt in (("shared.jpeg", "jpeg"), ("shared.webp", "webp"), ("shared.png", "png")):
        edit.selectAll()
        qtbot.keyClicks(edit, str(tmp_path / typed))
        assert dialog.format() == fmt
        assert edit.text() == str(tmp_path / typed)  # as typed: ".jpeg" is not made ".jpg"
    edit.selectAll()
    qtbot.keyClicks(edit, str(tmp_path / "half.we"))  # while typing: the format stays
    assert dialog.format() == "png"


def test_open_image_shows_the_opened_image(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.No)
    image = png_with_text(tmp_path / "from-a1111.png", {"parameters": A1111_TEXT}, (40, 30))
    Image.open(image).close()
    window = make_window(fake_backend)
    window.library.open_image(image)
    canvas = window.preview_pane.canvas
    qtbot.waitUntil(lambda: canvas.image is not None and canvas.image.width() == 40)
    assert canvas.image.height() == 30
    assert canvas.image.pixelColor(5, 5).blue() == 200  # its pixels, not a placeholder
    assert window.preview_pane.caption.toolTip().startswith("from-a1111.png · 40×30")
    assert window.preview_pane.timeline_label.text() == "No timeline"
