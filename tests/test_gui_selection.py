"""What is shown, what is highlighted and what an action takes are the same images (pytest-qt).

Issue 12, point 3: after a delete the next image is highlighted (not merely shown), an
unhighlighted focus acts on nothing, the details' Delete/Restore follow the image's state, and
a finished job highlights its own images by id.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop
from PIL import Image
from PySide6.QtCore import QItemSelectionModel, Qt

from ldstudio.core.events import JobFinished
from ldstudio.core.library import LibraryFilter, LibraryStore
from ldstudio.core.params import GenerationParams
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.main_window import MainWindow

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def made(qtbot, window: MainWindow, *prompts: str) -> list[Path]:
    paths = []
    for prompt in prompts:
        outcome = generate(qtbot, window, prompt)
        assert isinstance(outcome, JobFinished)
        paths.append(outcome.records[0].path)
    qtbot.waitUntil(lambda: window.library_model.rowCount() == window.store.count())
    return paths


def highlighted(window: MainWindow) -> list[str]:
    """The prompts of the highlighted images, in row order (their pages must be loaded)."""
    model = window.library_model
    return [model.entry_at(row).prompt for row in window.library_pane.selected_rows()]


def shown(window: MainWindow) -> str | None:
    entry = window.details_view.entry
    return None if entry is None else entry.prompt


def settled(qtbot, window: MainWindow, prompts: list[str]) -> None:
    """Wait until exactly `prompts` are highlighted and the details show the focused one."""

    def done() -> bool:
        rows = window.library_pane.selected_rows()
        model = window.library_model
        if any(model.entry_at(row) is None for row in rows):
            return False
        return highlighted(window) == prompts and shown(window) == (
            prompts[-1] if prompts else None
        )

    qtbot.waitUntil(done, timeout=5000)


def trashed_prompts(store: LibraryStore) -> set[str]:
    return {e.prompt for e in store.entries(store.ids(LibraryFilter(trashed=True)))}


def test_after_delete_the_next_image_is_highlighted_and_delete_takes_only_that(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(2)
    made(qtbot, window, "first", "second", "third")  # rows: third, second, first
    settled(qtbot, window, ["third"])  # the job's image, highlighted
    view = window.library_pane.view
    view.setFocus()

    qtbot.keyClick(view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 2)
    # The viewer, the details and the highlight all moved on to the same, next image.
    settled(qtbot, window, ["second"])
    qtbot.waitUntil(lambda: "second" in window.preview_pane.caption.toolTip())

    qtbot.keyClick(view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 1)
    settled(qtbot, window, ["first"])
    assert trashed_prompts(window.store) == {"third", "second"}  # only what was highlighted

    # A focus without a highlight shows nothing and takes nothing.
    selection_model = view.selectionModel()
    selection_model.select(
        window.library_model.index(0), QItemSelectionModel.SelectionFlag.Deselect
    )
    assert view.currentIndex().isValid() and window.library_pane.current_entry() is None
    assert shown(window) is None
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    window.details_view.buttons["delete"].click()
    qtbot.wait(200)
    assert window.store.count() == 1 and trashed_prompts(window.store) == {"third", "second"}


def test_a_bulk_delete_then_the_trash_view_acts_only_on_what_it_shows(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(2)
    made(qtbot, window, "one", "two", "three", "four")  # rows: four, three, two, one
    pane, model = window.library_pane, window.library_model
    for row in range(4):
        model.entry_at(row)
    qtbot.waitUntil(lambda: all(model.entry_at(r) is not None for r in range(4)))
    pane.select_ids([model.loaded_id(0), model.loaded_id(1)], [0, 1])
    settled(qtbot, window, ["four", "three"])
    assert window.details_view.buttons["delete"].text() == "&Delete 2 images"

    window.details_view.buttons["delete"].click()  # the details take the whole highlight
    qtbot.waitUntil(lambda: model.rowCount() == 2)
    settled(qtbot, window, ["two"])  # the next image, highlighted like a file manager does
    assert trashed_prompts(window.store) == {"four", "three"}

    pane.trash_check.setChecked(True)  # the Trash view: "two" is not in it
    qtbot.waitUntil(lambda: shown(window) is None, timeout=5000)
    assert model.rowCount() == 2 and pane.selected_rows() == []
    pane.view.setFocus()
    qtbot.keyClick(pane.view, Qt.Key.Key_Delete)
    window.details_view.buttons["delete"].click()
    qtbot.wait(200)
    assert trashed_prompts(window.store) == {"four", "three"}  # "two" untouched

    # Restore from the Trash view: the buttons follow the image's state, never stale.
    model.entry_at(0)
    qtbot.waitUntil(lambda: model.entry_at(1) is not None)
    pane.select_row(0)
    first_trashed = model.entry_at(0).prompt
    settled(qtbot, window, [first_trashed])
    buttons = window.details_view.buttons
    assert buttons["restore"].isVisibleTo(window.details_view) and not buttons[
        "delete"
    ].isVisibleTo(window.details_view)
    buttons["restore"].click()
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    other = ({"four", "three"} - {first_trashed}).pop()
    settled(qtbot, window, [other])
    assert buttons["restore"].isVisibleTo(window.details_view) and not buttons[
        "delete"
    ].isVisibleTo(window.details_view)
    pane.trash_check.setChecked(False)
    qtbot.waitUntil(lambda: shown(window) is None, timeout=5000)  # a new view: nothing offered
    assert model.rowCount() == 3 and pane.selected_rows() == []


def test_the_details_buttons_follow_a_trash_and_a_restore(qtbot, tmp_path: Path) -> None:
    from ldstudio.qt.image_details import ImageDetailsView, LibraryActions

    store = LibraryStore(tmp_path / "library", reconcile=False)
    entry = store.add_image(
        Image.new("RGB", (64, 64), "red"),
        GenerationParams(prompt="kept in view", seed=1, width=64, height=64),
        model_name="tiny",
    )
    actions = LibraryActions(store)
    details = ImageDetailsView(actions)
    qtbot.addWidget(details)
    details.show()
    try:
        details.show_entry(entry)
        buttons = details.buttons
        with qtbot.waitSignal(actions.entry_changed):
            buttons["delete"].click()
        # Not shown again by anyone: the view itself follows, Restore for a trashed image.
        assert details.entry.trashed_at is not None
        assert buttons["restore"].isVisibleTo(details)
        assert not buttons["delete"].isVisibleTo(details)
        with qtbot.waitSignal(actions.entry_changed):
            buttons["restore"].click()
        assert details.entry.trashed_at is None
        assert buttons["delete"].isVisibleTo(details)
        assert not buttons["restore"].isVisibleTo(details)
    finally:
        actions.close()
        store.close()


def test_a_finished_job_highlights_its_own_images_by_id(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(2)
    pane = window.library_pane
    notes: list[str] = []
    window.library.status_message.connect(notes.append)

    # A filter that hides the new image: nothing else gets highlighted in its place.
    made(qtbot, window, "a red fox")
    pane.search_edit.setText("fox")
    pane.apply_filter()
    generate(qtbot, window, "a blue whale")
    qtbot.waitUntil(lambda: any("filter hides it" in n for n in notes), timeout=5000)
    assert pane.selected_rows() == [] and shown(window) is None

    # Oldest first: the new image is the last row, not row 0.
    pane.search_edit.setText("")
    pane.sort_combo.setCurrentIndex(1)
    pane.apply_filter()
    (whale_too,) = made(qtbot, window, "a grey whale")
    settled(qtbot, window, ["a grey whale"])
    assert pane.selected_rows() == [2] and window.details_view.entry.path == whale_too

    # Another process (the CLI) writes into the library as the job ends: its image is newer.
    pane.sort_combo.setCurrentIndex(0)
    pane.apply_filter()
    other = LibraryStore(ldstudio_home / "library", reconcile=False)

    def cli_writes(_event: object) -> None:
        other.add_image(
            Image.new("RGB", (64, 64), "red"),
            GenerationParams(prompt="from the cli", seed=1, width=64, height=64),
            model_name="tiny",
        )

    window.controller.job_finished.connect(cli_writes)
    try:
        (mine,) = made(qtbot, window, "made in the window")
    finally:
        window.controller.job_finished.disconnect(cli_writes)
        other.close()
    settled(qtbot, window, ["made in the window"])
    assert window.details_view.entry.path == mine
    assert window.library_model.entry_at(0).prompt == "from the cli"  # row 0 is not ours


def test_delete_pressed_again_during_a_move_is_one_request_another_image_is_another(
    qtbot, tmp_path: Path
) -> None:
    from test_gui_library import synthetic_library

    from ldstudio.qt.library_model import LibraryModel
    from ldstudio.qt.library_pane import LibraryPane

    store = synthetic_library(tmp_path / "library", 5)
    model = LibraryModel(store, poll_revision=False)
    pane = LibraryPane(model)
    qtbot.addWidget(pane)
    try:
        with qtbot.waitSignal(model.count_changed):
            model.refresh()
        model.entry_at(0)
        qtbot.waitUntil(lambda: model.entry_at(1) is not None)
        requests: list[object] = []
        pane.delete_requested.connect(requests.append)
        pane.select_row(0)
        pane.actions_by_name["delete"].trigger()
        pane.actions_by_name["delete"].trigger()  # the same image, still on its way
        assert len(requests) == 1
        pane.select_row(1)
        pane.actions_by_name["delete"].trigger()
        assert [r.known for r in requests] == [{0: model.loaded_id(0)}, {1: model.loaded_id(1)}]
        # Nothing highlighted: Delete takes nothing, whatever has the focus.
        pane.view.clearSelection()
        assert pane.view.currentIndex().isValid()
        pane.actions_by_name["delete"].trigger()
        assert len(requests) == 2
    finally:
        model.close()
        store.close()


def test_a_row_chosen_by_the_window_is_highlighted_whatever_keys_are_held(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    made(qtbot, window, "one", "two")
    pane = window.library_pane
    settled(qtbot, window, ["two"])  # the finished job highlighted its own image, row 0
    # Ctrl held (as the last key event left it): the view's own setCurrentIndex would toggle
    # row 0 off, and the window would show an image it does not highlight.
    prompt = window.prompt_pane.prompt_edit
    qtbot.keyClick(prompt, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    try:
        pane.select_row(0)
        assert pane.selected_rows() == [0]
        pane.select_row(1)
        assert pane.selected_rows() == [1]
        settled(qtbot, window, ["one"])
    finally:
        qtbot.keyClick(prompt, Qt.Key.Key_End)  # let go of Ctrl for the tests after this one
