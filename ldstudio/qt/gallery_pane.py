"""GalleryPane: thumbnails newest first, selection, and the per-image context menu; GUI thread.

The pane only says what the user asked for (signals ending in `_requested`); the window does
the work, with disk access off the GUI thread.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, QModelIndex, QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QLabel, QListView, QMenu, QVBoxLayout, QWidget

from ldstudio.qt.gallery_model import GalleryEntry, GalleryModel

ICON_SIZE = 112


class GalleryPane(QWidget):
    entry_selected = Signal(object)  # GalleryEntry
    reuse_params_requested = Signal(object)
    reuse_seed_requested = Signal(object)
    copy_requested = Signal(object)
    save_as_requested = Signal(object)
    open_folder_requested = Signal(object)
    delete_requested = Signal(object)

    def __init__(self, model: GalleryModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.title = QLabel()
        self.view = QListView()
        self.view.setObjectName("gallery")
        self.view.setModel(model)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.view.setGridSize(QSize(ICON_SIZE + 12, ICON_SIZE + 12))
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.view.setToolTip("")
        self.title.setBuddy(self.view)

        self.actions_by_name: dict[str, QAction] = {}
        for name, text, keys, signal in (
            ("reuse_params", "Reuse &parameters", "Ctrl+Shift+P", self.reuse_params_requested),
            ("reuse_seed", "Reuse &seed", "Ctrl+Shift+S", self.reuse_seed_requested),
            ("copy", "&Copy image", QKeySequence.StandardKey.Copy, self.copy_requested),
            ("save_as", "Save &as…", "Ctrl+Shift+A", self.save_as_requested),
            ("open_folder", "Open containing &folder", "Ctrl+Shift+O", self.open_folder_requested),
            ("delete", "&Delete…", QKeySequence.StandardKey.Delete, self.delete_requested),
        ):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(lambda _=False, s=signal: self._trigger(s))
            self.view.addAction(action)
            self.actions_by_name[name] = action

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)
        model.rowsInserted.connect(self._update_title)
        model.rowsRemoved.connect(self._update_title)
        model.modelReset.connect(self._update_title)
        self._update_title()

    def sizeHint(self) -> QSize:
        return QSize(2 * (ICON_SIZE + 12) + 24, 400)

    def current_entry(self) -> GalleryEntry | None:
        index = self.view.currentIndex()
        if not index.isValid():
            return None
        return self.model.entry(index.row())

    def select_row(self, row: int) -> None:
        index = self.model.index(row)
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)

    def _trigger(self, signal: Signal) -> None:
        entry = self.current_entry()
        if entry is not None:
            signal.emit(entry)  # type: ignore[attr-defined]

    def _selection_changed(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = selected.indexes()
        if indexes:
            self.entry_selected.emit(self.model.entry(indexes[0].row()))

    def _context_menu(self, pos: QPoint) -> None:
        index: QModelIndex = self.view.indexAt(pos)
        if not index.isValid():
            index = self.view.currentIndex()
        if not index.isValid():
            return
        self.view.setCurrentIndex(index)
        entry = self.model.entry(index.row())
        has_params = entry.params is not None
        self.actions_by_name["reuse_params"].setEnabled(has_params)
        self.actions_by_name["reuse_seed"].setEnabled(entry.seed is not None)
        menu = QMenu(self)
        for action in self.actions_by_name.values():
            if action is self.actions_by_name["delete"]:
                menu.addSeparator()
            menu.addAction(action)
        menu.exec(self.view.viewport().mapToGlobal(pos))
        for action in self.actions_by_name.values():
            action.setEnabled(True)

    def _update_title(self) -> None:
        count = self.model.rowCount()
        self.title.setText(f"&Gallery — {count} image{'s' if count != 1 else ''}")
