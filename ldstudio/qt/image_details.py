"""The library's detail view and the actions on its images; GUI thread, disk work on a worker.

`ImageDetailsView` shows one library image large with every recorded parameter, and buttons
for the actions (its Upscale… is the window's). `LibraryActions` does them: favourite, tags,
trash, restore, empty trash, save as (PNG/JPEG/WebP, metadata kept or stripped), copy, open
folder, and "reuse" (which hands a `ReadResult` to whoever restores parameters, and for an image
made from a source, a `MadeFrom` to whoever holds the canvas, or for an upscale's image the
entry to whoever opens the Upscale dialog), and "send to canvas". Favourite, trash, restore and
save also take a `RowSelection` of many images. Store calls and image decoding run on one worker
thread; results come back as queued signals.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core import export
from ldstudio.core.library import LibraryEntry, LibraryStore
from ldstudio.core.readers import PARAM_FIELDS, SOURCE_LABELS, ReadResult, read_file
from ldstudio.core.request import KIND_UPSCALE
from ldstudio.qt import refcount_guard
from ldstudio.qt.images import load_qimage
from ldstudio.qt.library_model import LibraryModel, RowSelection
from ldstudio.qt.made_from import (
    GridLinks,
    MadeFrom,
    MadeFromView,
    open_source,
    read_grid_links,
    read_made_from,
    thumbnail,
)
from ldstudio.qt.vary import VARY_STRENGTHS, VARY_TIPS, varied_request, vary_problem

log = logging.getLogger(__name__)

EXPORT_FORMATS = (("PNG", "png", ".png"), ("JPEG", "jpeg", ".jpg"), ("WebP", "webp", ".webp"))


def images_text(count: int) -> str:
    return f"{count:,} image{'s' if count != 1 else ''}"


def failures_text(failures: list[tuple[Path, str]], what: str, shown: int = 5) -> str:
    """'3 images not saved: a.png: why; b.png: why; and 1 more' — the first few, named."""
    # Core messages often start with the full path already: name each file once.
    listed = "; ".join(
        f"{path.name}: {why.removeprefix(f'{path}: ')}" for path, why in failures[:shown]
    )
    more = len(failures) - shown
    return f"{images_text(len(failures))} {what}: {listed}" + (
        f"; and {more} more" if more > 0 else ""
    )


def entry_result(entry: LibraryEntry) -> ReadResult | None:
    """The entry's exact parameters as a ReadResult, or None when the index has none."""
    params = entry.params
    if params is None:
        return None
    source = entry.source if entry.source in SOURCE_LABELS else "ldstudio"
    fields = {name: getattr(params, name) for name in PARAM_FIELDS}
    # `extra` too: what the image's tool wrote beyond these (Clip skip, Hires…) is listed as
    # not applied when the parameters are reused, not dropped without a word.
    # The request too: a hires fix (or a canvas job's kind) is the index's, not in params.
    return ReadResult(
        source=source, fields=fields, extra=entry.extra, params=params, request=entry.request
    )


class _Relay(QObject):
    finished = Signal(object, object)  # callback, result
    failed = Signal(str)


class LibraryActions(QObject):
    """Changes to library images, run off the GUI thread; the model refreshes after each."""

    message = Signal(str)  # a short success note for the status bar
    failed = Signal(str)  # a readable error naming the image and what went wrong
    changed = Signal()  # the library changed: views recount
    moved = Signal(object)  # list of image ids trashed or restored (before `changed`)
    entry_changed = Signal(object)  # LibraryEntry as it is now
    restore_requested = Signal(object)  # ReadResult: put these parameters in the panes
    seed_requested = Signal(object)  # int up to 2**32 - 1: too big for a C++ int argument
    image_loaded = Signal(object, QImage)  # image id, the full image
    # image id, and (MadeFrom, source thumbnail, mask thumbnail) or None (not made from one)
    made_from_loaded = Signal(object, object)
    grid_loaded = Signal(object, object)  # image id, GridLinks | None (an X/Y/Z plot's)
    canvas_requested = Signal(object)  # MadeFrom: put this source, mask and settings on a canvas
    canvas_source = Signal(object, str)  # PIL image and its label: a new source for the canvas
    # LibraryEntry of an upscale's image: the Upscale dialog again on its source and settings
    upscale_reused = Signal(object)
    vary_requested = Signal(object)  # Request: an image's own txt2img job with a variation seed

    def __init__(
        self, store: LibraryStore, model: LibraryModel | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        refcount_guard.install()  # one emit per action: see refcount_guard
        self.store = store
        self.model = model
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ldstudio-library-actions")
        self._relay = _Relay()
        self._relay.finished.connect(lambda callback, result: callback(result))
        self._relay.failed.connect(self.failed)
        self._closed = False
        if model is not None:
            self.changed.connect(model.refresh)

    def run(self, work: Callable[[], Any], then: Callable[[Any], None], what: str) -> None:
        """`work()` on the worker, then `then(result)` here; errors become `failed(what: ...)`."""
        if self._closed:
            return

        def job() -> None:
            try:
                result = work()
            except Exception as exc:  # every failure is shown to the user, none kills the worker
                shown = self.store.damage(exc) or exc  # a damaged index: how to rebuild it
                log.warning("%s failed: %s", what, shown)
                self._relay.failed.emit(f"{what}: {shown}")
                return
            self._relay.finished.emit(then, result)

        self._pool.submit(job)

    def close(self) -> None:
        """Finish queued work and stop the worker; call before `store.close()`."""
        self._closed = True
        self._pool.shutdown(wait=True)

    # -- favourite and tags ---------------------------------------------------------------------

    def set_favourite(self, entry: LibraryEntry, favourite: bool) -> None:
        def work() -> LibraryEntry:
            self.store.set_favourite(entry.id, favourite)
            return self.store.get(entry.id)

        self.run(work, self._entry_done, f"Could not change favourite of {entry.path.name}")

    def add_tags(self, entry: LibraryEntry, tags: tuple[str, ...]) -> None:
        def work() -> LibraryEntry:
            self.store.add_tags(entry.id, tags)
            return self.store.get(entry.id)

        self.run(work, self._entry_done, f"Could not tag {entry.path.name}")

    def remove_tag(self, entry: LibraryEntry, tag: str) -> None:
        def work() -> LibraryEntry:
            self.store.remove_tags(entry.id, [tag])
            return self.store.get(entry.id)

        self.run(work, self._entry_done, f"Could not untag {entry.path.name}")

    def reload(self, entry: LibraryEntry) -> None:
        """Read the entry again (it changed); `entry_changed` brings it as it is now."""
        self.run(
            lambda: self.store.get(entry.id), self.entry_changed.emit, f"Cannot read {entry.path}"
        )

    def _entry_done(self, entry: LibraryEntry) -> None:
        self.entry_changed.emit(entry)
        self.changed.emit()

    def set_favourite_rows(self, selection: RowSelection, favourite: bool) -> None:
        def work() -> tuple[int, LibraryEntry | None]:
            ids = selection.resolve(self.store)
            count = self.store.set_favourites(ids, favourite)
            current = selection.current
            # The details view shows the focused image: hand it back as it is now.
            return count, self.store.get(current.id) if current and current.id in ids else None

        def done(result: tuple[int, LibraryEntry | None]) -> None:
            count, current = result
            how = "marked as favourites" if favourite else "no longer favourites"
            self.message.emit(f"{images_text(count)} {how}")
            if current is not None:
                self.entry_changed.emit(current)
            self.changed.emit()

        self.run(work, done, f"Could not change favourite of {images_text(len(selection))}")

    # -- trash ----------------------------------------------------------------------------------

    def _move(
        self,
        operation: Callable[[list[int]], list[int]],
        ids: Callable[[], list[int]],
        note: Callable[[int], str],
        what: str,
    ) -> None:
        """Trash or restore `ids()` on the worker; `note(count done)` goes to the status bar."""

        def done(moved: list[int]) -> None:
            self.moved.emit(moved)
            self.message.emit(note(len(moved)))
            self.changed.emit()

        self.run(lambda: operation(ids()), done, what)

    def trash(self, entry: LibraryEntry) -> None:
        name = entry.path.name
        self._move(
            self.store.trash,
            lambda: [entry.id],
            lambda _n: f"{name} moved to the trash (restore it from Trash)",
            f"Could not delete {name}",
        )

    def trash_rows(self, selection: RowSelection) -> None:
        self._move(
            self.store.trash,
            lambda: selection.resolve(self.store),
            lambda n: f"{images_text(n)} moved to the trash (restore them from Trash)",
            f"Could not delete {images_text(len(selection))}",
        )

    def restore(self, entry: LibraryEntry) -> None:
        # In the trash the file has an internal name ("<id>-<name>"): say the image's own.
        home = entry.original_path or entry.path.with_name(entry.path.name.split("-", 1)[-1])

        def work() -> tuple[list[int], str]:
            moved = self.store.restore([entry.id])
            return moved, self.store.get(entry.id).path.name  # a free name if the old was taken

        def done(result: tuple[list[int], str]) -> None:
            moved, name = result
            self.moved.emit(moved)  # as _move does: the views follow the image's new state
            self.message.emit(f"{name} restored to the library")
            self.changed.emit()

        self.run(work, done, f"Could not restore {home.name}")

    def restore_rows(self, selection: RowSelection) -> None:
        self._move(
            self.store.restore,
            lambda: selection.resolve(self.store),
            lambda n: f"{images_text(n)} restored to the library",
            f"Could not restore {images_text(len(selection))}",
        )

    def empty_trash(self) -> None:
        def done(count: int) -> None:
            self.message.emit(f"Trash emptied: {images_text(count)} deleted")
            self.changed.emit()

        self.run(self.store.empty_trash, done, "Could not empty the trash")

    # -- files ----------------------------------------------------------------------------------

    def export(self, entry: LibraryEntry, target: Path, *, keep_metadata: bool) -> None:
        def done(path: Path) -> None:
            kept = "with" if keep_metadata else "without"
            self.message.emit(f"Saved {path} ({kept} generation metadata)")

        def work() -> Path:
            export.check_outside(target.parent, self.store.root)  # reconcile would adopt it
            return export.export_image(entry.path, target, keep_metadata=keep_metadata)

        self.run(
            work,
            done,
            f"Could not save {target}",
        )

    def export_rows(
        self, selection: RowSelection, folder: Path, *, fmt: str, keep_metadata: bool
    ) -> None:
        """Save copies of the selected images into `folder`; existing files are never replaced."""

        def work() -> export.FolderExport:
            export.check_outside(folder, self.store.root)  # reconcile would adopt the copies
            entries = self.store.entries(selection.resolve(self.store))
            return export.export_to_folder(
                [(e.id, e.path) for e in entries], folder, fmt=fmt, keep_metadata=keep_metadata
            )

        def done(report: export.FolderExport) -> None:
            kept = "with" if keep_metadata else "without"
            self.message.emit(
                f"Saved {images_text(len(report.written))} to {folder} ({kept} generation metadata)"
            )
            if report.failed:
                self.failed.emit(failures_text(report.failed, "not saved"))

        self.run(work, done, f"Could not save {images_text(len(selection))} to {folder}")

    def copy(self, entry: LibraryEntry) -> None:
        def done(image: QImage) -> None:
            QGuiApplication.clipboard().setImage(image)
            self.message.emit("Image copied to the clipboard")

        self.run(lambda: load_qimage(entry.path), done, f"Could not copy {entry.path.name}")

    def load_image(self, entry: LibraryEntry) -> None:
        self.run(
            lambda: load_qimage(entry.path),
            lambda image: self.image_loaded.emit(entry.id, image),
            f"Cannot open {entry.path}",
        )

    def open_folder(self, entry: LibraryEntry) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(entry.path.parent)))

    # -- reuse ----------------------------------------------------------------------------------

    def reuse_all(self, entry: LibraryEntry) -> None:
        """Offer the entry's parameters: the index's exact ones, else what its file says; an
        image made from a source also offers its source, mask and settings (`canvas_requested`).
        An upscale's image is the Upscale dialog's job, not the canvas's: `upscale_reused` alone
        (its parameters go to the dialog and, the refine's, to the parameter pane).
        """
        if entry.request is not None and entry.request.kind == KIND_UPSCALE:
            # Its source is a blob, not this file: reusable even when the file is gone.
            self.upscale_reused.emit(entry)
            return
        result = entry_result(entry)
        if result is not None:
            self.restore_requested.emit(result)
        else:

            def done(found: ReadResult) -> None:
                if found.found:
                    self.restore_requested.emit(found)
                else:
                    self.failed.emit(f"{entry.path.name}: {found.message}; nothing to reuse")

            self.run(lambda: read_file(entry.path), done, f"Cannot read {entry.path.name}")
        if not entry.missing:  # made from a source: the canvas gets it back as well
            self.run(
                lambda: read_made_from(self.store, entry),
                self._made_from_reused,
                f"Cannot read what {entry.path.name} was made from",
            )

    def _made_from_reused(self, made: MadeFrom | None) -> None:
        if made is None:
            return
        if made.image is None:  # without its source the job cannot be rebuilt: say so
            self.failed.emit(f"Cannot put it back on the canvas: {'; '.join(made.problems)}")
            return
        self.canvas_requested.emit(made)

    def load_made_from(self, entry: LibraryEntry) -> None:
        """Read what the entry was made from; `made_from_loaded` brings it, with thumbnails."""

        def work() -> tuple[MadeFrom, QImage, QImage] | None:
            made = read_made_from(self.store, entry)
            if made is None:
                return None
            return made, thumbnail(made.image), thumbnail(made.mask)

        self.run(
            work,
            lambda found: self.made_from_loaded.emit(entry.id, found),
            f"Cannot read what {entry.path.name} was made from",
        )

    def load_grid_links(self, entry: LibraryEntry) -> None:
        """Read a grid's cells or a cell's grid; `grid_loaded` brings them (None: neither)."""
        self.run(
            lambda: read_grid_links(self.store, entry),
            lambda links: self.grid_loaded.emit(entry.id, links),
            f"Cannot read the grid links of {entry.path.name}",
        )

    def send_to_canvas(self, entry: LibraryEntry) -> None:
        """Read the image on the worker; `canvas_source` brings it as the canvas's new source."""
        self.run(
            lambda: open_source(entry.path),
            lambda image: self.canvas_source.emit(image, entry.path.name),
            f"Cannot open {entry.path.name}",
        )

    def vary(self, entry: LibraryEntry, strength: float) -> None:
        """Ask for the entry's job again with a new random variation seed at `strength`."""
        try:
            request = varied_request(entry, strength)
        except ValueError as exc:
            self.failed.emit(f"{entry.path.name}: {exc}")
            return
        self.message.emit(
            f"Varying {entry.path.name}: variation seed {request.params.variation_seed}, "
            f"strength {strength:g}"
        )
        self.vary_requested.emit(request)

    def reuse_seed(self, entry: LibraryEntry) -> None:
        if entry.seed is None:
            self.failed.emit(f"{entry.path.name}: its seed is not recorded; nothing to reuse")
            return
        self.seed_requested.emit(entry.seed)


def parameter_rows(entry: LibraryEntry) -> list[tuple[str, str]]:
    """Every recorded fact of an image, as (label, value) rows for the detail view."""
    rows = [
        ("Prompt", entry.prompt),
        ("Negative prompt", entry.negative_prompt),
        ("Model", entry.model),
        ("Seed", "" if entry.seed is None else str(entry.seed)),
        ("Size", f"{entry.width}×{entry.height}" if entry.width and entry.height else ""),
        ("Steps", "" if entry.steps is None else str(entry.steps)),
        ("Guidance", "" if entry.guidance_scale is None else f"{entry.guidance_scale:g}"),
        ("Sampler", entry.scheduler),
        ("Time", "" if entry.seconds is None else f"{entry.seconds:.1f} s"),
        ("Device", " · ".join(v for v in (entry.device, entry.dtype) if v)),
        ("Created", datetime.fromtimestamp(entry.created).strftime("%Y-%m-%d %H:%M:%S")),
        ("Made with", SOURCE_LABELS.get(entry.source, entry.source)),
        ("Tags", ", ".join(entry.tags)),
        ("File", str(entry.path)),
    ]
    params = entry.params
    if params is not None:
        shown = {"prompt", "negative_prompt", "model", "seed", "width", "height", "steps"}
        shown |= {"guidance_scale", "scheduler"}
        # The prompt and seed options of #17 only when they change something.
        defaults = {"clip_skip": 1, "emphasis": "original", "variation_strength": 0.0}
        for key, value in params.to_dict().items():
            if key in shown or value in (None, "", [], {}, ()) or defaults.get(key) == value:
                continue
            rows.append((key.replace("_", " ").capitalize(), str(value)))
    for key, value in sorted(entry.extra.items()):
        if isinstance(value, str | int | float) and str(value):
            rows.append((key.replace("_", " "), str(value)))
    if entry.trashed_at is not None:
        when = datetime.fromtimestamp(entry.trashed_at).strftime("%Y-%m-%d %H:%M")
        rows.append(("In the trash since", when))
    if entry.missing:
        rows.append(("Problem", "the file is missing from disk"))
    return [(label, value) for label, value in rows if value]


class ImageDetailsView(QWidget):
    """One image large, all its parameters, and buttons for every action."""

    upscale_requested = Signal(object)  # LibraryEntry: enlarge it into a new image (the window's)

    def __init__(self, actions: LibraryActions, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library_actions = actions
        self.entry: LibraryEntry | None = None
        # Delete and Restore act on this entry alone, unless a window hands them to its grid
        # (`act_on_selection`): then they take every highlighted image, as the grid's keys do.
        self._delete: Callable[[], None] | None = None
        self._restore: Callable[[], None] | None = None
        self._selected_count = 1
        self._image = QImage()
        self.image_label = QLabel("Select an image")
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_label.setMinimumSize(QSize(64, 64))
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.params_view = QTextBrowser()
        self.params_view.setObjectName("image_parameters")
        self.params_view.setOpenLinks(False)
        self.params_view.setMinimumHeight(40)

        self.buttons: dict[str, QPushButton] = {}
        # Three short buttons a row (the view lives in a narrow side column), so the
        # parameters keep the height to show them all at 1280×800.
        grid = QGridLayout()
        grid.setHorizontalSpacing(4)
        for at, (name, text) in enumerate(
            (
                ("reuse_params", "Reuse &all"),
                ("reuse_seed", "Reuse s&eed"),
                ("vary_subtle", "Vary subtle"),
                ("vary_strong", "Vary strong"),
                ("favourite", "★ Fa&vourite"),
                ("copy", "Cop&y"),
                ("save_as", "Save &as…"),
                ("open_folder", "Open &folder"),
                ("send_to_canvas", "Send to ca&nvas"),
                ("upscale", "&Upscale…"),
                ("delete", "&Delete"),
                ("restore", "&Restore"),
            )
        ):
            button = QPushButton(text)
            button.setMinimumWidth(40)
            grid.addWidget(button, at // 3, at % 3)
            self.buttons[name] = button
        self.buttons["favourite"].setCheckable(True)
        for kind, tip in VARY_TIPS.items():
            self.buttons[f"vary_{kind}"].setToolTip(tip)
        self.buttons["send_to_canvas"].setToolTip(
            "Work on this image on the canvas: img2img, inpaint, outpaint (Ctrl+Shift+N)"
        )
        self.buttons["upscale"].setToolTip(
            "Enlarge this image ×2 or ×4 into a new library image (Ctrl+Shift+U)"
        )
        self.made_from = MadeFromView()
        self.tag_edit = QLineEdit()
        self.tag_edit.setPlaceholderText("Add tags, comma separated, then Enter")
        self.tag_list = QListWidget()
        self.tag_list.setMaximumHeight(70)
        self.tag_list.setMinimumHeight(24)
        self.tag_list.setToolTip("Double-click a tag to remove it")

        layout = QVBoxLayout(self)
        layout.addWidget(self.image_label, 3)
        layout.addLayout(grid)
        layout.addWidget(self.made_from)
        layout.addWidget(self.tag_edit)
        layout.addWidget(self.tag_list)
        layout.addWidget(self.params_view, 2)

        b = self.buttons
        b["reuse_params"].clicked.connect(lambda: self._with_entry(actions.reuse_all))
        b["reuse_seed"].clicked.connect(lambda: self._with_entry(actions.reuse_seed))
        for kind, strength in VARY_STRENGTHS.items():
            b[f"vary_{kind}"].clicked.connect(
                lambda _=False, s=strength: self._with_entry(lambda e: actions.vary(e, s))
            )
        b["favourite"].clicked.connect(
            lambda on: self._with_entry(lambda e: actions.set_favourite(e, on))
        )
        b["copy"].clicked.connect(lambda: self._with_entry(actions.copy))
        b["save_as"].clicked.connect(lambda: self._with_entry(self.save_as_dialog))
        b["open_folder"].clicked.connect(lambda: self._with_entry(actions.open_folder))
        b["send_to_canvas"].clicked.connect(lambda: self._with_entry(actions.send_to_canvas))
        b["upscale"].clicked.connect(lambda: self._with_entry(self.upscale_requested.emit))
        b["delete"].clicked.connect(lambda: self._move(self._delete, actions.trash))
        b["restore"].clicked.connect(lambda: self._move(self._restore, actions.restore))
        self.tag_edit.returnPressed.connect(self._add_tags)
        self.tag_list.itemDoubleClicked.connect(
            lambda item: self._with_entry(lambda e: actions.remove_tag(e, item.text()))
        )
        actions.image_loaded.connect(self._on_image)
        actions.made_from_loaded.connect(self._on_made_from)
        actions.grid_loaded.connect(self._on_grid_links)
        actions.entry_changed.connect(self._on_entry_changed)
        actions.moved.connect(self._on_moved)
        actions.failed.connect(self._action_failed)
        self._typed_tags = ""  # what was sent, until the library takes or refuses it
        self.show_entry(None)

    def show_entry(self, entry: LibraryEntry | None) -> None:
        self.entry = entry
        for button in self.buttons.values():
            button.setEnabled(entry is not None)
        self.tag_edit.setEnabled(entry is not None)
        self.tag_list.clear()
        self.made_from.show_made_from(None)
        self.made_from.show_grid(None)
        if entry is None:
            self.params_view.setHtml("<p>Select an image to see how it was made.</p>")
            self.image_label.setPixmap(QPixmap())
            self.image_label.setText("Select an image")
            return
        self._show_move_buttons(entry)
        self.buttons["reuse_seed"].setEnabled(entry.seed is not None)
        problem = vary_problem(entry)
        for kind in VARY_STRENGTHS:
            self.buttons[f"vary_{kind}"].setEnabled(not problem)
            self.buttons[f"vary_{kind}"].setToolTip(problem or VARY_TIPS[kind])
        self.buttons["favourite"].setChecked(entry.favourite)
        for name in ("copy", "save_as", "open_folder", "send_to_canvas", "upscale"):
            self.buttons[name].setEnabled(not entry.missing)
        self.tag_list.addItems(list(entry.tags))
        self._show_parameters(entry)
        if not entry.missing:
            self.library_actions.load_made_from(entry)
        self.library_actions.load_grid_links(entry)  # from the index: even when missing
        if entry.missing:
            self.image_label.setText(f"{entry.path.name} is missing from disk")
            self.image_label.setPixmap(QPixmap())
        elif not self.image_label.isHidden():  # the window shows the image large itself
            self.image_label.setText("Loading…")
            self.library_actions.load_image(entry)

    def act_on_selection(self, delete: Callable[[], None], restore: Callable[[], None]) -> None:
        """Delete and Restore call these (a grid's, for its highlighted images) instead."""
        self._delete, self._restore = delete, restore

    def set_selected_count(self, count: int) -> None:
        """How many images Delete and Restore take (the grid's highlighted ones)."""
        self._selected_count = max(count, 1)
        if self.entry is not None:
            self._show_move_buttons(self.entry)

    def _show_move_buttons(self, entry: LibraryEntry) -> None:
        # From the entry as it is now: a trashed image offers Restore, never Delete.
        trashed = entry.trashed_at is not None
        many = f" {images_text(self._selected_count)}" if self._selected_count > 1 else ""
        self.buttons["delete"].setText(f"&Delete{many}")
        self.buttons["restore"].setText(f"&Restore{many}")
        self.buttons["delete"].setVisible(not trashed)
        self.buttons["restore"].setVisible(trashed)

    def _move(
        self, handler: Callable[[], None] | None, own: Callable[[LibraryEntry], None]
    ) -> None:
        if handler is not None:
            handler()
        else:
            self._with_entry(own)

    def _on_moved(self, ids: list[int]) -> None:
        if self.entry is not None and self.entry.id in ids:
            self.library_actions.reload(self.entry)  # its Delete/Restore must follow

    def parameters_text(self) -> str:
        return self.params_view.toPlainText()

    def _with_entry(self, action: Callable[[LibraryEntry], None]) -> None:
        if self.entry is not None:
            action(self.entry)

    def _add_tags(self) -> None:
        tags = tuple(t.strip() for t in self.tag_edit.text().split(",") if t.strip())
        if tags and self.entry is not None:
            self._typed_tags = self.tag_edit.text()
            self.library_actions.add_tags(self.entry, tags)
            self.tag_edit.clear()

    def _action_failed(self, _message: str) -> None:
        # A refused tag (too long, a comma…) comes back to the box to be corrected, not retyped.
        if self._typed_tags and not self.tag_edit.text():
            self.tag_edit.setText(self._typed_tags)
        self._typed_tags = ""

    def _on_entry_changed(self, entry: LibraryEntry) -> None:
        self._typed_tags = ""
        if self.entry is not None and entry.id == self.entry.id:
            self.entry = entry
            self.buttons["favourite"].setChecked(entry.favourite)
            self._show_move_buttons(entry)
            self.tag_list.clear()
            self.tag_list.addItems(list(entry.tags))
            self._show_parameters(entry)

    def _show_parameters(self, entry: LibraryEntry) -> None:
        cells = "".join(
            f"<tr><th align='left' valign='top'>{html.escape(label)}</th>"
            f"<td>{html.escape(value).replace(chr(10), '<br>')}</td></tr>"
            for label, value in parameter_rows(entry)
        )
        self.params_view.setHtml(f"<table cellspacing='4'>{cells}</table>")

    def _on_made_from(self, image_id: int, found: tuple[MadeFrom, QImage, QImage] | None) -> None:
        if self.entry is None or image_id != self.entry.id:
            return  # read for an image no longer shown
        if found is None:
            self.made_from.show_made_from(None)
        else:
            self.made_from.show_made_from(*found)

    def _on_grid_links(self, image_id: int, links: GridLinks | None) -> None:
        if self.entry is None or image_id != self.entry.id:
            return  # read for an image no longer shown
        self.made_from.show_grid(links)

    def _on_image(self, image_id: int, image: QImage) -> None:
        if self.entry is None or image_id != self.entry.id:
            return  # a slow load for an image no longer shown
        self._image = image
        self.image_label.setText("")
        self._rescale()

    def shown_image(self) -> QImage:
        return self._image

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image.isNull() or self.image_label.isHidden():
            return
        pixmap = QPixmap.fromImage(self._image)
        size = self.image_label.size()
        if pixmap.width() > size.width() or pixmap.height() > size.height():
            pixmap = pixmap.scaled(
                size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        self.image_label.setPixmap(pixmap)

    def save_as_dialog(self, entry: LibraryEntry) -> None:
        dialog = ExportDialog(entry.path, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            target, keep = dialog.choice()
            self.library_actions.export(entry, target, keep_metadata=keep)

    def save_many_dialog(self, selection: RowSelection) -> None:
        dialog = ExportDialog(None, self, count=len(selection))
        if dialog.exec() == QDialog.DialogCode.Accepted:
            folder, keep = dialog.choice()
            self.library_actions.export_rows(
                selection, folder, fmt=dialog.format(), keep_metadata=keep
            )


class ExportDialog(QDialog):
    """Where to save a copy, in which format, and whether its generation metadata goes along.

    With `count` > 1 it asks for a folder instead of a file name: each image is saved there
    as `<id>-<name>` in the chosen format, and files already there are never replaced.
    """

    def __init__(
        self, source: Path | None, parent: QWidget | None = None, *, count: int = 1
    ) -> None:
        super().__init__(parent)
        self.many = count > 1 or source is None
        self._confirmed: Path | None = None
        if self.many:
            self.setWindowTitle(f"Save {images_text(count)} to a folder")
            self.path_edit = QLineEdit(str(Path.home() / "ldstudio-export"))
        else:
            assert source is not None
            self.setWindowTitle("Save image as")
            self.path_edit = QLineEdit(str(Path.home() / source.name))
        browse = QPushButton("&Browse…")
        browse.clicked.connect(self._browse)
        self.format_combo = QComboBox()
        for label, fmt, _suffix in EXPORT_FORMATS:
            self.format_combo.addItem(label, fmt)
        self.keep_check = QCheckBox("&Keep generation metadata (prompt, seed, model, settings)")
        self.keep_check.setChecked(True)
        note = QLabel(
            "Untick to share the picture without revealing how it was made: no prompt, "
            "no parameters, no EXIF."
        )
        note.setWordWrap(True)
        self.problem = QLabel()
        self.problem.setObjectName("export_problem")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.addLayout(path_row)
        layout.addWidget(self.format_combo)
        layout.addWidget(self.keep_check)
        layout.addWidget(note)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)
        self.format_combo.currentIndexChanged.connect(self._format_changed)
        # A typed ".jpg" picks JPEG, as a chosen format puts its extension on the name.
        self.path_edit.textEdited.connect(lambda _text: self._sync_format_from_path())
        self._sync_format_from_path()

    def format(self) -> str:
        """The chosen format: png, jpeg or webp."""
        return str(self.format_combo.currentData())

    def _sync_format_from_path(self) -> None:
        if self.many:
            return  # a folder: the combo alone says the format
        try:
            fmt = export.format_for(Path(self.path_edit.text()))
        except ValueError:
            return
        # Not through _format_changed: the name as typed stays (".jpeg" is not made ".jpg").
        self.format_combo.blockSignals(True)
        self.format_combo.setCurrentIndex(max(self.format_combo.findData(fmt), 0))
        self.format_combo.blockSignals(False)

    def _format_changed(self) -> None:
        if self.many:
            return
        suffix = EXPORT_FORMATS[self.format_combo.currentIndex()][2]
        path = Path(self.path_edit.text())
        self.path_edit.setText(str(path.with_suffix(suffix)))

    def _browse(self) -> None:
        if self.many:
            folder = QFileDialog.getExistingDirectory(self, "Save into", self.path_edit.text())
            if folder:
                self.path_edit.setText(folder)
            return
        chosen, _ = QFileDialog.getSaveFileName(
            self, "Save image as", self.path_edit.text(), "Images (*.png *.jpg *.jpeg *.webp)"
        )
        if chosen:
            self.path_edit.setText(chosen)
            self._confirmed = Path(chosen)  # the file dialog asked before replacing
            self._sync_format_from_path()

    def choice(self) -> tuple[Path, bool]:
        """(target file or folder, keep metadata); ValueError naming a bad name."""
        target = Path(self.path_edit.text().strip()).expanduser()
        if self.many:
            if not target.name:
                raise ValueError("folder: empty; type or browse to where the copies should go")
            if target.exists() and not target.is_dir():
                raise ValueError(f"{target}: is a file; give a folder (it is created if needed)")
            return target, self.keep_check.isChecked()
        if not target.name:
            raise ValueError("file name: empty; type where the copy should go")
        export.format_for(target)
        return target, self.keep_check.isChecked()

    def _accept(self) -> None:
        try:
            target, _keep = self.choice()
        except ValueError as exc:
            self.problem.setText(str(exc))
            return
        # A typed name of an existing file is asked about; Browse… already asked itself.
        asked = not self.many and target.exists() and target != self._confirmed
        if asked and not confirm_replace(self, target):
            return
        self.accept()


def confirm_replace(parent: QWidget, target: Path) -> bool:
    """Ask before replacing a file the user already has; No is the default button."""
    answer = QMessageBox.question(
        parent,
        "Replace file?",
        f"{target} already exists.\n\nReplace it with this image?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def confirm_empty_trash(parent: QWidget, count: int) -> bool:
    """Ask before deleting for good; No is the default button."""
    if count == 0:
        QMessageBox.information(parent, "Empty trash", "The trash is already empty.")
        return False
    answer = QMessageBox.warning(
        parent,
        "Empty trash",
        f"Delete the {count:,} image{'s' if count != 1 else ''} in the trash for good?\n\n"
        "Images imported in place only leave the library; their files stay where they are.\n"
        "This cannot be undone.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes
