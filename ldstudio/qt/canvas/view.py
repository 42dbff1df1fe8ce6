"""CanvasView: the source with its mask overlaid, painted with the mouse; GUI thread.

The picture shown is one cached QImage over a numpy buffer (source tinted by the mask). A brush
segment recomposes only its dirty rectangle of that buffer and asks Qt to repaint only where
that rectangle lands on screen, so a 4096² canvas paints as fast as a small one. Zoom with the
wheel (around the cursor), pan with the middle button or Space + drag, drag the canvas edges to
outpaint, `[`/`]` are the pane's. With a result shown, a split compares before and after.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QCursor,
    QEnterEvent,
    QFocusEvent,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from ldstudio.core.canvas import CanvasDocument, Rect
from ldstudio.core.inpaint import OUTPAINT_MULTIPLE, OUTPAINT_RANGE
from ldstudio.qt import refcount_guard
from ldstudio.qt.images import pil_to_qimage

MASK_COLOUR = (255, 48, 96)  # RGB of the overlay where the mask is 255
MASK_OPACITY = 128  # of 256: the source stays visible under a fully painted mask
ZOOM_RANGE = (0.02, 32.0)
FIT_MARGIN = 24  # px around the canvas when fitted: room to grab its edges
EDGE_GRIP = 10  # screen px beyond a canvas edge where a drag outpaints that side
SIDES = ("left", "top", "right", "bottom")
COMPOSE_BAND = 64  # rows recomposed at a time


def _overlay_table() -> np.ndarray:
    """3×65536 uint8: for mask m and source value v (BGR order), v + (colour - v)·m·opacity."""
    mask = np.arange(256, dtype=np.uint32)[:, None]
    value = np.arange(256, dtype=np.uint32)[None, :]
    weight = (mask * MASK_OPACITY) >> 8
    return np.stack(
        [
            ((value * (256 - weight) + c * weight) >> 8).astype(np.uint8).ravel()
            for c in MASK_COLOUR[::-1]
        ]
    )


_OVERLAY = _overlay_table()


def _checker(height: int, width: int) -> np.ndarray:
    """A grey checkerboard (HxW uint8) shown through transparent source pixels."""
    ys = (np.arange(height) // 8)[:, None]
    xs = (np.arange(width) // 8)[None, :]
    return np.where((xs + ys) % 2 == 0, 204, 153).astype(np.uint8)


class CanvasView(QWidget):
    stroke_finished = Signal()  # a mouse stroke ended (one undo step)
    outpaint_dragged = Signal(object)  # (left, top, right, bottom) set by dragging an edge
    split_moved = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        refcount_guard.install()  # a paint per mouse move, an emit per stroke: see refcount_guard
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 120)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._document: CanvasDocument | None = None
        self._base: np.ndarray | None = None  # HxWx3 BGR: the source over a checkerboard
        self._buffer: np.ndarray | None = None  # HxWx4 BGRX: what is shown, shared with _image
        self._image: QImage | None = None
        self._composed = -1  # the document revision the buffer shows
        self._before: QImage | None = None  # the plain source, for the compare split
        self._result: QImage | None = None
        self.compare = False
        self.split = 0.5  # of the canvas width: before on the left, the result on the right
        self.scale = 1.0
        self.offset = QPointF(0, 0)  # where the canvas origin (source top-left) is on screen
        self._fitted = True  # keep fitting on resize until the user zooms or pans
        self._cursor: QPointF | None = None
        self._space = False
        self._painting = False
        self._panning: QPointF | None = None
        self._edge: str | None = None  # the side being dragged
        self._edge_start: tuple[QPointF, tuple[int, int, int, int]] | None = None
        self._splitting = False

    def sizeHint(self) -> QSize:
        return QSize(640, 560)

    # -- document -------------------------------------------------------------------------

    def document(self) -> CanvasDocument | None:
        return self._document

    def set_document(self, document: CanvasDocument | None) -> None:
        if self._document is not None:
            self._document.remove_listener(self.refresh)
        self._document = document
        self._result = None
        self.compare = False
        if document is None:
            self._base = self._buffer = None
            self._image = self._before = None
            self.update()
            return
        source = document.source
        if source.mode == "RGBA":
            rgba = np.asarray(source)
            alpha = rgba[..., 3:4].astype(np.uint16)
            board = _checker(document.height, document.width)[..., None].astype(np.uint16)
            rgb = ((rgba[..., :3] * alpha + board * (255 - alpha) + 127) // 255).astype(np.uint8)
        else:
            rgb = np.asarray(source)
        self._base = np.ascontiguousarray(rgb[..., ::-1])
        self._buffer = np.empty((document.height, document.width, 4), np.uint8)
        self._buffer[..., 3] = 255
        self._image = QImage(
            self._buffer.data,
            document.width,
            document.height,
            4 * document.width,
            QImage.Format.Format_RGB32,
        )
        self._before = None
        self._compose((0, 0, document.width, document.height))
        document.add_listener(self.refresh)
        self._fitted = True
        self.fit()

    def refresh(self, rect: Rect | None) -> None:
        """The document changed in `rect` (None: everything): recompose and repaint just that."""
        document = self._document
        if document is None:
            return
        if rect is None:
            # Outpaint changes come here too: the mask is recomposed only if it changed.
            if document.revision != self._composed:
                self._compose((0, 0, document.width, document.height))
            if self._fitted:
                self.fit()
            self.update()
            return
        self._compose(rect)
        self.update(self.screen_rect(rect))

    def _compose(self, rect: Rect) -> None:
        document, base, buffer = self._document, self._base, self._buffer
        if document is None or base is None or buffer is None:
            return
        self._composed = document.revision
        x0, y0, x1, y1 = rect
        if x0 >= x1 or y0 >= y1:
            return
        mask = document.mask[y0:y1, x0:x1]
        if not mask.any():
            buffer[y0:y1, x0:x1, :3] = base[y0:y1, x0:x1]
            return
        # One table look-up per channel: _OVERLAY[c][mask << 8 | source] is the tinted value.
        # In bands of rows, so the temporaries stay in the cache (2× faster on a 4096² canvas).
        for top in range(y0, y1, COMPOSE_BAND):
            bottom = min(y1, top + COMPOSE_BAND)
            index = document.mask[top:bottom, x0:x1].astype(np.uint16) << 8
            for channel in range(3):
                buffer[top:bottom, x0:x1, channel] = _OVERLAY[channel].take(
                    index | base[top:bottom, x0:x1, channel]
                )

    def set_result(self, image: Image.Image | None) -> None:
        """Show `image` (the output, source + outpaint size) beside the source, split view."""
        self._result = pil_to_qimage(image) if image is not None else None
        self.compare = image is not None
        self.update()

    def set_compare(self, compare: bool) -> None:
        self.compare = compare and self._result is not None
        self.update()

    def set_split(self, split: float) -> None:
        self.split = min(1.0, max(0.0, split))
        self.split_moved.emit(self.split)
        self.update()

    # -- geometry -------------------------------------------------------------------------

    def canvas_rect(self) -> QRectF:
        """The output's area in canvas coordinates: the source at the origin, plus outpaint."""
        document = self._document
        if document is None:
            return QRectF()
        left, top, right, bottom = document.outpaint
        return QRectF(-left, -top, document.width + left + right, document.height + top + bottom)

    def to_canvas(self, point: QPointF) -> QPointF:
        return (point - self.offset) / self.scale

    def to_screen(self, point: QPointF) -> QPointF:
        return point * self.scale + self.offset

    def screen_rect(self, rect: Rect) -> QRect:
        """Where canvas pixels `rect` are on screen, grown to whole pixels (+1 for smoothing)."""
        x0, y0, x1, y1 = rect
        left = math.floor(x0 * self.scale + self.offset.x()) - 1
        top = math.floor(y0 * self.scale + self.offset.y()) - 1
        right = math.ceil(x1 * self.scale + self.offset.x()) + 1
        bottom = math.ceil(y1 * self.scale + self.offset.y()) + 1
        return QRect(left, top, right - left, bottom - top)

    def fit(self) -> None:
        """Show the whole canvas (source and outpaint), centred, with room around its edges."""
        area = self.canvas_rect()
        if area.isEmpty():
            return
        width = max(1, self.width() - 2 * FIT_MARGIN)
        height = max(1, self.height() - 2 * FIT_MARGIN)
        self.scale = min(width / area.width(), height / area.height(), 1.0)
        centre = QPointF(self.width() / 2, self.height() / 2)
        self.offset = centre - area.center() * self.scale
        self._fitted = True
        self.update()

    def actual_size(self) -> None:
        """100 %: one canvas pixel per screen pixel, around the widget's centre."""
        self.zoom_at(1.0 / self.scale, QPointF(self.width() / 2, self.height() / 2))

    def zoom_at(self, factor: float, anchor: QPointF) -> None:
        """Zoom by `factor` keeping the canvas point under `anchor` (screen) where it is."""
        scale = min(ZOOM_RANGE[1], max(ZOOM_RANGE[0], self.scale * factor))
        under = self.to_canvas(anchor)
        self.scale = scale
        self.offset = anchor - under * scale
        self._fitted = False
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    # -- painting -------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(event.rect(), self.palette().window().color().darker(130))
        document, image = self._document, self._image
        if document is None or image is None:
            return
        painter.save()
        painter.translate(self.offset)
        painter.scale(self.scale, self.scale)
        # Smoothing when zoomed out; sharp pixels when zoomed in (to paint a mask exactly).
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.scale < 1.0)
        area = self.canvas_rect()
        source = QRectF(0, 0, document.width, document.height)
        if area != source:
            self._paint_outpaint(painter, area, source)
        if self.compare and self._result is not None:
            self._paint_compare(painter, area, image)
        else:
            painter.drawImage(source, image)
        painter.restore()
        self._paint_overlays(painter, area)

    def _paint_outpaint(self, painter: QPainter, area: QRectF, source: QRectF) -> None:
        # The new area: hatched in the mask's colour, since all of it is repainted.
        painter.fillRect(area, QColor(60, 60, 60))
        tint = QColor(*MASK_COLOUR, 90)
        painter.fillRect(area, tint)
        painter.fillRect(area, QBrush(QColor(*MASK_COLOUR, 140), Qt.BrushStyle.BDiagPattern))
        painter.fillRect(source, QColor(0, 0, 0))

    def _paint_compare(self, painter: QPainter, area: QRectF, image: QImage) -> None:
        result = self._result
        assert result is not None and self._document is not None
        if self._before is None:
            self._before = pil_to_qimage(self._document.source)
        split_x = area.left() + self.split * area.width()
        painter.save()
        painter.setClipRect(QRectF(area.left(), area.top(), split_x - area.left(), area.height()))
        painter.drawImage(QRectF(0, 0, self._document.width, self._document.height), self._before)
        painter.restore()
        painter.save()
        painter.setClipRect(QRectF(split_x, area.top(), area.right() - split_x, area.height()))
        painter.drawImage(QRectF(area.topLeft(), QSize(result.width(), result.height())), result)
        painter.restore()

    def _paint_overlays(self, painter: QPainter, area: QRectF) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        screen = QRectF(self.to_screen(area.topLeft()), self.to_screen(area.bottomRight()))
        pen = QPen(QColor(255, 255, 255, 200), 1, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(screen)
        if self.compare and self._result is not None:
            x = screen.left() + self.split * screen.width()
            painter.setPen(QPen(QColor(255, 255, 255), 2))
            painter.drawLine(QPointF(x, screen.top()), QPointF(x, screen.bottom()))
            painter.setBrush(QColor(255, 255, 255))
            painter.drawEllipse(QPointF(x, screen.center().y()), 7, 7)
            painter.setPen(QColor(255, 255, 255))
            metrics = painter.fontMetrics()
            painter.drawText(
                QPointF(x - metrics.horizontalAdvance("Before") - 12, screen.top() + 18), "Before"
            )
            painter.drawText(QPointF(x + 12, screen.top() + 18), "After")
            return
        cursor, document = self._cursor, self._document
        if cursor is not None and document is not None and not self._busy_with_view():
            radius = max(1.0, document.brush_size / 2 * self.scale)
            for colour, width in ((QColor(0, 0, 0, 160), 3.0), (QColor(255, 255, 255), 1.0)):
                painter.setPen(QPen(colour, width))
                painter.drawEllipse(cursor, radius, radius)
            if radius > 6:  # the brush's hard core, for a soft brush
                inner = radius * document.hardness
                if 2 < inner < radius - 2:
                    painter.setPen(QPen(QColor(255, 255, 255, 110), 1, Qt.PenStyle.DotLine))
                    painter.drawEllipse(cursor, inner, inner)

    def _busy_with_view(self) -> bool:
        return self._panning is not None or self._edge is not None or self._space

    def _cursor_rect(self, point: QPointF) -> QRect:
        document = self._document
        radius = (document.brush_size / 2 * self.scale if document else 0) + 4
        return QRectF(point.x() - radius, point.y() - radius, 2 * radius, 2 * radius).toRect()

    def _move_cursor(self, point: QPointF | None) -> None:
        if self._cursor is not None:
            self.update(self._cursor_rect(self._cursor))
        self._cursor = point
        if point is not None:
            self.update(self._cursor_rect(point))

    def brush_changed(self) -> None:
        """The brush's size or hardness changed: redraw the cursor circle."""
        self.update()

    # -- mouse and keys -------------------------------------------------------------------

    def edge_at(self, point: QPointF) -> str | None:
        """The canvas side whose outpaint a press at `point` (screen) would drag, if any."""
        document = self._document
        if document is None or self.compare:
            return None
        area = self.canvas_rect()
        here = self.to_canvas(point)
        if QRectF(0, 0, document.width, document.height).contains(here):
            return None  # inside the source the mouse paints
        grip = EDGE_GRIP / self.scale
        if not area.adjusted(-grip, -grip, grip, grip).contains(here):
            return None
        distances = {
            "left": here.x() - area.left(),
            "top": here.y() - area.top(),
            "right": area.right() - here.x(),
            "bottom": area.bottom() - here.y(),
        }
        side = min(distances, key=lambda s: abs(distances[s]))
        return side if abs(distances[side]) <= grip else None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        point = event.position()
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space
        ):
            self._panning = point
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        document = self._document
        if button != Qt.MouseButton.LeftButton or document is None:
            return
        if self.compare and self._result is not None:
            self._splitting = True
            self._split_to(point)
            return
        edge = self.edge_at(point)
        if edge is not None:
            self._edge = edge
            self._edge_start = (point, document.outpaint)
            return
        here = self.to_canvas(point)
        self._painting = True
        document.begin_stroke(here.x(), here.y())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        point = event.position()
        document = self._document
        if self._panning is not None:
            self.offset += point - self._panning
            self._panning = point
            self._fitted = False
            self.update()
            return
        if self._splitting:
            self._split_to(point)
            return
        if self._edge is not None and self._edge_start is not None and document is not None:
            self._drag_edge(point)
            return
        if self._painting and document is not None:
            here = self.to_canvas(point)
            document.stroke_to(here.x(), here.y())
        self._move_cursor(point)
        self._update_cursor_shape(point)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._panning is not None and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._panning = None
            self._update_cursor_shape(event.position())
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self._splitting = False
        if self._edge is not None:
            self._edge = self._edge_start = None
            return
        if self._painting and self._document is not None:
            self._painting = False
            self._document.end_stroke()
            self.stroke_finished.emit()

    def _split_to(self, point: QPointF) -> None:
        area = self.canvas_rect()
        left = self.to_screen(area.topLeft()).x()
        width = max(1.0, area.width() * self.scale)
        self.set_split((point.x() - left) / width)

    def _drag_edge(self, point: QPointF) -> None:
        document, start = self._document, self._edge_start
        assert document is not None and start is not None and self._edge is not None
        origin, amounts = start
        delta = (point - origin) / self.scale
        index = SIDES.index(self._edge)
        outward = {"left": -delta.x(), "top": -delta.y(), "right": delta.x(), "bottom": delta.y()}
        value = amounts[index] + outward[self._edge]
        low, high = OUTPAINT_RANGE
        value = max(low, min(high, round(value / OUTPAINT_MULTIPLE) * OUTPAINT_MULTIPLE))
        changed = list(amounts)
        changed[index] = int(value)
        new = (changed[0], changed[1], changed[2], changed[3])
        if new != document.outpaint:
            document.set_outpaint(*new)
            self.outpaint_dragged.emit(new)
            self.update()

    def _update_cursor_shape(self, point: QPointF) -> None:
        if self._space:
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        if self.compare and self._result is not None:
            self.setCursor(Qt.CursorShape.SplitHCursor)
            return
        edge = self.edge_at(point)
        if edge in ("left", "right"):
            self.setCursor(Qt.CursorShape.SizeHorCursor)
        elif edge in ("top", "bottom"):
            self.setCursor(Qt.CursorShape.SizeVerCursor)
        else:
            self.setCursor(Qt.CursorShape.CrossCursor)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_at(1.25**steps, event.position())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space = True
                self.setCursor(Qt.CursorShape.OpenHandCursor)
                self.update()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor_shape(QPointF(self.mapFromGlobal(QCursor.pos())))
            self.update()
            return
        super().keyReleaseEvent(event)

    def enterEvent(self, event: QEnterEvent) -> None:
        self._move_cursor(event.position())
        super().enterEvent(event)

    def leaveEvent(self, event: object) -> None:
        self._move_cursor(None)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self._space = False  # the Space release went elsewhere
        super().focusOutEvent(event)

    def cursor_position(self) -> QPoint | None:
        return self._cursor.toPoint() if self._cursor is not None else None
