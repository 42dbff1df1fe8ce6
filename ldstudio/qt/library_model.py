"""LibraryModel: a virtual, lazily paged list model over the LibraryStore; GUI thread.

The row count comes from `store.count(filter)`; rows are fetched in pages of PAGE_SIZE on one
query thread and cached (a bounded LRU of pages), so a 100,000-image library costs the GUI
thread only the rows it paints. Thumbnails are built and decoded to `QImage` on a small pool and
become `QPixmap`s here, on the GUI thread. Every result carries the generation it was asked for:
after a filter change or refresh, late results of the old generation are dropped. Requests are
served newest first and old ones are forgotten, so a fast scroll through the library fetches
what is on screen now, not everything it flew past.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap

from ldstudio.core.library import LibraryEntry, LibraryError, LibraryFilter, LibraryStore
from ldstudio.qt import refcount_guard
from ldstudio.qt.images import pil_to_qimage

log = logging.getLogger(__name__)

PAGE_SIZE = 120
PAGES_KEPT = 60  # 7,200 entries: several screens either way of the visible one
ICONS_KEPT = 1500
PAGE_REQUESTS_KEPT = 8  # a fast scroll forgets pages it flew past
THUMB_REQUESTS_KEPT = 200
THUMB_WORKERS = 2
REVISION_POLL_MS = 2000

EntryRole = Qt.ItemDataRole.UserRole + 1
IdRole = Qt.ItemDataRole.UserRole + 2
AnyIndex = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class _Thumb:
    generation: int
    image_id: int
    image: QImage | None
    error: str = ""


class _Relay(QObject):
    """Carries worker results to the GUI thread (queued: the relay lives on the GUI thread)."""

    # `object` for values that may pass 2**31: a C++ int argument would overflow.
    counted = Signal(int, int, int, object)  # generation, count, unfiltered count, revision
    paged = Signal(int, int, object)  # generation, page, list[LibraryEntry]
    thumbnailed = Signal(object)  # _Thumb
    revision_read = Signal(object)  # int
    choices = Signal(object, object)  # [(model, count)], [(tag, count)]
    failed = Signal(str)


def load_thumbnail_image(store: LibraryStore, entry: LibraryEntry, fill: int = 0) -> QImage:
    """Build (if needed) and decode an entry's thumbnail; worker thread.

    With `fill`, a thumbnail smaller than fill×fill (a 64×64 image's) is scaled up smoothly to
    fit it: an icon is never drawn larger than its pixmap, so it would sit small in its cell.
    """
    path = store.thumbnail(entry)
    with Image.open(path) as opened:
        opened.load()
        image: Image.Image = opened
        if fill and max(image.size) < fill:
            scale = fill / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
        if "A" in image.getbands():
            rgba = image.convert("RGBA")
            data = rgba.tobytes()
            qimage = QImage(
                data, rgba.width, rgba.height, 4 * rgba.width, QImage.Format.Format_RGBA8888
            )
            return qimage.copy()
        return pil_to_qimage(image)


def entry_tooltip(entry: LibraryEntry) -> str:
    when = datetime.fromtimestamp(entry.created).strftime("%Y-%m-%d %H:%M")
    lines = [entry.prompt or entry.path.name]
    if entry.negative_prompt:
        lines.append(f"Negative: {entry.negative_prompt}")
    facts = [
        f"{entry.width}×{entry.height}" if entry.width and entry.height else "",
        entry.model,
        f"seed {entry.seed}" if entry.seed is not None else "",
        when,
    ]
    lines.append(" · ".join(f for f in facts if f))
    if entry.missing:
        lines.append("The file is missing from disk")
    return "\n".join(lines)


@dataclass(frozen=True)
class RowSelection:
    """Rows selected in the library view, and the image ids already known for loaded rows.

    Ctrl+A in a 100,000-image library selects rows whose pages were never loaded; `resolve`
    finds their ids on a worker and refuses if the library moved under the selection, so a
    bulk delete never touches an image the user did not see selected.
    """

    filter: LibraryFilter
    rows: tuple[int, ...]
    known: Mapping[int, int]  # row -> image id, for rows whose page is loaded
    current: LibraryEntry | None = None  # the focused image (the details view shows it)

    def __len__(self) -> int:
        return len(self.rows)

    def resolve(self, store: LibraryStore) -> list[int]:
        """The selected image ids in row order; any thread that may query `store`."""
        if all(row in self.known for row in self.rows):
            return [self.known[row] for row in self.rows]
        ids = store.ids(self.filter)
        moved = any(row >= len(ids) or ids[row] != i for row, i in self.known.items())
        if moved or (self.rows and self.rows[-1] >= len(ids)):
            raise LibraryError(
                "the library changed while these images were selected; select them again"
            )
        return [ids[row] for row in self.rows]


class LibraryModel(QAbstractListModel):
    """Rows are library images in the filter's order; data arrives asynchronously."""

    count_changed = Signal(int)
    page_loaded = Signal(int)  # page number
    failed = Signal(str)  # a query or thumbnail error, readable
    choices_loaded = Signal(object, object)  # [(model, count)], [(tag, count)] for filters

    def __init__(
        self,
        store: LibraryStore,
        *,
        icon_size: int = 128,
        poll_revision: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        refcount_guard.install()  # emits per page and thumbnail: see refcount_guard
        self.store = store
        self._icon_size = icon_size
        self._filter = LibraryFilter()
        self._generation = 0
        self._count = 0
        self._total = 0  # images in the library (or trash) with no filter: "3 of 7 images"
        self._counted = False  # a count has arrived: an empty grid now means "none match"
        self._revision: int | None = None
        self._pages: OrderedDict[int, list[LibraryEntry]] = OrderedDict()
        self._page_wanted: OrderedDict[int, None] = OrderedDict()
        self._page_in_flight: int | None = None
        self._icons: OrderedDict[int, QIcon] = OrderedDict()
        self._thumb_wanted: OrderedDict[int, LibraryEntry] = OrderedDict()
        self._thumb_in_flight: set[int] = set()
        self._thumb_failed: set[int] = set()
        self._closed = False
        self._reset_pending = False  # a new filter shows from the top; a refresh keeps the place
        # One query thread: SQLite work stays ordered and a connection lives on one thread.
        self._query_pool = ThreadPoolExecutor(1, thread_name_prefix="ldstudio-library-query")
        self._thumb_pool = ThreadPoolExecutor(
            THUMB_WORKERS, thread_name_prefix="ldstudio-library-thumbs"
        )
        self._relay = _Relay()
        self._relay.counted.connect(self._on_counted)
        self._relay.paged.connect(self._on_paged)
        self._relay.thumbnailed.connect(self._on_thumbnail)
        self._relay.revision_read.connect(self._on_revision)
        self._relay.failed.connect(self.failed)
        self._relay.choices.connect(self.choices_loaded)
        self._placeholder = _placeholder_icon(icon_size, QColor(128, 128, 128, 40))
        self._broken = _placeholder_icon(icon_size, QColor(200, 60, 60, 70))
        self._poll = QTimer(self)
        self._poll.setInterval(REVISION_POLL_MS)
        self._poll.timeout.connect(self._poll_revision)
        if poll_revision:
            self._poll.start()

    # -- Qt model API ---------------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._count

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < self._count:
            return None
        entry = self.entry_at(index.row())
        if entry is None:
            if role == Qt.ItemDataRole.DecorationRole:
                self._want_page(index.row() // PAGE_SIZE)
                return self._placeholder
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            icon = self._icons.get(entry.id)
            if icon is not None:
                self._icons.move_to_end(entry.id)
                return icon
            if entry.id in self._thumb_failed or entry.missing:
                return self._broken
            self._want_thumbnail(entry)
            return self._placeholder
        if role == Qt.ItemDataRole.ToolTipRole:
            return entry_tooltip(entry)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return entry.prompt or entry.path.name
        if role == EntryRole:
            return entry
        if role == IdRole:
            return entry.id
        return None

    # -- queries ---------------------------------------------------------------------------------

    @property
    def filter(self) -> LibraryFilter:
        return self._filter

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def total(self) -> int:
        """The images the view would show with no filter (the library, or the trash)."""
        return self._total

    @property
    def counted(self) -> bool:
        """Whether a count has arrived yet (before it, an empty view means nothing)."""
        return self._counted

    def is_filtered(self) -> bool:
        """True when the filter hides some images: a search, a model, tags, dates, favourites."""
        return _narrows(self._filter)

    def entry_at(self, row: int) -> LibraryEntry | None:
        """The entry at `row` if its page is loaded (asks for the page otherwise)."""
        if not 0 <= row < self._count:
            return None
        number, offset = divmod(row, PAGE_SIZE)
        page = self._pages.get(number)
        if page is None:
            self._want_page(number)
            return None
        self._pages.move_to_end(number)
        return page[offset] if offset < len(page) else None

    def selection(self, rows: list[int], current: LibraryEntry | None = None) -> RowSelection:
        """A RowSelection of `rows` (ascending), with the ids of those already loaded."""
        known: dict[int, int] = {}
        for row in rows:
            image_id = self.loaded_id(row)
            if image_id is not None:
                known[row] = image_id
        return RowSelection(self._filter, tuple(rows), known, current)

    def loaded_id(self, row: int) -> int | None:
        """The image id at `row` if its page is loaded; asks for nothing (rows may be 100,000)."""
        page = self._pages.get(row // PAGE_SIZE)
        if page is None or not 0 <= row % PAGE_SIZE < len(page):
            return None
        return page[row % PAGE_SIZE].id

    def row_of(self, image_id: int) -> int | None:
        """The row of an image among the loaded pages, or None."""
        for number, page in self._pages.items():
            for offset, entry in enumerate(page):
                if entry.id == image_id:
                    return number * PAGE_SIZE + offset
        return None

    def has_thumbnail(self, image_id: int) -> bool:
        return image_id in self._icons

    def is_busy(self) -> bool:
        return bool(
            self._page_in_flight is not None
            or self._page_wanted
            or self._thumb_in_flight
            or self._thumb_wanted
        )

    # -- refreshing ------------------------------------------------------------------------------

    def set_filter(self, f: LibraryFilter) -> None:
        """Show another selection: recount, and drop everything of the old one."""
        self._filter = f
        self._reset_pending = True
        self.refresh()

    def refresh(self) -> None:
        """Recount and reload (after a job finished, a delete, or another process's change)."""
        if self._closed:
            return
        self._generation += 1
        self._page_wanted.clear()
        self._thumb_wanted.clear()
        generation, f = self._generation, self._filter
        self._submit_query(lambda: self._count_job(generation, f))

    def _count_job(self, generation: int, f: LibraryFilter) -> None:
        revision = self.store.revision()
        count = self.store.count(f)
        total = self.store.count(_unfiltered(f)) if _narrows(f) else count
        self._relay.counted.emit(generation, count, total, revision)

    def _on_counted(self, generation: int, count: int, total: int, revision: int) -> None:
        if generation != self._generation or self._closed:
            return
        self._revision = revision
        self._total = total
        self._counted = True
        old = self._count
        reset, self._reset_pending = self._reset_pending or old == 0, False
        self._pages.clear()
        if reset:
            self.beginResetModel()
            self._count = count
            self.endResetModel()
        elif count > old:
            # New images sort first (or last, oldest first): rows appear there, so the place
            # the user scrolled to and the selection stay put.
            first = 0 if self._filter.newest_first else old
            self.beginInsertRows(QModelIndex(), first, first + count - old - 1)
            self._count = count
            self.endInsertRows()
        elif count < old:
            # Which rows went is unknown (a delete, another process): drop rows at the end and
            # reload the pages, which keeps the scroll position instead of jumping to the top.
            self.beginRemoveRows(QModelIndex(), count, old - 1)
            self._count = count
            self.endRemoveRows()
        if not reset and count:
            self.dataChanged.emit(self.index(0), self.index(count - 1))
        self.count_changed.emit(count)

    def _want_page(self, number: int) -> None:
        if self._closed or number in self._pages:
            return
        self._page_wanted[number] = None
        self._page_wanted.move_to_end(number)
        while len(self._page_wanted) > PAGE_REQUESTS_KEPT:
            self._page_wanted.popitem(last=False)
        self._next_page()

    def _next_page(self) -> None:
        if self._page_in_flight is not None or not self._page_wanted:
            return
        number, _ = self._page_wanted.popitem(last=True)  # the newest request is on screen now
        self._page_in_flight = number
        generation, f = self._generation, self._filter
        self._submit_query(lambda: self._page_job(generation, f, number))

    def _page_job(self, generation: int, f: LibraryFilter, number: int) -> None:
        entries = self.store.page(f, number * PAGE_SIZE, PAGE_SIZE)
        self._relay.paged.emit(generation, number, entries)

    def _on_paged(self, generation: int, number: int, entries: list[LibraryEntry]) -> None:
        self._page_in_flight = None
        if generation == self._generation and not self._closed:
            self._pages[number] = entries
            while len(self._pages) > PAGES_KEPT:
                self._pages.popitem(last=False)
            first = number * PAGE_SIZE
            last = min(first + len(entries), self._count) - 1
            if last >= first:
                self.dataChanged.emit(self.index(first), self.index(last))
            self.page_loaded.emit(number)
        if not self._closed:
            self._next_page()

    def _submit_query(self, job: Callable[[], None]) -> None:
        def run() -> None:
            try:
                job()
            except Exception as exc:  # a query error must reach the user, not a dead thread
                damaged = self.store.damage(exc)
                if damaged is not None:  # no traceback: the message names the way out
                    log.warning("library query failed: %s", damaged)
                    self._relay.failed.emit(f"Library query failed: {damaged}")
                else:
                    log.exception("library query failed")
                    self._relay.failed.emit(f"Library query failed: {type(exc).__name__}: {exc}")
                self._relay.paged.emit(-1, -1, [])  # frees the in-flight slot

        self._query_pool.submit(run)

    # -- thumbnails -----------------------------------------------------------------------------

    def _want_thumbnail(self, entry: LibraryEntry) -> None:
        if self._closed or entry.id in self._thumb_in_flight:
            return
        self._thumb_wanted[entry.id] = entry
        self._thumb_wanted.move_to_end(entry.id)
        while len(self._thumb_wanted) > THUMB_REQUESTS_KEPT:
            self._thumb_wanted.popitem(last=False)
        self._next_thumbnails()

    def _next_thumbnails(self) -> None:
        # Two per worker in flight: the pool never idles, and the queue never holds stale work.
        while len(self._thumb_in_flight) < 2 * THUMB_WORKERS and self._thumb_wanted:
            image_id, entry = self._thumb_wanted.popitem(last=True)
            self._thumb_in_flight.add(image_id)
            generation = self._generation
            future = self._thumb_pool.submit(self._thumb_job, generation, entry)
            future.add_done_callback(self._thumb_done)

    def _thumb_job(self, generation: int, entry: LibraryEntry) -> _Thumb:
        try:
            image = load_thumbnail_image(self.store, entry, fill=self._icon_size)
            return _Thumb(generation, entry.id, image)
        except Exception as exc:  # unreadable or vanished file: show it as broken
            return _Thumb(generation, entry.id, None, f"{type(exc).__name__}: {exc}")

    def _thumb_done(self, future: Future[_Thumb]) -> None:
        if future.cancelled():
            return
        self._relay.thumbnailed.emit(future.result())

    def _on_thumbnail(self, thumb: _Thumb) -> None:
        self._thumb_in_flight.discard(thumb.image_id)
        if self._closed:
            return
        if thumb.image is None:
            log.warning("no thumbnail for image %d: %s", thumb.image_id, thumb.error)
            self._thumb_failed.add(thumb.image_id)
        else:
            self._icons[thumb.image_id] = _untinted_icon(QPixmap.fromImage(thumb.image))
            while len(self._icons) > ICONS_KEPT:
                self._icons.popitem(last=False)
        row = self.row_of(thumb.image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
        self._next_thumbnails()

    def forget_thumbnail(self, image_id: int) -> None:
        """Drop a cached icon (the file changed or moved)."""
        self._icons.pop(image_id, None)
        self._thumb_failed.discard(image_id)

    def load_choices(self) -> None:
        """Read the models and tags the filter bar offers; `choices_loaded` brings them."""
        if self._closed:
            return
        self._submit_query(
            lambda: self._relay.choices.emit(self.store.models(), self.store.all_tags())
        )

    # -- other processes ------------------------------------------------------------------------

    def _poll_revision(self) -> None:
        if self._closed or self._page_in_flight is not None:
            return

        def job() -> None:
            self._relay.revision_read.emit(self.store.revision())

        self._submit_query(job)

    def _on_revision(self, revision: int) -> None:
        if self._revision is not None and revision != self._revision and not self._closed:
            self.refresh()

    # -- shutdown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop polling and the worker threads; call before `store.close()`."""
        if self._closed:
            return
        self._closed = True
        self._poll.stop()
        self._query_pool.shutdown(wait=True, cancel_futures=True)
        self._thumb_pool.shutdown(wait=True, cancel_futures=True)


def _unfiltered(f: LibraryFilter) -> LibraryFilter:
    return LibraryFilter(trashed=f.trashed, missing=f.missing, newest_first=f.newest_first)


def _narrows(f: LibraryFilter) -> bool:
    return f != _unfiltered(f)


def _placeholder_icon(size: int, colour: QColor) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(colour)
    return _untinted_icon(pixmap)


def _untinted_icon(pixmap: QPixmap) -> QIcon:
    """The same pixmap in every mode: a selected image must keep its true colours."""
    icon = QIcon()
    for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
        icon.addPixmap(pixmap, mode)
    return icon
