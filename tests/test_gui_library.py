"""The library browser: virtual paged model, filter bar, detail view and actions (pytest-qt)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from library_support import A1111_TEXT, png_with_text
from PIL import Image
from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import QMessageBox

from ldstudio.core.library import LibraryEntry, LibraryFilter, LibraryStore, NewEntry
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import ReadResult, read_file
from ldstudio.qt import library_model
from ldstudio.qt.image_details import (
    ExportDialog,
    ImageDetailsView,
    LibraryActions,
    confirm_empty_trash,
    failures_text,
    parameter_rows,
)
from ldstudio.qt.library_model import PAGE_SIZE, EntryRole, LibraryModel
from ldstudio.qt.library_pane import LibraryPane, parse_tags

pytestmark = pytest.mark.gui

ROWS = 300
DAY = 86_400.0
NOW = time.time()
MODELS = ("sd15", "sdxl", "tiny")


def synthetic_library(root: Path, count: int = ROWS) -> LibraryStore:
    """A library of `count` rows whose files are hard links to one small PNG (fast)."""
    store = LibraryStore(root, reconcile=False)
    seed_png = root / "seed.png"
    Image.new("RGB", (48, 32), (30, 90, 200)).save(seed_png)
    folder = store.images_dir / "synthetic"
    folder.mkdir(parents=True)

    def rows() -> Iterator[NewEntry]:
        for i in range(count):
            path = folder / f"{i:05d}.png"
            os.link(seed_png, path)
            word = "castle" if i % 10 == 0 else "forest"
            yield NewEntry(
                path=path,
                created=NOW - (count - i) * DAY / 4,  # row i is newer than row i - 1
                prompt=f"a {word} number {i}",
                model=MODELS[i % 3],
                seed=1000 + i,
                width=48,
                height=32,
                steps=20,
                guidance_scale=7.0,
                scheduler="Euler a",
                params_json=GenerationParams(
                    prompt=f"a {word} number {i}", seed=1000 + i, width=64, height=64
                ).to_json(),
                mtime_ns=path.stat().st_mtime_ns,
                file_size=path.stat().st_size,
            )

    store.add_entries(rows())
    seed_png.unlink()
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LibraryStore]:
    s = synthetic_library(tmp_path / "library")
    yield s
    s.close()


@pytest.fixture
def model(qtbot, store: LibraryStore) -> Iterator[LibraryModel]:
    m = LibraryModel(store, poll_revision=False)
    with qtbot.waitSignal(m.count_changed):
        m.refresh()
    yield m
    m.close()


def load_rows(qtbot, model: LibraryModel, *rows: int) -> list[LibraryEntry]:
    for row in rows:
        model.entry_at(row)
    qtbot.waitUntil(lambda: all(model.entry_at(r) is not None for r in rows))
    return [model.entry_at(r) for r in rows]  # type: ignore[misc]


# -- model ---------------------------------------------------------------------------------------


def test_rows_come_from_count_and_pages_load_lazily_newest_first(qtbot, model) -> None:
    assert model.rowCount() == ROWS
    assert model._pages == {}  # nothing fetched before anyone asks
    (first,) = load_rows(qtbot, model, 0)
    assert first.prompt == f"a {'castle' if (ROWS - 1) % 10 == 0 else 'forest'} number {ROWS - 1}"
    assert list(model._pages) == [0]  # only the page asked for
    (late,) = load_rows(qtbot, model, 2 * PAGE_SIZE + 5)
    assert late.prompt.endswith(f"number {ROWS - 1 - (2 * PAGE_SIZE + 5)}")
    assert sorted(model._pages) == [0, 2]
    index = model.index(2 * PAGE_SIZE + 5)
    assert model.data(index, EntryRole) == late
    assert "seed 1" in model.data(index, Qt.ItemDataRole.ToolTipRole)
    assert model.row_of(late.id) == 2 * PAGE_SIZE + 5


def test_filters_change_the_count(qtbot, model, store: LibraryStore) -> None:
    def count_for(f: LibraryFilter) -> int:
        with qtbot.waitSignal(model.count_changed):
            model.set_filter(f)
        return model.rowCount()

    assert count_for(LibraryFilter(text="castle")) == ROWS // 10
    assert count_for(LibraryFilter(model="sdxl")) == ROWS // 3
    entry = store.page(LibraryFilter(), 0, 1)[0]
    store.set_favourite(entry.id, True)
    store.add_tags(entry.id, ["keeper"])
    assert count_for(LibraryFilter(favourites=True)) == 1
    assert count_for(LibraryFilter(tags=("keeper",))) == 1
    # Rows are 6 hours apart: the last 2 days hold the 8 newest.
    assert count_for(LibraryFilter(since=NOW - 2 * DAY - 1, until=NOW + 1)) == 8
    store.trash([entry.id])
    assert count_for(LibraryFilter(trashed=True)) == 1
    assert count_for(LibraryFilter()) == ROWS - 1


def test_results_of_an_old_filter_are_dropped(qtbot, model) -> None:
    model.set_filter(LibraryFilter(text="forest"))
    model.set_filter(LibraryFilter(text="castle"))  # before the first count came back
    qtbot.waitUntil(lambda: model.rowCount() == ROWS // 10)
    (entry,) = load_rows(qtbot, model, 0)
    assert "castle" in entry.prompt
    qtbot.wait(50)
    assert model.rowCount() == ROWS // 10  # the late "forest" count never landed


def test_thumbnails_are_built_off_thread_and_cached(qtbot, model, store) -> None:
    (entry,) = load_rows(qtbot, model, 3)
    placeholder = model.data(model.index(3), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: model.has_thumbnail(entry.id))
    assert store.thumbnail_path(entry).is_file()  # cached on disk for the next start
    icon = model.data(model.index(3), Qt.ItemDataRole.DecorationRole)
    assert icon is not placeholder
    assert icon.pixmap(48, 48).toImage().pixelColor(10, 10).blue() > 150


def test_a_broken_file_gets_the_broken_icon_not_a_crash(qtbot, model, store) -> None:
    (entry,) = load_rows(qtbot, model, 1)
    entry.path.unlink()
    entry.path.write_bytes(b"not an image")
    model.data(model.index(1), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: entry.id in model._thumb_failed)
    assert model.data(model.index(1), Qt.ItemDataRole.DecorationRole) is model._broken


def test_new_images_insert_at_the_top_and_other_writers_are_noticed(
    qtbot, model, store: LibraryStore, tmp_path: Path
) -> None:
    load_rows(qtbot, model, 0)
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    params = GenerationParams(prompt="a brand new lighthouse", seed=7, width=64, height=64)
    store.add_image(Image.new("RGB", (64, 64), "red"), params, model_name="tiny")
    with qtbot.waitSignal(model.count_changed):
        model.refresh()
    assert inserted == [(0, 0)] and model.rowCount() == ROWS + 1
    (top,) = load_rows(qtbot, model, 0)
    assert top.prompt == "a brand new lighthouse"

    # Another process writing the same library: the revision poll refreshes the view.
    model._poll.setInterval(30)
    model._poll.start()
    with LibraryStore(store.root, reconcile=False) as other:
        other.add_image(Image.new("RGB", (64, 64), "blue"), params, model_name="tiny")
    qtbot.waitUntil(lambda: model.rowCount() == ROWS + 2, timeout=3000)


def test_scrolling_far_only_fetches_what_is_wanted_now(qtbot, model, monkeypatch) -> None:
    # Ask for every page at once, as a fast scroll would: only the newest few are fetched.
    for row in range(0, ROWS, PAGE_SIZE // 4):
        model.entry_at(row)
    qtbot.waitUntil(lambda: not model.is_busy())
    assert ROWS // PAGE_SIZE in model._pages  # the last one asked for
    assert len(model._pages) <= library_model.PAGE_REQUESTS_KEPT + 1


# -- pane ---------------------------------------------------------------------------------------


@pytest.fixture
def pane(qtbot, model) -> LibraryPane:
    widget = LibraryPane(model)
    qtbot.addWidget(widget)
    widget.resize(600, 500)
    widget.show()
    return widget


def test_filter_bar_builds_the_filter(qtbot, pane: LibraryPane, model) -> None:
    assert "&Library — 300 images" in pane.title.text()
    with qtbot.waitSignal(model.count_changed, timeout=3000):
        pane.search_edit.setText("castle")  # debounced
    assert model.rowCount() == ROWS // 10 and "30 of 300 images" in pane.title.text()
    with qtbot.waitSignal(model.choices_loaded):
        model.load_choices()
    assert pane.model_combo.count() == 1 + len(MODELS)
    pane.model_combo.setCurrentIndex(pane.model_combo.findData("sdxl"))
    assert model.filter == LibraryFilter(text="castle", model="sdxl")
    pane.tags_edit.setText(" a, b ,, ")
    pane.apply_filter()
    assert model.filter.tags == ("a", "b")
    pane.sort_combo.setCurrentIndex(1)
    assert model.filter.newest_first is False
    assert parse_tags("x,,y ") == ("x", "y")


def test_a_backwards_date_range_is_refused_with_a_message(pane: LibraryPane, model) -> None:
    pane.dates_check.setChecked(True)
    before = model.filter
    pane.since_edit.setDate(QDate(2030, 5, 2))
    pane.until_edit.setDate(QDate(2030, 5, 1))
    assert not pane.problem.isHidden()
    assert "2030-05-02 is after 2030-05-01" in pane.problem.text()
    assert model.filter.since == before.since or model.filter.since is not None
    pane.until_edit.setDate(QDate(2030, 5, 3))
    assert pane.problem.isHidden()
    f = model.filter
    assert f.until is not None and f.since is not None
    assert f.until - f.since == pytest.approx(2 * DAY, abs=3600)  # the end day is included


def test_context_menu_and_intents(qtbot, pane: LibraryPane, model) -> None:
    (entry,) = load_rows(qtbot, model, 0)
    pane.select_row(0)
    assert pane.current_entry() == entry
    texts = [a.text() for a in pane.context_menu_for(entry).actions() if a.text()]
    assert "Reuse &parameters" in texts and "&Delete (move to trash)" in texts
    assert "&Restore from trash" not in texts
    with qtbot.waitSignal(pane.delete_requested) as deleted:
        pane.actions_by_name["delete"].trigger()
    (selection,) = deleted.args
    assert selection.rows == (0,) and selection.known == {0: entry.id}
    with qtbot.waitSignal(pane.favourite_requested) as fav:
        pane.actions_by_name["favourite"].trigger()
    assert fav.args[0].rows == (0,) and fav.args[1] is True
    with qtbot.waitSignal(pane.save_as_requested) as save:  # one image: a file name to choose
        pane.actions_by_name["save_as"].trigger()
    assert save.args == [entry]
    pane.trash_check.setChecked(True)
    assert model.filter.trashed
    texts = [a.text() for a in pane.context_menu_for(entry).actions() if a.text()]
    assert "&Restore from trash" in texts and "&Empty trash…" in texts
    assert "&Delete (move to trash)" not in texts


def select_rows(pane: LibraryPane, first: int, last: int) -> None:
    """Shift-click style: rows first..last selected, `first` focused."""
    from PySide6.QtCore import QItemSelection, QItemSelectionModel

    model = pane.view.model()
    pane.view.setCurrentIndex(model.index(first))
    pane.view.selectionModel().select(
        QItemSelection(model.index(first), model.index(last)),
        QItemSelectionModel.SelectionFlag.ClearAndSelect,
    )


def test_many_selected_images_are_acted_on_together(qtbot, pane: LibraryPane, model) -> None:
    entries = load_rows(qtbot, model, 0, 1, 2)
    select_rows(pane, 0, 2)
    assert pane.selected_rows() == [0, 1, 2]
    assert pane.title.text().endswith("· 3 selected")
    texts = [a.text() for a in pane.context_menu_for(entries[0], 3).actions() if a.text()]
    assert "&Delete 3 images (move to trash)" in texts
    assert "Save 3 images to a &folder…" in texts
    assert "&Favourite 3 images" in texts and not pane.actions_by_name["favourite"].isCheckable()
    starred = dataclasses.replace(entries[0], favourite=True)
    texts = [a.text() for a in pane.context_menu_for(starred, 3).actions() if a.text()]
    assert "Un&favourite 3 images" in texts  # the focused image decides: all get unmarked
    # One-image actions are off while several are selected.
    assert not pane.actions_by_name["reuse_params"].isEnabled()
    assert not pane.actions_by_name["copy"].isEnabled()
    with qtbot.waitSignal(pane.save_many_requested) as save:
        pane.actions_by_name["save_as"].trigger()
    assert save.args[0].rows == (0, 1, 2)
    with qtbot.waitSignal(pane.delete_requested) as deleted:
        pane.actions_by_name["delete"].trigger()
    assert deleted.args[0].resolve(model.store) == [e.id for e in entries]
    assert pane.selected_rows() == []  # the rows will hold other images: nothing stays selected
    # Select all: 300 rows, most never loaded; their ids are found when acted on.
    pane.view.selectAll()
    assert pane.title.text().endswith(f"· {ROWS} selected")
    selection = pane.selection()
    assert len(selection) == ROWS and len(selection.known) < ROWS
    assert selection.resolve(model.store) == model.store.ids(model.filter)


def test_a_selection_follows_its_images_or_is_dropped(qtbot, pane: LibraryPane, model, store):
    picked = load_rows(qtbot, model, 0, 1)
    select_rows(pane, 0, 1)
    # A job's new image sorts first: the rows move down and the selection moves with them.
    params = GenerationParams(prompt="a brand new lighthouse", seed=7, width=64, height=64)
    store.add_image(Image.new("RGB", (64, 64), "red"), params, model_name="tiny")
    with qtbot.waitSignal(model.page_loaded):
        model.refresh()
        model.entry_at(0)
    assert pane.selected_rows() == [1, 2]
    assert pane.selection().resolve(store) == [e.id for e in picked]

    # An import of older images: the model cannot know where they sort, and the rows under
    # the selection hold other images after the reload. The selection is dropped, not moved.
    old = store.images_dir / "old.png"
    Image.new("RGB", (8, 8)).save(old)
    store.add_entries([dataclasses.replace(NewEntry.from_file(old), created=NOW - 400 * DAY)])
    with qtbot.waitSignal(model.page_loaded):
        model.refresh()
        model.entry_at(0)
    qtbot.waitUntil(lambda: model.loaded_id(1) is not None)
    # The picked images stayed at rows 1-2; a selection moved to rows 2-3 would be wrong.
    assert [model.loaded_id(1), model.loaded_id(2)] == [e.id for e in picked]
    assert pane.selected_rows() == []


def test_a_selection_refuses_to_resolve_after_the_library_moved(qtbot, model, store) -> None:
    from ldstudio.core.library import LibraryError

    (first,) = load_rows(qtbot, model, 0)
    far = [PAGE_SIZE * 2 + 1, PAGE_SIZE * 2 + 2]  # a page never loaded
    selection = model.selection([0, *far])
    assert selection.known == {0: first.id}
    ids = store.ids(model.filter)
    assert selection.resolve(store) == [ids[0], *(ids[r] for r in far)]
    # A new image lands at the top: row 0 is another image now, so the rows mean other images.
    png = store.images_dir / "new.png"
    Image.new("RGB", (8, 8)).save(png)
    store.add_entries([NewEntry.from_file(png)])
    with pytest.raises(LibraryError, match="library changed while these images were selected"):
        selection.resolve(store)


# -- details and actions ------------------------------------------------------------------------


@pytest.fixture
def actions(model, store) -> Iterator[LibraryActions]:
    a = LibraryActions(store, model)
    yield a
    a.close()


def test_details_show_every_parameter_and_the_image(qtbot, model, actions, store) -> None:
    (entry,) = load_rows(qtbot, model, 0)
    view = ImageDetailsView(actions)
    qtbot.addWidget(view)
    view.resize(500, 700)
    view.show()
    view.show_entry(entry)
    text = view.parameters_text()
    for expected in (entry.prompt, "sd15" if entry.model == "sd15" else entry.model, "1299"):
        assert expected in text
    assert "Euler a" in text and "48×32" in text and str(entry.path) in text
    qtbot.waitUntil(lambda: not view.shown_image().isNull())
    assert view.shown_image().width() == 48
    labels = [label for label, _ in parameter_rows(entry)]
    assert labels[:4] == ["Prompt", "Model", "Seed", "Size"]


def test_favourite_tag_trash_restore_and_empty(qtbot, model, actions, store) -> None:
    (entry,) = load_rows(qtbot, model, 0)
    view = ImageDetailsView(actions)
    qtbot.addWidget(view)
    view.show_entry(entry)
    with qtbot.waitSignal(actions.entry_changed):
        view.buttons["favourite"].click()
    assert store.get(entry.id).favourite and view.buttons["favourite"].isChecked()
    view.tag_edit.setText("keeper, blue")
    with qtbot.waitSignal(actions.entry_changed):
        view.tag_edit.returnPressed.emit()
    assert store.get(entry.id).tags == ("blue", "keeper")
    assert [view.tag_list.item(i).text() for i in range(view.tag_list.count())] == [
        "blue",
        "keeper",
    ]
    with qtbot.waitSignal(actions.entry_changed):
        actions.remove_tag(store.get(entry.id), "blue")
    assert store.get(entry.id).tags == ("keeper",)

    view.buttons["delete"].click()
    qtbot.waitUntil(lambda: model.rowCount() == ROWS - 1)
    trashed = store.get(entry.id)
    assert trashed.trashed_at is not None and trashed.path.is_file()  # moved, not unlinked
    assert not entry.path.exists()
    view.show_entry(trashed)
    assert view.buttons["restore"].isVisibleTo(view) and not view.buttons["delete"].isVisibleTo(
        view
    )
    view.buttons["restore"].click()
    qtbot.waitUntil(lambda: model.rowCount() == ROWS)
    assert store.get(entry.id).path == entry.path and entry.path.is_file()

    with qtbot.waitSignal(actions.message):
        actions.trash(store.get(entry.id))
    assert store.count(LibraryFilter(trashed=True)) == 1
    with qtbot.waitSignal(actions.message) as note:
        actions.empty_trash()
    assert note.args == ["Trash emptied: 1 image deleted"]
    assert store.count(LibraryFilter(trashed=True)) == 0 and store.count() == ROWS - 1


def test_bulk_favourite_trash_restore_and_save(qtbot, model, actions, store, tmp_path) -> None:
    entries = load_rows(qtbot, model, 0, 1, 2, 3)
    selection = model.selection([1, 2, 3], current=entries[2])
    changed: list[LibraryEntry] = []
    actions.entry_changed.connect(changed.append)
    with qtbot.waitSignal(actions.message) as note:
        actions.set_favourite_rows(selection, True)
    assert note.args == ["3 images marked as favourites"]
    # The focused image comes back as it is now, so its details view shows the star.
    assert [(e.id, e.favourite) for e in changed] == [(entries[2].id, True)]
    assert [store.get(e.id).favourite for e in entries] == [False, True, True, True]

    out = tmp_path / "out"
    out.mkdir()
    taken = out / f"{entries[1].id}-{entries[1].path.stem}.jpg"
    taken.write_bytes(b"the user's own file")
    with qtbot.waitSignal(actions.message) as note:
        actions.export_rows(selection, out, fmt="jpeg", keep_metadata=True)
    assert note.args == [f"Saved 3 images to {out} (with generation metadata)"]
    assert taken.read_bytes() == b"the user's own file"  # never overwritten
    assert len(list(out.glob("*.jpg"))) == 4
    with Image.open(out / f"{entries[1].id}-{entries[1].path.stem}-2.jpg") as saved:
        assert (saved.format, saved.size) == ("JPEG", (48, 32))

    with qtbot.waitSignal(actions.message) as note:
        actions.trash_rows(selection)
    assert note.args == ["3 images moved to the trash (restore them from Trash)"]
    assert store.count(LibraryFilter(trashed=True)) == 3
    qtbot.waitUntil(lambda: model.rowCount() == ROWS - 3)
    model.set_filter(LibraryFilter(trashed=True))
    qtbot.waitUntil(lambda: model.rowCount() == 3)
    trashed = load_rows(qtbot, model, 0, 1, 2)
    with qtbot.waitSignal(actions.message) as note:
        actions.restore_rows(model.selection([0, 1, 2]))
    assert note.args == ["3 images restored to the library"]
    assert sorted(e.id for e in trashed) == sorted(e.id for e in entries[1:])
    assert all(store.get(e.id).path == e.path and e.path.is_file() for e in entries)


def test_bulk_save_reports_images_it_could_not_save(qtbot, model, actions, store, tmp_path):
    entries = load_rows(qtbot, model, 0, 1)
    entries[1].path.unlink()  # a hard link to the other rows' file: replace, not overwrite
    entries[1].path.write_bytes(b"not an image any more")
    failures: list[str] = []
    actions.failed.connect(failures.append)
    with qtbot.waitSignal(actions.message) as note:
        actions.export_rows(
            model.selection([0, 1]), tmp_path / "new", fmt="png", keep_metadata=False
        )
    assert note.args[0].startswith("Saved 1 image to")
    assert len(failures) == 1 and failures[0].startswith(
        f"1 image not saved: {entries[1].path.name}: "
    )
    assert "not a readable image" in failures[0]


def test_saving_into_the_library_is_refused(qtbot, model, actions, store):
    """The next reconcile would adopt the copies: every image would be there twice."""
    entries = load_rows(qtbot, model, 0, 1)
    failures: list[str] = []
    actions.failed.connect(failures.append)
    inside = store.root / "images" / "copies"
    with qtbot.waitSignal(actions.failed):
        actions.export_rows(model.selection([0, 1]), inside, fmt="png", keep_metadata=True)
    with qtbot.waitSignal(actions.failed):
        actions.export(entries[0], store.root / "copy.png", keep_metadata=True)
    assert len(failures) == 2
    assert all(f"is inside the image library ({store.root})" in text for text in failures)
    assert not inside.exists() and not (store.root / "copy.png").exists()


def test_failure_lists_name_the_first_few_and_count_the_rest() -> None:
    failures = [(Path(f"/x/{i}.png"), "unreadable") for i in range(7)]
    text = failures_text(failures, "not imported", shown=2)
    assert text == "7 images not imported: 0.png: unreadable; 1.png: unreadable; and 5 more"
    assert failures_text(failures[:1], "not saved") == "1 image not saved: 0.png: unreadable"
    with_path = [(Path("/x/a.png"), "/x/a.png: not a readable image (truncated)")]
    assert failures_text(with_path, "not imported") == (
        "1 image not imported: a.png: not a readable image (truncated)"
    )


def test_many_images_dialog_asks_for_a_folder(qtbot, tmp_path) -> None:
    dialog = ExportDialog(None, count=5)
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Save 5 images to a folder"
    dialog.format_combo.setCurrentIndex(dialog.format_combo.findData("webp"))
    assert dialog.format() == "webp"
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    dialog.path_edit.setText(str(a_file))
    with pytest.raises(ValueError, match="is a file; give a folder"):
        dialog.choice()
    dialog.path_edit.setText(str(tmp_path / "new folder"))
    assert dialog.choice() == (tmp_path / "new folder", True)


def test_a_refused_tag_comes_back_to_the_box_and_empty_rows_are_not_shown(
    qtbot, model, actions, store
) -> None:
    (entry,) = load_rows(qtbot, model, 0)
    view = ImageDetailsView(actions)
    qtbot.addWidget(view)
    view.show_entry(entry)
    view.tag_edit.setText("fine, " + "y" * 150)
    with qtbot.waitSignal(actions.failed):
        view.tag_edit.returnPressed.emit()
    assert view.tag_edit.text() == "fine, " + "y" * 150  # to correct, not to retype
    assert store.get(entry.id).tags == ()
    assert all(label != "Loras" for label, _value in parameter_rows(entry))  # () is empty


def test_empty_trash_asks_first_with_no_as_default(qtbot, monkeypatch) -> None:
    asked: list[tuple] = []

    def fake_warning(*args):
        asked.append(args)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "warning", fake_warning)
    monkeypatch.setattr(QMessageBox, "information", lambda *a: asked.append(a))
    from PySide6.QtWidgets import QWidget

    parent = QWidget()
    qtbot.addWidget(parent)
    assert confirm_empty_trash(parent, 3) is False
    assert "Delete the 3 images" in asked[0][2] and asked[0][4] == QMessageBox.StandardButton.No
    assert confirm_empty_trash(parent, 0) is False and "already empty" in asked[1][2]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_save_as_keeps_or_strips_metadata(qtbot, tmp_path, actions, store, suffix) -> None:
    params = GenerationParams(prompt="a private prompt", seed=99, width=64, height=64)
    entry = store.add_image(Image.new("RGB", (64, 64), "green"), params, model_name="tiny")
    kept, stripped = tmp_path / f"kept{suffix}", tmp_path / f"stripped{suffix}"
    with qtbot.waitSignal(actions.message) as note:
        actions.export(entry, kept, keep_metadata=True)
    assert "with generation metadata" in note.args[0]
    with qtbot.waitSignal(actions.message):
        actions.export(entry, stripped, keep_metadata=False)
    found = read_file(kept)
    assert found.found and found.fields["prompt"] == "a private prompt"
    assert found.fields["seed"] == 99
    assert not read_file(stripped).found
    assert b"private" not in stripped.read_bytes()


def test_export_dialog_validates_and_follows_the_format(qtbot, tmp_path) -> None:
    dialog = ExportDialog(tmp_path / "x.png")
    qtbot.addWidget(dialog)
    dialog.format_combo.setCurrentIndex(1)
    assert dialog.path_edit.text().endswith("x.jpg")
    dialog.keep_check.setChecked(False)
    assert dialog.choice() == (Path(dialog.path_edit.text()), False)
    dialog.path_edit.setText(str(tmp_path / "x.gif"))
    dialog._accept()
    assert "allowed: .jpeg, .jpg, .png, .webp" in dialog.problem.text()
    assert dialog.result() == 0  # not accepted


def test_save_as_asks_before_replacing_a_file(qtbot, tmp_path, monkeypatch) -> None:
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"the user's")
    asked: list[str] = []
    answer = [QMessageBox.StandardButton.No]

    def question(_parent, _title, text, _buttons, default):
        asked.append(text)
        assert default == QMessageBox.StandardButton.No
        return answer[0]

    monkeypatch.setattr(QMessageBox, "question", question)
    dialog = ExportDialog(tmp_path / "x.png")
    qtbot.addWidget(dialog)
    dialog.path_edit.setText(str(existing))
    dialog._accept()
    assert asked and str(existing) in asked[0] and dialog.result() == 0  # No: stays open
    answer[0] = QMessageBox.StandardButton.Yes
    dialog._accept()
    assert dialog.result() == 1
    assert existing.read_bytes() == b"the user's"  # the dialog only asks; saving replaces
    dialog.path_edit.setText(str(tmp_path / "new.png"))
    asked.clear()
    dialog._accept()
    assert asked == []  # a free name needs no question


def test_reuse_all_and_seed(qtbot, model, actions, store, tmp_path) -> None:
    (entry,) = load_rows(qtbot, model, 0)
    with qtbot.waitSignal(actions.restore_requested) as got:
        actions.reuse_all(entry)
    result: ReadResult = got.args[0]
    assert result.params == entry.params and result.source == "ldstudio"
    with qtbot.waitSignal(actions.seed_requested) as seed:
        actions.reuse_seed(entry)
    assert seed.args == [entry.seed]
    big = dataclasses.replace(entry, seed=4_000_000_000)  # seeds go past a C++ int
    with qtbot.waitSignal(actions.seed_requested) as seed:
        actions.reuse_seed(big)
    assert seed.args == [4_000_000_000]

    # An A1111 image indexed in place has no exact params row: its file is read instead.
    path = png_with_text(tmp_path / "outside" / "a1111.png", {"parameters": A1111_TEXT})
    report = store.import_folder(path.parent)
    foreign = store.get(report.added[0])
    with qtbot.waitSignal(actions.restore_requested) as got:
        actions.reuse_all(dataclasses.replace(foreign, params_json=None))
    assert got.args[0].source == "a1111" and got.args[0].fields["seed"] == 965400086

    plain = png_with_text(tmp_path / "plain" / "plain.png", {})
    (plain_id,) = store.import_folder(plain.parent).added
    with qtbot.waitSignal(actions.failed) as failed:
        actions.reuse_all(store.get(plain_id))
    assert "no generation metadata found; nothing to reuse" in failed.args[0]


def test_a_failing_action_reports_and_the_worker_survives(qtbot, actions, store, tmp_path):
    entry = store.page(LibraryFilter(), 0, 1)[0]
    with qtbot.waitSignal(actions.failed) as failed:
        actions.export(entry, tmp_path / "out.bmp", keep_metadata=True)
    assert "Could not save" in failed.args[0] and "allowed" in failed.args[0]
    with qtbot.waitSignal(actions.message):
        actions.export(entry, tmp_path / "out.png", keep_metadata=True)


# -- controller: the parts wired together ------------------------------------------------------


def test_controller_reconciles_restores_and_reuses(qtbot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QWidget

    from ldstudio.qt.library_controller import LibraryController
    from ldstudio.qt.params_pane import ParamsPane
    from ldstudio.qt.prompt_pane import PromptPane

    store = synthetic_library(tmp_path / "library", 20)
    # An orphan: a file in the library that the index does not know (a crash before commit).
    orphan = png_with_text(store.images_dir / "2026-01" / "orphan.png", {"parameters": A1111_TEXT})
    window, prompt_pane, params_pane = QWidget(), PromptPane(), ParamsPane()
    for widget in (window, prompt_pane, params_pane):
        qtbot.addWidget(widget)
    controller = LibraryController(store, prompt_pane, params_pane, window, poll_revision=False)
    controller.auto_confirm = True
    notes: list[str] = []
    controller.status_message.connect(notes.append)
    try:
        with qtbot.waitSignal(controller.reconciled, timeout=5000) as done:
            controller.start()
        assert done.args[0].adopted == [orphan]
        qtbot.waitUntil(lambda: controller.model.rowCount() == 21)
        assert any("1 image found" in n for n in notes)

        # Reuse from the grid: the panes show the image's exact parameters.
        controller.pane.select_row(0)
        qtbot.waitUntil(lambda: controller.current_entry() is not None)
        entry = controller.current_entry()
        assert controller.details.entry == entry  # selecting shows the details
        controller.pane.actions_by_name["reuse_params"].trigger()
        qtbot.waitUntil(lambda: prompt_pane.prompt() == entry.prompt)
        assert params_pane.params(entry.prompt, "").seed == entry.seed

        # Opening a file of another tool restores what it holds.
        controller.open_image(orphan)
        qtbot.waitUntil(lambda: prompt_pane.prompt().startswith("a lighthouse at dusk"))
        shown = params_pane.params("x", "")
        assert (shown.seed, shown.steps, shown.scheduler) == (965400086, 28, "DPM++ 2M Karras")
        assert any("model 'v1-5-pruned'" in n for n in notes)

        errors: list[str] = []
        controller.error.connect(errors.append)
        controller.open_image(png_with_text(tmp_path / "plain.png", {}))
        qtbot.waitUntil(lambda: bool(errors))
        assert errors[0] == "plain.png: no generation metadata found; nothing to restore"

        # Delete from the grid, then empty the trash (confirmed).
        controller.pane.actions_by_name["delete"].trigger()
        qtbot.waitUntil(lambda: store.count(LibraryFilter(trashed=True)) == 1)
        controller.empty_trash()
        qtbot.waitUntil(lambda: store.count(LibraryFilter(trashed=True)) == 0)
        qtbot.waitUntil(lambda: controller.model.rowCount() == 20)
    finally:
        controller.close()
        store.close()


def test_controller_imports_a_folder_of_other_tools_images(
    qtbot, tmp_path: Path, monkeypatch
) -> None:
    from PySide6.QtWidgets import QWidget

    from ldstudio.qt.library_controller import LibraryController
    from ldstudio.qt.params_pane import ParamsPane
    from ldstudio.qt.prompt_pane import PromptPane

    store = synthetic_library(tmp_path / "library", 5)
    outside = tmp_path / "a1111-outputs"
    png_with_text(outside / "00001.png", {"parameters": A1111_TEXT})
    png_with_text(outside / "day2" / "00002.png", {})
    (outside / "broken.png").write_bytes(b"half a file")
    window, prompt_pane, params_pane = QWidget(), PromptPane(), ParamsPane()
    for widget in (window, prompt_pane, params_pane):
        qtbot.addWidget(widget)
    controller = LibraryController(store, prompt_pane, params_pane, window, poll_revision=False)
    notes: list[str] = []
    errors: list[str] = []
    controller.status_message.connect(notes.append)
    controller.error.connect(errors.append)
    progress: list[str] = []
    controller.import_progress.connect(progress.append)
    monkeypatch.setattr("ldstudio.qt.library_controller.IMPORT_PROGRESS_S", 0.0)
    try:
        controller.model.refresh()
        qtbot.waitUntil(lambda: controller.model.rowCount() == 5)
        controller.import_folder(outside)
        qtbot.waitUntil(lambda: controller.model.rowCount() == 7)
        qtbot.waitUntil(lambda: len(errors) == 1)
        assert notes[-1] == (
            f"Imported 2 images from {outside} (indexed in place); "
            "0 already in the library, 1 skipped"
        )
        assert errors[0].startswith("1 image not imported: broken.png: ")
        # A long import says how far it got (throttled; here every entry): 3 files, 1 folder.
        assert progress[-1] == f"Importing images from {outside}: 3 of 4 files looked at…"
        imported = store.entry_for_path(outside / "00001.png")
        assert imported is not None and imported.prompt.startswith("a lighthouse at dusk")
        assert (outside / "00001.png").is_file()  # indexed in place: the file stays

        # Again: nothing new; and the library's own folder is refused with a reason.
        controller.import_folder(outside)
        qtbot.waitUntil(lambda: "2 already in the library" in notes[-1])
        controller.import_folder(store.images_dir)
        qtbot.waitUntil(lambda: len(errors) == 3)
        assert "is inside the library already" in errors[-1]
    finally:
        controller.close()
        store.close()


def test_a_refresh_keeps_the_place_a_new_filter_starts_over(qtbot, model, store) -> None:
    events: list[str] = []
    model.modelReset.connect(lambda: events.append("reset"))
    model.rowsRemoved.connect(lambda _p, first, last: events.append(f"removed {first}-{last}"))
    (entry,) = load_rows(qtbot, model, 10)
    store.trash([entry.id])
    with qtbot.waitSignal(model.count_changed):
        model.refresh()
    assert events == [f"removed {ROWS - 1}-{ROWS - 1}"]  # no reset: the view keeps its scroll
    (now,) = load_rows(qtbot, model, 10)
    assert now.id != entry.id  # the pages were reloaded: row 10 is the next image now
    with qtbot.waitSignal(model.count_changed):
        model.set_filter(LibraryFilter(model="sd15"))
    assert events[-1] == "reset"
