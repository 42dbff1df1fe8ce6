"""LibraryPane: the library's virtual thumbnail grid and its filter bar; GUI thread.

The pane says what the user asked for (signals ending in `_requested`, each carrying the
`LibraryEntry`); `ldstudio.qt.image_details.LibraryActions` or the window does the work off
the GUI thread. Filters: prompt words, model, favourites, tags, a date range, the trash, and
the sort order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QDate,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    QStringListModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QIcon, QKeySequence, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QCompleter,
    QDateEdit,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.library import LibraryEntry, LibraryFilter
from ldstudio.qt.library_model import PAGE_SIZE, EntryRole, LibraryModel, RowSelection
from ldstudio.qt.vary import VARY_STRENGTHS, VARY_TIPS, vary_problem

ICON_SIZE = 128
LAYOUT_BATCH = 5000  # rows laid out per event-loop turn
SEARCH_DELAY_MS = 250  # typing a word is one query, not one per key
ALL_MODELS = "All models"


def parse_tags(text: str) -> tuple[str, ...]:
    """Comma-separated tags as typed in the filter bar, blanks dropped."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


class TagCompleter(QCompleter):
    """Completes the tag being typed after the last comma, keeping the ones before it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tags = QStringListModel(self)
        self.setModel(self.tags)
        self.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterMode(Qt.MatchFlag.MatchStartsWith)
        self.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)

    def splitPath(self, path: str) -> list[str]:
        return [path.rsplit(",", 1)[-1].strip()]

    def pathFromIndex(self, index: QModelIndex | QPersistentModelIndex) -> str:
        tag = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        widget = self.widget()
        typed = widget.text() if isinstance(widget, QLineEdit) else ""
        before = [t.strip() for t in typed.split(",")[:-1] if t.strip()]
        return ", ".join([*before, tag])


def day_start(date: QDate) -> float:
    return datetime(date.year(), date.month(), date.day()).timestamp()


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a cell as its thumbnail, a selection frame and a favourite star; nothing else.

    The default delegate asks the model for a dozen roles per cell and paint; this asks for
    two, which matters when a scroll repaints a screenful of cells every frame.
    """

    def __init__(self, cell: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cell = cell

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        rect: QRect = option.rect
        palette: QPalette = option.palette
        state = option.state
        if state & QStyle.StateFlag.State_Selected:
            painter.fillRect(rect.adjusted(1, 1, -1, -1), palette.highlight())
        icon = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(icon, QIcon):
            icon.paint(painter, rect.adjusted(5, 5, -5, -5), Qt.AlignmentFlag.AlignCenter)
        entry = index.data(EntryRole)
        if isinstance(entry, LibraryEntry) and entry.favourite:
            painter.setPen(QColor(255, 200, 0))
            painter.drawText(rect.adjusted(6, 4, -6, -4), Qt.AlignmentFlag.AlignRight, "★")
        if isinstance(entry, LibraryEntry) and entry.missing:
            # The red tile alone reads as a colour, not a problem: say it.
            painter.setPen(palette.color(QPalette.ColorRole.Text))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "file missing")

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(self.cell, self.cell)


class LibraryPane(QWidget):
    """The grid, and the one rule of what an action acts on: the highlighted images.

    What the viewer and the details show (`entry_selected`), what is highlighted and what an
    action takes (`selection()`) are always the same images: an unhighlighted focus shows
    nothing and acts on nothing, and after a delete or restore the next image is highlighted
    (found by id, as a file manager does), never whatever slid under the old rows.
    """

    entry_selected = Signal(object)  # LibraryEntry, or None when nothing is highlighted
    entry_activated = Signal(object)  # double click / Enter: open the details
    reuse_params_requested = Signal(object)
    reuse_seed_requested = Signal(object)
    vary_subtle_requested = Signal(object)  # LibraryEntry: its job again, variation 0.1
    vary_strong_requested = Signal(object)  # LibraryEntry: its job again, variation 0.5
    favourite_requested = Signal(object, bool)  # RowSelection, mark or unmark
    copy_requested = Signal(object)
    save_as_requested = Signal(object)  # one LibraryEntry: a file name to choose
    save_many_requested = Signal(object)  # RowSelection of several: a folder to choose
    open_folder_requested = Signal(object)
    send_to_canvas_requested = Signal(object)  # LibraryEntry: work on it on the canvas
    upscale_requested = Signal(object)  # LibraryEntry: enlarge it into a new image
    delete_requested = Signal(object)  # RowSelection
    restore_requested = Signal(object)  # RowSelection
    empty_trash_requested = Signal()

    def __init__(self, model: LibraryModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.title = QLabel()
        self.problem = QLabel()
        self.problem.setObjectName("filter_problem")
        self.problem.setWordWrap(True)
        self.problem.hide()

        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search prompts…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setToolTip("Words of the prompt; each word matches as a prefix")
        self.model_combo = QComboBox()
        self.model_combo.addItem(ALL_MODELS, "")
        self.model_combo.setToolTip("Only images made with this model")
        self.favourites_check = QCheckBox("★ Favourites")
        self.tags_edit = QLineEdit()
        self.tags_edit.setPlaceholderText("Tags, comma separated")
        self.tags_edit.setToolTip("Only images that carry all of these tags")
        self.tag_completer = TagCompleter(self.tags_edit)
        self.tags_edit.setCompleter(self.tag_completer)
        self.dates_check = QCheckBox("From")
        self.since_edit = QDateEdit(QDate.currentDate().addMonths(-1))
        self.until_edit = QDateEdit(QDate.currentDate())
        for edit in (self.since_edit, self.until_edit):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
        self.sort_combo = QComboBox()
        self.sort_combo.addItems(["Newest first", "Oldest first"])
        self.trash_check = QCheckBox("Trash")
        self.trash_check.setToolTip("Show deleted images; restore them or empty the trash")

        self.view = QListView()
        self.view.setObjectName("library")
        self.view.setModel(model)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.view.setGridSize(QSize(ICON_SIZE + 12, ICON_SIZE + 12))
        self.view.setItemDelegate(ThumbnailDelegate(ICON_SIZE + 12, self.view))
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        # Static movement + uniform sizes: the view lays rows out arithmetically and asks the
        # model only for the items it paints, which is what keeps 100,000 rows cheap.
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        # Qt lays out every row again on each reset or insert; in one go that froze the GUI
        # for 255 ms on opening a 100,000-image library and 130 ms per new image. In batches
        # it runs between events (p99 19 ms, 14 ms); the scroll bar grows to full length
        # within about half a second. benchmarks/bench_gui_library.py measures both.
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(LAYOUT_BATCH)
        # Ctrl/Shift-click and Ctrl+A select many: favourite, delete, restore and save act on
        # all of them; the details view follows the focused one.
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.view.activated.connect(self._activated)
        self.title.setBuddy(self.view)

        self.actions_by_name: dict[str, QAction] = {}
        for name, text, keys, slot in (
            ("reuse_params", "Reuse &parameters", "Ctrl+Shift+P", self.reuse_params_requested),
            ("reuse_seed", "Reuse &seed", "Ctrl+Shift+S", self.reuse_seed_requested),
            ("vary_subtle", "&Vary subtle", "", self.vary_subtle_requested),
            ("vary_strong", "Vary s&trong", "", self.vary_strong_requested),
            ("favourite", "&Favourite", "Ctrl+D", None),
            ("copy", "&Copy image", QKeySequence.StandardKey.Copy, self.copy_requested),
            ("save_as", "Save &as…", "Ctrl+Shift+A", None),
            ("open_folder", "Open containing &folder", "Ctrl+Shift+O", self.open_folder_requested),
            ("send_to_canvas", "Send to ca&nvas", "Ctrl+Shift+N", self.send_to_canvas_requested),
            ("upscale", "&Upscale…", "Ctrl+Shift+U", self.upscale_requested),
            ("restore", "&Restore from trash", "Ctrl+Shift+R", None),
            ("delete", "&Delete (move to trash)", QKeySequence.StandardKey.Delete, None),
        ):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            if slot is not None:
                action.triggered.connect(lambda _=False, s=slot: self._trigger(s))
            self.view.addAction(action)
            self.actions_by_name[name] = action
        self.actions_by_name["favourite"].setCheckable(True)
        self.actions_by_name["favourite"].triggered.connect(self._toggle_favourite)
        self.actions_by_name["delete"].triggered.connect(self._delete)
        self.actions_by_name["restore"].triggered.connect(self._restore)
        self.actions_by_name["save_as"].triggered.connect(self._save)
        self._texts = {name: action.text() for name, action in self.actions_by_name.items()}
        self.empty_trash_action = QAction("&Empty trash…", self)
        self.empty_trash_action.triggered.connect(lambda _=False: self.empty_trash_requested.emit())

        # A grid two controls wide: the pane must stay usable in a narrow side column.
        filters = QGridLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        filters.addWidget(self.search_edit, 0, 0, 1, 2)
        filters.addWidget(self.model_combo, 1, 0)
        filters.addWidget(self.tags_edit, 1, 1)
        filters.addWidget(self.favourites_check, 2, 0)
        filters.addWidget(self.trash_check, 2, 1)
        filters.addWidget(self.dates_check, 3, 0)
        filters.addWidget(self.since_edit, 3, 1)
        filters.addWidget(QLabel("to"), 4, 0, Qt.AlignmentFlag.AlignRight)
        filters.addWidget(self.until_edit, 4, 1)
        filters.addWidget(self.sort_combo, 5, 0, 1, 2)
        for control in (self.model_combo, self.tags_edit, self.sort_combo):
            control.setMinimumWidth(60)
        self.model_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model_combo.setMinimumContentsLength(6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(filters)
        layout.addWidget(self.problem)
        # In place of an empty grid: why it is empty ("No images match", an empty trash…).
        self.empty_label = QLabel()
        self.empty_label.setObjectName("library_empty")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setMargin(12)
        self.empty_label.setAutoFillBackground(True)
        self.empty_label.setBackgroundRole(QPalette.ColorRole.Base)
        self.grid_stack = QStackedWidget()
        self.grid_stack.addWidget(self.view)
        self.grid_stack.addWidget(self.empty_label)
        layout.addWidget(self.grid_stack, 1)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.apply_filter)
        self.search_edit.textChanged.connect(lambda _t: self._search_timer.start())
        self.tags_edit.textChanged.connect(lambda _t: self._search_timer.start())
        for signal in (
            self.model_combo.currentIndexChanged,
            self.favourites_check.toggled,
            self.trash_check.toggled,
            self.sort_combo.currentIndexChanged,
            self.since_edit.dateChanged,
            self.until_edit.dateChanged,
        ):
            signal.connect(lambda *_: self.apply_filter())
        self.dates_check.toggled.connect(self._dates_toggled)
        model.count_changed.connect(self._update_title)
        model.page_loaded.connect(self._page_loaded)
        self._shown_id: int | None = None
        self._quiet = False
        # row -> image id of selected rows, as first seen: a refresh that puts other images
        # under the selection (an import of older images, another process) clears it, so a
        # bulk action never falls on images the user did not pick.
        self._selected_ids: dict[int, int] = {}
        model.rowsInserted.connect(lambda _p, first, last: self._shift_ids(first, last, 1))
        model.rowsRemoved.connect(lambda _p, first, last: self._shift_ids(first, last, -1))
        model.modelReset.connect(self._on_reset)
        model.count_changed.connect(self._seek_focus)
        # After a delete or restore: (id of the image to highlight next, the row it will be at,
        # whether the move is done). The next image is known before the rows shift under it.
        self._focus_next: tuple[int | None, int, bool] | None = None
        self._moving: set[int] = set()  # ids of the trash or restore under way
        model.choices_loaded.connect(self.set_choices)
        self._update_title()

    def sizeHint(self) -> QSize:
        return QSize(3 * (ICON_SIZE + 12) + 24, 500)

    # -- filters --------------------------------------------------------------------------------

    def current_filter(self) -> LibraryFilter:
        """The filter the bar describes; ValueError naming what is wrong."""
        since = until = None
        if self.dates_check.isChecked():
            start, end = self.since_edit.date(), self.until_edit.date()
            if start > end:
                raise ValueError(
                    f"date range: {start.toString('yyyy-MM-dd')} is after "
                    f"{end.toString('yyyy-MM-dd')}; the start must not be after the end"
                )
            since, until = day_start(start), day_start(end.addDays(1))  # the end day counts
        return LibraryFilter(
            text=self.search_edit.text().strip(),
            model=str(self.model_combo.currentData() or ""),
            favourites=self.favourites_check.isChecked(),
            tags=parse_tags(self.tags_edit.text()),
            since=since,
            until=until,
            trashed=self.trash_check.isChecked(),
            newest_first=self.sort_combo.currentIndex() == 0,
        )

    def apply_filter(self) -> None:
        self._search_timer.stop()
        try:
            f = self.current_filter()
        except ValueError as exc:
            self.problem.setText(str(exc))
            self.problem.show()
            return
        self.problem.hide()
        if f != self.model.filter:
            self.model.set_filter(f)
        self._update_actions()

    def _dates_toggled(self, on: bool) -> None:
        self.since_edit.setEnabled(on)
        self.until_edit.setEnabled(on)
        self.apply_filter()

    def set_choices(self, models: list[tuple[str, int]], tags: list[tuple[str, int]]) -> None:
        """Fill the model list (keeping the choice) and offer the known tags as tooltip."""
        chosen = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem(ALL_MODELS, "")
        for name, count in models:
            self.model_combo.addItem(f"{name} ({count})", name)
        at = self.model_combo.findData(chosen)
        self.model_combo.setCurrentIndex(max(at, 0))
        self.model_combo.blockSignals(False)
        self.tag_completer.tags.setStringList([name for name, _ in tags])
        known = ", ".join(name for name, _ in tags[:50])
        self.tags_edit.setToolTip(
            "Only images that carry all of these tags"
            + (f"\nKnown tags: {known}" if known else "\nNo tags yet: add them in the details")
        )

    # -- selection and actions ------------------------------------------------------------------

    def current_entry(self) -> LibraryEntry | None:
        """The focused image if it is highlighted (a focus without highlight means nothing)."""
        index = self.view.currentIndex()
        if not index.isValid() or not self.view.selectionModel().isSelected(index):
            return None
        entry: LibraryEntry | None = self.model.data(index, EntryRole)
        return entry

    def select_ids(self, image_ids: list[int], rows: list[int]) -> None:
        """Highlight these images at these rows (found by the caller), the last one focused."""
        count = self.model.rowCount()
        pairs = [(r, i) for r, i in zip(rows, image_ids, strict=True) if 0 <= r < count]
        if not pairs:
            return
        ranges = QItemSelection()
        for row, _ in pairs:
            ranges.select(self.model.index(row), self.model.index(row))
        last = self.model.index(pairs[-1][0])
        selection_model = self.view.selectionModel()
        self._quiet = True  # one change for the viewer, not a flicker through "nothing"
        try:
            selection_model.select(ranges, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            selection_model.setCurrentIndex(last, QItemSelectionModel.SelectionFlag.NoUpdate)
        finally:
            self._quiet = False
        # Rows whose page is not loaded yet are checked against these ids when it arrives.
        self._selected_ids = dict(pairs)
        self.view.scrollTo(last)
        self._update_shown()

    def select_row(self, row: int) -> None:
        """Highlight one row (scripts and tests; the window itself selects by id)."""
        index = self.model.index(row)
        # Explicitly: the view's own setCurrentIndex takes its selection command from the
        # keyboard modifiers held at that moment, and with Ctrl down it would only move focus.
        self.view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self.view.scrollTo(index)

    def selected_rows(self) -> list[int]:
        """The selected rows, ascending; read from the ranges, so Ctrl+A on 100,000 is cheap."""
        rows: set[int] = set()
        ranges = self.view.selectionModel().selection()
        for at in range(ranges.count()):
            selected = ranges.at(at)
            rows.update(range(selected.top(), selected.bottom() + 1))
        return sorted(rows)

    def selection(self) -> RowSelection:
        """The highlighted images (none when nothing is highlighted, whatever has the focus)."""
        return self.model.selection(self.selected_rows(), self.current_entry())

    def _trigger(self, signal: Any) -> None:
        entry = self.current_entry()
        if entry is not None:
            signal.emit(entry)

    def _toggle_favourite(self) -> None:
        selection = self.selection()
        if selection.rows:
            # The focused image decides, as in a file manager: mark all, or unmark all.
            current = selection.current
            self.favourite_requested.emit(selection, not (current and current.favourite))

    def delete_selected(self) -> None:
        """Move the highlighted images to the trash (not in the trash view)."""
        self._delete()

    def restore_selected(self) -> None:
        """Restore the highlighted images (in the trash view only)."""
        self._restore()

    def _delete(self) -> None:
        # In the trash view Delete means nothing more: emptying the trash is explicit.
        if not self.model.filter.trashed:
            self._move(self.delete_requested)

    def _restore(self) -> None:
        if self.model.filter.trashed:
            self._move(self.restore_requested)

    def _move(self, signal: Any) -> None:
        selection = self.selection()
        if not selection.rows:
            return  # nothing highlighted: nothing to act on
        ids = set(selection.known.values())
        if len(ids) == len(selection) and ids <= self._moving:
            return  # Delete pressed again on the images already on their way
        self._moving = ids
        self._focus_next = self._next_after(selection.rows)
        signal.emit(selection)
        if len(selection) > 1:
            # The rows are about to hold other images: a bulk selection must not carry over.
            self.view.clearSelection()

    def _next_after(self, rows: tuple[int, ...]) -> tuple[int | None, int, bool]:
        """The image after the moved ones (else the one before), and its row once they left."""
        taken = set(rows)
        first = rows[0]
        after = next((r for r in range(first + 1, self.model.rowCount()) if r not in taken), None)
        if after is not None:
            return self.model.loaded_id(after), first, False
        return (self.model.loaded_id(first - 1) if first > 0 else None), first - 1, False

    def images_moved(self, _ids: object = None) -> None:
        """The trash or restore asked for has been done: highlight the next image once shown."""
        self._moving = set()
        if self._focus_next is not None:
            self._focus_next = (self._focus_next[0], self._focus_next[1], True)

    def forget_move(self) -> None:
        """The move failed: the images stay, nothing is highlighted on its behalf."""
        self._focus_next = None
        self._moving = set()

    def _seek_focus(self, *_: object) -> None:
        pending = self._focus_next
        if pending is None or not pending[2]:
            return
        image_id, row, _done = pending
        if image_id is None or not 0 <= row < self.model.rowCount():
            self._focus_next = None
            return
        found = self.model.row_of(image_id)
        if found is not None:
            self._focus_next = None
            self.select_ids([image_id], [found])
        elif self.model.loaded_id(row) is not None:
            self._focus_next = None  # the library moved: not there, so nothing is guessed
        else:
            self.model.entry_at(row)  # asks for its page; _page_loaded comes back here

    def _on_reset(self) -> None:
        self._selected_ids.clear()
        self._focus_next = None
        self._moving = set()
        self._update_shown()

    def _save(self) -> None:
        selection = self.selection()
        if len(selection) > 1:
            self.save_many_requested.emit(selection)
        elif selection.current is not None:
            self.save_as_requested.emit(selection.current)

    def _activated(self, index: QModelIndex) -> None:
        entry = self.model.data(index, EntryRole)
        if entry is not None:
            self.entry_activated.emit(entry)

    def _current_changed(self, _current: QModelIndex, _previous: QModelIndex) -> None:
        self._update_shown()

    def _update_shown(self) -> None:
        """Show the focused image while it is highlighted, and nothing otherwise."""
        if self._quiet:
            return
        index = self.view.currentIndex()
        if index.isValid() and self.view.selectionModel().isSelected(index):
            entry: LibraryEntry | None = self.model.data(index, EntryRole)
            if entry is None:
                return  # its page is on the way: _page_loaded shows it
            if entry.id != self._shown_id:
                self._shown_id = entry.id
                self.entry_selected.emit(entry)
        elif self._shown_id is not None:
            self._shown_id = None
            self.entry_selected.emit(None)

    def _selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        for rows, keep in ((deselected, False), (selected, True)):
            for at in range(rows.count()):
                span = rows.at(at)
                for row in range(span.top(), span.bottom() + 1):
                    image_id = self.model.loaded_id(row) if keep else None
                    if image_id is None:
                        self._selected_ids.pop(row, None)
                    else:
                        self._selected_ids[row] = image_id
        self._update_title()
        self._update_shown()

    def _shift_ids(self, first: int, last: int, sign: int) -> None:
        # The selection moves with inserted and removed rows; so must what we saw under it.
        count = last - first + 1
        shifted: dict[int, int] = {}
        for row, image_id in self._selected_ids.items():
            if row < first:
                shifted[row] = image_id
            elif sign > 0:
                shifted[row + count] = image_id
            elif row > last:
                shifted[row - count] = image_id
        self._selected_ids = shifted

    def _check_selection(self, page: int) -> None:
        model, selection_model = self.model, self.view.selectionModel()
        if not selection_model.hasSelection():
            self._selected_ids.clear()
            return
        for row in range(page * PAGE_SIZE, min((page + 1) * PAGE_SIZE, model.rowCount())):
            if not selection_model.isSelected(model.index(row)):
                continue
            image_id = model.loaded_id(row)
            if image_id is None:
                continue
            if self._selected_ids.setdefault(row, image_id) != image_id:
                self._selected_ids.clear()
                self.view.clearSelection()
                return

    def _page_loaded(self, page: int) -> None:
        self._check_selection(page)
        self._seek_focus()
        # A row selected before its page arrived (the newest image after a job) is shown now;
        # after a refresh the selected row may hold another image.
        self._update_shown()

    def _update_actions(self, entry: LibraryEntry | None = None, count: int = 1) -> None:
        trashed = self.trash_check.isChecked()
        a = self.actions_by_name
        a["restore"].setVisible(trashed)
        a["delete"].setVisible(not trashed)
        for name, text in self._texts.items():
            a[name].setText(text)
        a["favourite"].setCheckable(count == 1)
        if count > 1:
            many = f"{count:,} images"
            # No tick for many: it would show the focused image's state, not what happens.
            # The focused image decides (see _toggle_favourite), so the text says the outcome.
            mark = entry is None or not entry.favourite
            a["favourite"].setText(f"&Favourite {many}" if mark else f"Un&favourite {many}")
            a["save_as"].setText(f"Save {many} to a &folder…")
            a["restore"].setText(f"&Restore {many} from trash")
            a["delete"].setText(f"&Delete {many} (move to trash)")
        if entry is not None:
            single = count == 1
            a["reuse_params"].setEnabled(single and bool(entry.params_json or entry.prompt))
            a["reuse_seed"].setEnabled(single and entry.seed is not None)
            problem = vary_problem(entry)
            for kind in VARY_STRENGTHS:
                a[f"vary_{kind}"].setEnabled(single and not problem)
                a[f"vary_{kind}"].setToolTip(problem or VARY_TIPS[kind])
            a["favourite"].setChecked(entry.favourite)
            for name in ("copy", "open_folder", "send_to_canvas", "upscale"):
                a[name].setEnabled(single and not entry.missing)
            a["save_as"].setEnabled(not (single and entry.missing))

    def context_menu_for(self, entry: LibraryEntry, count: int = 1) -> QMenu:
        """The menu shown for `entry` and `count` selected images (tests inspect it unexecuted)."""
        self._update_actions(entry, count)
        menu = QMenu(self)
        menu.setToolTipsVisible(True)  # a greyed Vary says why
        for name, action in self.actions_by_name.items():
            if name in ("restore", "delete"):
                menu.addSeparator()
            if action.isVisible():
                menu.addAction(action)
        if self.trash_check.isChecked():
            menu.addAction(self.empty_trash_action)
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        index: QModelIndex = self.view.indexAt(pos)
        if not index.isValid():
            index = self.view.currentIndex()
        if not index.isValid():
            return
        selection_model = self.view.selectionModel()
        if selection_model.isSelected(index):  # right-click inside a selection keeps it
            selection_model.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)
        else:
            self.view.setCurrentIndex(index)
        entry = self.model.data(index, EntryRole)
        if entry is None:
            return  # its page is still loading
        menu = self.context_menu_for(entry, max(len(self.selected_rows()), 1))
        menu.exec(self.view.viewport().mapToGlobal(pos))
        for name, action in self.actions_by_name.items():
            action.setEnabled(True)
            action.setText(self._texts[name])
        self.actions_by_name["favourite"].setCheckable(True)

    def _update_title(self, *_: object) -> None:
        model = self.model
        count, total = model.rowCount(), model.total
        trash = model.filter.trashed
        where = " in the trash" if trash else ""
        of_all = model.is_filtered() and total > 0  # not "0 of 0" in an empty library
        shown = f"{count:,} of {total:,}" if of_all else f"{count:,}"
        number = total if of_all else count
        text = f"&Library — {shown} image{'s' if number != 1 else ''}{where}"
        selected = len(self.selected_rows())
        if selected > 1:
            text += f" · {selected:,} selected"
        self.title.setText(text)
        empty = model.counted and count == 0
        if empty and model.is_filtered():
            place = "in the trash" if trash else "in the library"
            more = f": none of the {total:,} {place} match" if total else ""
            self.empty_label.setText(f"No images match{more}.\nClear the search or filters.")
        elif empty and trash:
            self.empty_label.setText("The trash is empty.")
        elif empty:
            self.empty_label.setText(
                "No images yet.\nThe images you generate appear here; File → Import images… "
                "adds those you already have."
            )
        self.grid_stack.setCurrentWidget(self.empty_label if empty else self.view)
