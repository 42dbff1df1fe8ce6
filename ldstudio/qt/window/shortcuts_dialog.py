"""ShortcutsDialog: the F1 list of every keyboard shortcut of a window; GUI thread.

It is read from the window's actions and shortcut objects, so it cannot drift from what the
keys really do.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

# What the canvas pane's own keys do, for those of its shortcut objects that do not say it
# themselves (whatsThis); keyed by the keys as Qt writes them.
CANVAS_KEYS = {
    "[": "Smaller brush",
    "]": "Larger brush",
    "B": "Brush: paint what to repaint",
    "E": "Eraser: take paint off the mask",
    "Ctrl+Z": "Undo the last stroke or mask edit",
    "Ctrl+Shift+Z": "Redo",
    "Ctrl+Y": "Redo",
    "Ctrl+V": "Paste an image as the canvas's source",
}


def shortcut_rows(
    window: QWidget, scopes: Sequence[tuple[QWidget, str]]
) -> list[tuple[str, str, str]]:
    """(keys, what they do, where they work) for every shortcut of `window`; `scopes` name
    the panes a widget shortcut may live in ("In the library")."""
    rows: list[tuple[str, str, str]] = []
    for action in window.findChildren(QAction):
        keys = [k for k in action.shortcuts() if not k.isEmpty()]
        if keys:
            where = _scope(action.shortcutContext(), action.associatedObjects(), scopes)
            rows.append((_keys_text(keys), _plain_text(action.text()), where))
    for shortcut in window.findChildren(QShortcut):
        keys = [k for k in shortcut.keys() if not k.isEmpty()]  # noqa: SIM118 (not a dict)
        owner = shortcut.parent()
        if keys and owner is not None:
            where = _scope(shortcut.context(), [owner], scopes)
            text = _keys_text(keys)
            does = shortcut.whatsThis() or CANVAS_KEYS.get(text, "")
            rows.append((text, does, where))
    rows.sort(key=lambda row: (row[2] != "Anywhere", row[2], row[1]))
    return rows


def _scope(
    context: Qt.ShortcutContext, owners: list[QObject], scopes: Sequence[tuple[QWidget, str]]
) -> str:
    if context in (Qt.ShortcutContext.WindowShortcut, Qt.ShortcutContext.ApplicationShortcut):
        return "Anywhere"
    for owner in owners:
        for pane, name in scopes:
            if isinstance(owner, QWidget) and (owner is pane or pane.isAncestorOf(owner)):
                return name
    return "In its pane"


class ShortcutsDialog(QDialog):
    def __init__(self, rows: list[tuple[str, str, str]], parent: QWidget) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        table = QTableWidget(len(rows), 3)
        table.setObjectName("shortcuts")
        table.setHorizontalHeaderLabels(["Keys", "Does", "Where"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setWordWrap(False)
        for row, cells in enumerate(rows):
            for column, text in enumerate(cells):
                table.setItem(row, column, QTableWidgetItem(text))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        mouse = QLabel(
            "Mouse: Ctrl/Shift-click selects many images in the library; right-click (or the "
            "Menu key) shows what can be done with them; double-click an image for its details, "
            "a tag to remove it. On the canvas: drag to paint the mask, drag an edge outside "
            "the image to outpaint, the wheel zooms, Space+drag or the middle button pans."
        )
        mouse.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(table, 1)
        layout.addWidget(mouse)
        layout.addWidget(buttons)
        width = sum(table.columnWidth(c) for c in range(3)) + 4 * table.frameWidth() + 40
        self.resize(max(width, 560), min(720, 120 + 26 * len(rows)))


def _keys_text(keys: list[QKeySequence]) -> str:
    return ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in keys)


def _plain_text(text: str) -> str:
    """A menu text without its mnemonic marks: "&Open image…" → "Open image…"."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")
