"""FlowLayout: widgets left to right, wrapping onto the next row when the width runs out.

Qt has none built in. The canvas toolbar uses it so that its eleven buttons never force the
middle column wider than a 1280 px window leaves it (they wrap onto a second row instead of
pushing a horizontal scrollbar). Items are widgets only; a spacing-sized gap can be asked for
before any item (`addWidget(w, gap_before=8)`) to keep button groups apart.
"""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QWidget, QWidgetItem


class FlowLayout(QLayout):
    def __init__(self, parent: QWidget | None = None, spacing: int = 4) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._gaps: list[int] = []
        self._spacing = spacing
        self.setContentsMargins(QMargins(0, 0, 0, 0))

    # -- QLayout's item protocol --------------------------------------------------------------

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)
        self._gaps.append(0)

    def addWidget(self, widget: QWidget, gap_before: int = 0) -> None:
        self.addChildWidget(widget)
        self._items.append(QWidgetItem(widget))
        self._gaps.append(gap_before)
        self.invalidate()

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        if not 0 <= index < len(self._items):
            return None
        self._gaps.pop(index)
        return self._items.pop(index)

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:
        # Preferred: everything on one row.
        width = sum(gap + item.sizeHint().width() for gap, item in self._visible())
        width += self._spacing * max(len(self._visible()) - 1, 0)
        height = max((item.sizeHint().height() for _, item in self._visible()), default=0)
        return QSize(width, height)

    def minimumSize(self) -> QSize:
        # At least the widest single item: everything else may wrap.
        size = QSize()
        for _, item in self._visible():
            size = size.expandedTo(item.minimumSize())
        margins = self.contentsMargins()
        return size + QSize(margins.left() + margins.right(), margins.top() + margins.bottom())

    # -- placing ------------------------------------------------------------------------------

    def _visible(self) -> list[tuple[int, QLayoutItem]]:
        shown = []
        for gap, item in zip(self._gaps, self._items, strict=True):
            widget = item.widget()
            if widget is None or not widget.isHidden():
                shown.append((gap, item))
        return shown

    def _arrange(self, rect: QRect, move: bool) -> int:
        """Place the items in rows inside `rect` (when `move`); the height the rows take."""
        margins = self.contentsMargins()
        area = rect.adjusted(margins.left(), margins.top(), -margins.right(), -margins.bottom())
        x, y, row_height = area.x(), area.y(), 0
        for gap, item in self._visible():
            hint = item.sizeHint()
            step = gap if x > area.x() else 0
            if x > area.x() and x + step + hint.width() > area.right() + 1:
                x, y = area.x(), y + row_height + self._spacing
                row_height, step = 0, 0
            x += step
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self._spacing
            row_height = max(row_height, hint.height())
        return y + row_height - rect.y() + margins.bottom()
