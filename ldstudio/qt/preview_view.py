"""PreviewPane: live denoising preview, progress (it/s, ETA), final image, timeline; GUI thread.

Previews are coalesced: `offer()` keeps only the newest frame and a ≤30 fps timer paints it, so a
fast engine never floods the GUI. `produced` and `displayed` count frames for the benchmark.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.events import JobStarted, StageStarted, StepProgress
from ldstudio.qt.images import array_to_qimage
from ldstudio.qt.timeline import Timeline

REPAINT_INTERVAL_MS = 33  # ≤ 30 frames per second
CANCELLING_TEXT = "Cancelling — stops after the current step"


class ImageCanvas(QWidget):
    """Paints one image, fitted to the widget (smoothly scaled) or at 100 %."""

    def __init__(self) -> None:
        super().__init__()
        self._image: QImage | None = None
        self.fit = True
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(64, 64)

    @property
    def image(self) -> QImage | None:
        return self._image

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self._update_minimum()
        self.update()

    def set_fit(self, fit: bool) -> None:
        self.fit = fit
        self._update_minimum()
        self.update()

    def _update_minimum(self) -> None:
        if not self.fit and self._image is not None:
            self.setMinimumSize(self._image.size())
        else:
            self.setMinimumSize(64, 64)

    def target_rect(self) -> QRect:
        if self._image is None:
            return QRect()
        size = self._image.size()
        if self.fit:
            size = size.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = (self.width() - size.width()) // 2
        y = (self.height() - size.height()) // 2
        return QRect(max(0, x), max(0, y), size.width(), size.height())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        if self._image is None:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(
                self.rect(),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                "Type a prompt and press Generate (Ctrl+Enter).\n"
                "The picture forms here, step by step.",
            )
            return
        # Previews are at latent resolution (8× smaller): smooth scaling avoids big blocks.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(self.target_rect(), self._image)


class PreviewPane(QWidget):
    export_requested = Signal()
    frame_selected = Signal(int)  # index into the current timeline

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.produced = 0
        self.displayed = 0
        self._pending: StepProgress | None = None
        self._progress: StepProgress | None = None
        self._started: JobStarted | None = None
        self._stage: StageStarted | None = None  # of a job with several stages
        self._timeline: Timeline | None = None
        self._final: QImage | None = None
        self._final_caption = ""
        self._cancelling = False

        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        # A word longer than the pane (a 150-character tag, a hash) cannot wrap: without this
        # its minimum width would widen the whole window past the screen. Clipped instead;
        # the tooltip and a selection copy hold it whole.
        self.error_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet(
            "QLabel#error { background: #b3261e; color: white; padding: 6px; border-radius: 4px; }"
        )
        self.error_close = QToolButton()
        self.error_close.setText("✕")
        self.error_close.setToolTip("Dismiss this message")
        self.error_close.clicked.connect(self.clear_error)
        self.error_bar = QWidget()
        error_row = QHBoxLayout(self.error_bar)
        error_row.setContentsMargins(0, 0, 0, 0)
        error_row.addWidget(self.error_label, 1)
        error_row.addWidget(self.error_close)
        self.error_bar.hide()

        self._caption = "No image yet"
        self.caption = QLabel(self._caption)
        self.caption.setObjectName("caption")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A long prompt in the caption must not widen the pane and squeeze the side panes.
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.fit_button = QToolButton()
        self.fit_button.setText("Fit")
        self.fit_button.setCheckable(True)
        self.fit_button.setChecked(True)
        self.fit_button.setToolTip("Fit the image to the window (Ctrl+0)")
        self.actual_button = QToolButton()
        self.actual_button.setText("100 %")
        self.actual_button.setCheckable(True)
        self.actual_button.setToolTip("Show the image at its real size (Ctrl+1)")
        self.fit_button.clicked.connect(lambda: self.set_fit(True))
        self.actual_button.clicked.connect(lambda: self.set_fit(False))

        self.canvas = ImageCanvas()
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidget(self.canvas)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scroll_area.setFrameShape(QScrollArea.Shape.NoFrame)

        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setTextVisible(True)
        self.progress.setFormat("Idle")
        self.progress.setValue(0)

        self.timeline_slider = QSlider(Qt.Orientation.Horizontal)
        self.timeline_slider.setToolTip(
            "Denoising timeline: scrub through the preview of every step of the selected image"
        )
        self.timeline_slider.setEnabled(False)
        self.timeline_slider.valueChanged.connect(self._show_timeline_frame)
        self.timeline_label = QLabel("Timeline")
        # As wide as its longest text, never wider: the slider keeps the rest of the row.
        metrics = self.timeline_label.fontMetrics()
        self.timeline_label.setFixedWidth(
            max(metrics.horizontalAdvance(t) for t in ("Timeline: recording…", "Step 150 of 150"))
            + 8
        )
        self.export_button = QToolButton()
        self.export_button.setText("Export animation…")
        self.export_button.setToolTip("Save the denoising as an animated WebP or GIF (Ctrl+E)")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self.export_requested)
        # The export sits with the other image buttons above it, so the timeline slider gets the
        # whole row below.
        header = QHBoxLayout()
        header.addWidget(self.caption, 1)
        header.addWidget(self.fit_button)
        header.addWidget(self.actual_button)
        header.addWidget(self.export_button)
        timeline_row = QHBoxLayout()
        timeline_row.addWidget(self.timeline_label)
        timeline_row.addWidget(self.timeline_slider, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.error_bar)
        layout.addLayout(header)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self.progress)
        layout.addLayout(timeline_row)

        self._timer = QTimer(self)
        self._timer.setInterval(REPAINT_INTERVAL_MS)
        self._timer.timeout.connect(self._repaint)

    def sizeHint(self) -> QSize:
        return QSize(560, 560)

    # -- live job --------------------------------------------------------------------------

    def job_started(self, event: JobStarted) -> None:
        self._started = event
        self._stage = None
        self._progress = None
        self._pending = None
        self._started_at = time.perf_counter()
        self._cancelling = False
        self.progress.setRange(0, event.total_steps * event.params.batch_count)
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        p = event.params
        self.set_caption(f"Job {event.job_id}: denoising {p.width}×{p.height}, {p.scheduler}")
        self.set_timeline(None)
        self.timeline_label.setText("Timeline: recording…")
        self._timer.start()

    def offer(self, event: StepProgress) -> None:
        """Take a progress event; only the newest preview frame is ever painted."""
        self._progress = event
        if event.preview is not None:
            self.produced += 1
            self._pending = event

    def job_cancelling(self) -> None:
        """The user asked to cancel: say so at once, not when the slow step ends."""
        self._cancelling = True
        self.progress.setFormat(CANCELLING_TEXT)

    def job_ended(self, text: str, *, made_images: bool = True) -> None:
        """The job is over; without images (cancelled, failed) its half-denoised preview and
        the timeline it was recording go, and the image shown before it comes back."""
        self._repaint()
        self._timer.stop()
        self._pending = None
        self._cancelling = False
        self.progress.setFormat(text)
        if made_images:
            return
        self.canvas.set_image(self._final)
        self.set_caption(self._final_caption or "No image yet")
        self.set_timeline(None)

    def job_failed(self, text: str) -> None:
        """Like a cancelled job, and the bar empties: a full bar would read as success."""
        self.job_ended(text, made_images=False)
        self.progress.setValue(self.progress.minimum())

    def stage_started(self, event: StageStarted) -> None:
        """A job of several stages (txt2img → upscale → img2img) enters the next one."""
        self._stage = event
        self._progress = None  # the last stage's steps are not this one's

    def flush(self) -> None:
        """Paint the newest progress now instead of at the next timer tick (screenshots)."""
        self._repaint()

    def _repaint(self) -> None:
        event = self._progress
        started = self._started
        if event is not None and started is not None:
            done = event.batch_index * event.total + event.step
            total = event.total * started.params.batch_count
            self.progress.setMaximum(total)
            self.progress.setValue(done)
            rate = event.it_per_s
            eta = (total - done) / rate if rate > 0 else 0.0
            batch = (
                f" · pass {event.batch_index + 1}/{started.params.batch_count}"
                if started.params.batch_count > 1
                else ""
            )
            stage = self._stage
            where = (
                f"Stage {stage.index + 1}/{stage.count} ({stage.name}) · "
                if stage is not None and stage.job_id == event.job_id
                else ""
            )
            self.progress.setFormat(
                CANCELLING_TEXT
                if self._cancelling
                else f"{where}Step {event.step}/{event.total}{batch} · {rate:.1f} it/s · "
                f"ETA {_duration(eta)}"
            )
        frame = self._pending
        if frame is None or frame.preview is None:
            return
        self._pending = None
        self.canvas.set_image(array_to_qimage(frame.preview))
        self.displayed += 1
        self.set_caption(
            f"Job {frame.job_id}: preview of step {frame.step}/{frame.total} "
            f"({frame.preview.shape[1]}×{frame.preview.shape[0]} preview, scaled up)"
        )

    # -- final images and errors ------------------------------------------------------------

    def show_image(self, image: QImage, caption: str) -> None:
        self._final = image
        self._final_caption = caption
        self.canvas.set_image(image)
        self.set_caption(caption)

    def clear(self) -> None:
        """Nothing shown: no image, caption or timeline, and none to come back after a job."""
        self._final, self._final_caption = None, ""
        self.canvas.set_image(None)
        self.set_caption("")
        self.set_timeline(None)

    def set_caption(self, text: str) -> None:
        """The line above the image, cut with "…" where it does not fit; whole in the tooltip."""
        self._caption = text
        self.caption.setToolTip(text)
        self._elide_caption()

    def _elide_caption(self) -> None:
        width = self.caption.width()
        metrics = self.caption.fontMetrics()
        self.caption.setText(metrics.elidedText(self._caption, Qt.TextElideMode.ElideRight, width))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide_caption()

    def show_error(self, message: str, detail: str = "") -> None:
        self.error_label.setText(message)
        self.error_label.setToolTip(detail or message)  # the whole text, even if clipped
        self.error_bar.show()

    def clear_error(self) -> None:
        self.error_bar.hide()
        self.error_label.clear()

    def set_fit(self, fit: bool) -> None:
        self.fit_button.setChecked(fit)
        self.actual_button.setChecked(not fit)
        self.canvas.set_fit(fit)

    # -- timeline ------------------------------------------------------------------------------

    def set_timeline(self, timeline: Timeline | None) -> None:
        """The step previews of the selected image; the slider's last position is the final."""
        self._timeline = timeline
        count = len(timeline.frames) if timeline else 0
        self.timeline_slider.blockSignals(True)
        self.timeline_slider.setRange(0, count)
        self.timeline_slider.setValue(count)
        self.timeline_slider.blockSignals(False)
        self.timeline_slider.setEnabled(count > 0)
        self.export_button.setEnabled(count > 0)
        steps = f"{count} step{'s' if count != 1 else ''}"
        self.timeline_label.setText(f"Timeline: {steps}" if count else "No timeline")

    def timeline(self) -> Timeline | None:
        return self._timeline

    def _show_timeline_frame(self, index: int) -> None:
        timeline = self._timeline
        if timeline is None:
            return
        if index >= len(timeline.frames):
            if self._final is not None:
                self.canvas.set_image(self._final)
            self.timeline_label.setText("Final image")
        else:
            step, frame = timeline.frames[index]
            self.canvas.set_image(array_to_qimage(frame))
            total = f" of {timeline.total_steps}" if timeline.total_steps else ""
            self.timeline_label.setText(f"Step {step}{total}")
        self.frame_selected.emit(index)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"
