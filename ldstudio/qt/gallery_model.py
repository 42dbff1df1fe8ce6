"""GalleryModel: the images of this session and of the output folder, newest first; GUI thread.

Entries come from finished jobs (with their ImageRecord) and from scanning the output folder
(params read back from the PNG). Thumbnails arrive later as QImages made off the GUI thread and
become QPixmaps here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap

from ldstudio.core.events import ImageRecord
from ldstudio.core.params import GenerationParams
from ldstudio.qt.images import THUMBNAIL_SIZE

PathRole = Qt.ItemDataRole.UserRole + 1
AnyIndex = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class GalleryEntry:
    path: Path
    params: GenerationParams | None  # None: the file carries no ldstudio metadata
    record: ImageRecord | None = None  # set for images made in this session
    job_id: int | None = None
    batch_index: int = 0

    @property
    def seed(self) -> int | None:
        if self.params is not None and isinstance(self.params.seed, int):
            return self.params.seed
        return None

    def tooltip(self) -> str:
        if self.params is None:
            return f"{self.path.name}\n(no ldstudio parameters in this file)"
        p = self.params
        negative = f"\nNegative: {p.negative_prompt}" if p.negative_prompt else ""
        return (
            f"{p.prompt}{negative}\n{p.scheduler}, {p.steps} steps, guidance {p.guidance_scale:g}, "
            f"seed {p.seed}, {p.width}×{p.height}\n{self.path}"
        )


class GalleryModel(QAbstractListModel):
    def __init__(self) -> None:
        super().__init__()
        self._entries: list[GalleryEntry] = []
        self._thumbs: dict[Path, QIcon] = {}
        placeholder = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        placeholder.fill(Qt.GlobalColor.transparent)
        self._placeholder = _untinted_icon(placeholder)

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._entries)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbs.get(entry.path, self._placeholder)
        if role == Qt.ItemDataRole.ToolTipRole:
            return entry.tooltip()
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return entry.params.prompt if entry.params else entry.path.name
        if role == PathRole:
            return str(entry.path)
        return None

    # -- edits --------------------------------------------------------------------------------

    def prepend(self, entries: list[GalleryEntry]) -> None:
        """Add entries at the top (give them newest first); paths already shown are skipped."""
        known = {e.path for e in self._entries}
        fresh = [e for e in entries if e.path not in known]
        if not fresh:
            return
        self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
        self._entries[0:0] = fresh
        self.endInsertRows()

    def append(self, entries: list[GalleryEntry]) -> None:
        """Add older entries at the bottom (from a folder scan)."""
        known = {e.path for e in self._entries}
        fresh = [e for e in entries if e.path not in known]
        if not fresh:
            return
        start = len(self._entries)
        self.beginInsertRows(QModelIndex(), start, start + len(fresh) - 1)
        self._entries.extend(fresh)
        self.endInsertRows()

    def remove(self, path: Path) -> None:
        row = self.row_of(path)
        if row is None:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._entries[row]
        self.endRemoveRows()
        self._thumbs.pop(path, None)

    def clear(self) -> None:
        self.beginResetModel()
        self._entries.clear()
        self._thumbs.clear()
        self.endResetModel()

    def set_thumbnail(self, path: Path, image: QImage) -> None:
        row = self.row_of(path)
        if row is None:
            return
        self._thumbs[path] = _untinted_icon(QPixmap.fromImage(image))
        index = self.index(row)
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    # -- queries ------------------------------------------------------------------------------

    def entry(self, row: int) -> GalleryEntry:
        return self._entries[row]

    def entries(self) -> list[GalleryEntry]:
        return list(self._entries)

    def row_of(self, path: Path) -> int | None:
        for row, entry in enumerate(self._entries):
            if entry.path == path:
                return row
        return None

    def has_thumbnail(self, path: Path) -> bool:
        return path in self._thumbs


def _untinted_icon(pixmap: QPixmap) -> QIcon:
    """An icon that looks the same when selected: the view tints selected icons with the
    highlight colour, which would show users wrong colours for their own images."""
    icon = QIcon()
    for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
        icon.addPixmap(pixmap, mode)
    return icon
