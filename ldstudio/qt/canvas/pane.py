"""CanvasPane: open a source image, paint its mask, set outpaint and inpaint settings; GUI thread.

Self-contained: the window embeds it and asks `document()` and `settings()` when it builds a
job, and hands it the job's image with `show_result()`. Sources come from a file, a drop, the
clipboard or `set_source()` (the library's "Send to canvas"). A file that cannot be used (not
an image, too large, a mask of another size) is refused in the message bar, naming the file and
what is allowed; the canvas shown stays as it was.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError
from PySide6.QtCore import QMargins, QMimeData, QSize, Qt, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.canvas import BRUSH_SIZE_RANGE, MAX_SIDE, CanvasDocument
from ldstudio.core.inpaint import (
    AUTO_STRENGTH,
    AUTO_STRENGTH_INPAINTING_MODEL,
    INPAINT_AREAS,
    MASK_BLUR_RANGE,
    MASK_PADDING_RANGE,
    MASKED_CONTENTS,
    OUTPAINT_MULTIPLE,
    OUTPAINT_RANGE,
    OUTPAINT_SIDES,
    InpaintSettings,
)
from ldstudio.qt.canvas.view import CanvasView
from ldstudio.qt.flow_layout import FlowLayout

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)"
AREA_LABELS = {"whole": "Whole picture", "masked": "Only masked"}
CONTENT_LABELS = {
    "original": "original",
    "fill": "fill",
    "latent_noise": "latent noise",
    "latent_nothing": "latent nothing",
}
MASK_MODES = ("Inpaint masked", "Inpaint not masked")  # A1111's "Mask mode": invert_mask


class UnusableImage(ValueError):
    """An image the canvas cannot take; the message names it and what is allowed."""


def read_image(path: Path) -> Image.Image:
    """The image at `path`, fully decoded; UnusableImage naming the file when it cannot be."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.copy()
    except FileNotFoundError as error:
        raise UnusableImage(f"{path.name}: no such file") from error
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        raise UnusableImage(
            f"{path.name}: not an image that can be opened ({error.__class__.__name__}); "
            f"allowed: {', '.join(s.lstrip('.').upper() for s in IMAGE_SUFFIXES[:4])} and other "
            "images Pillow reads"
        ) from error
    return image


def qimage_to_pil(image: QImage) -> Image.Image:
    """A QImage as a PIL image: RGBA where it has an alpha channel, RGB otherwise."""
    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
    data = bytes(rgba.constBits())
    pil = Image.frombuffer(
        "RGBA", (rgba.width(), rgba.height()), data, "raw", "RGBA", rgba.bytesPerLine(), 1
    ).copy()
    if not image.hasAlphaChannel() or pil.getchannel("A").getextrema()[0] == 255:
        return pil.convert("RGB")
    return pil


def _dropped_path(mime: QMimeData) -> Path | None:
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            return Path(url.toLocalFile())
    return None


class CanvasPane(QWidget):
    changed = Signal()  # the source, mask, outpaint or a setting changed
    source_changed = Signal()
    upscale_requested = Signal()  # Upscale…: enlarge the source into a new library image

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self._document: CanvasDocument | None = None
        self._label = ""
        self._result: Image.Image | None = None
        self._showing = False  # widgets being set from settings: their signals are not edits

        self.view = CanvasView()
        self.view.stroke_finished.connect(self._mask_edited)
        self.view.outpaint_dragged.connect(self._outpaint_dragged)

        # -- message bar (refusals), as the preview pane's ---------------------------------
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
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

        # -- toolbar ---------------------------------------------------------------------------
        self.open_button = self._tool(
            "Open image…", "Open a source image to work on", self.open_dialog
        )
        self.paste_button = self._tool(
            "Paste", "Use the image on the clipboard as the source (Ctrl+V)", self.paste
        )
        self.load_mask_button = self._tool(
            "Load mask…",
            "Load a mask: a PNG of the source's size, white = repaint, or an image whose "
            "transparent pixels are repainted",
            self.load_mask_dialog,
        )
        self.upscale_button = self._tool(
            "Upscale…",
            "Enlarge the source image ×2 or ×4 into a new library image (the mask and outpaint "
            "are not used)",
            self.upscale_requested.emit,
        )
        self.brush_button = self._tool("Brush", "Paint the area to repaint (B)", None)
        self.eraser_button = self._tool("Eraser", "Erase the mask (E)", None)
        tool_group = QButtonGroup(self)
        for button in (self.brush_button, self.eraser_button):
            button.setCheckable(True)
            tool_group.addButton(button)
        self.brush_button.setChecked(True)
        tool_group.buttonToggled.connect(self._tool_changed)
        self.invert_button = self._tool(
            "Invert", "Swap painted and unpainted pixels (undoable)", self.invert
        )
        self.clear_button = self._tool("Clear", "Remove the whole mask (undoable)", self.clear)
        self.undo_button = self._tool("Undo", "Undo the last stroke or edit (Ctrl+Z)", self.undo)
        self.redo_button = self._tool("Redo", "Redo (Ctrl+Shift+Z)", self.redo)
        self.fit_button = self._tool("Fit", "Show the whole canvas (wheel: zoom)", self.view.fit)
        self.actual_button = self._tool(
            "100 %", "One image pixel per screen pixel", self.view.actual_size
        )
        self.caption = QLabel()
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # A wrapping row: at 1280 px the canvas column is narrower than all twelve buttons.
        toolbar = self.toolbar = FlowLayout(spacing=4)
        groups = (
            (self.open_button, self.paste_button, self.load_mask_button, self.upscale_button),
            (self.brush_button, self.eraser_button, self.invert_button, self.clear_button),
            (self.undo_button, self.redo_button, self.fit_button, self.actual_button),
        )
        for index, group in enumerate(groups):
            for position, button in enumerate(group):
                toolbar.addWidget(button, gap_before=8 if index and not position else 0)

        # -- empty state -----------------------------------------------------------------------
        empty = QWidget()
        empty_layout = QVBoxLayout(empty)
        empty_layout.addStretch(1)
        self.empty_label = QLabel(
            "No image on the canvas.\n\nOpen an image, paste one, drop a file here, or use "
            "“Send to canvas” in the library. Then paint what to repaint (img2img without a "
            "mask), or drag the canvas edges to outpaint."
        )
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setMaximumWidth(420)
        empty_buttons = QHBoxLayout()
        empty_buttons.addStretch(1)
        self.empty_open_button = self._tool("Open image…", "Open a source image", self.open_dialog)
        self.empty_paste_button = self._tool(
            "Paste", "Paste an image from the clipboard", self.paste
        )
        for button in (self.empty_open_button, self.empty_paste_button):
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setMinimumWidth(110)
            empty_buttons.addWidget(button)
        empty_buttons.addStretch(1)
        centre = QHBoxLayout()
        centre.addStretch(1)
        centre.addWidget(self.empty_label)
        centre.addStretch(1)
        empty_layout.addLayout(centre)
        empty_layout.addLayout(empty_buttons)
        empty_layout.addStretch(2)
        self.stack = QStackedWidget()
        self.stack.addWidget(empty)
        self.stack.addWidget(self.view)

        # -- side panel: brush, outpaint, settings -----------------------------------------
        self.size_spin = QSpinBox()
        self.size_spin.setRange(*BRUSH_SIZE_RANGE)
        self.size_spin.setValue(64)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Brush diameter in image pixels ([ smaller, ] larger)")
        self.size_spin.valueChanged.connect(self._brush_edited)
        self.hardness_slider = QSlider(Qt.Orientation.Horizontal)
        self.hardness_slider.setRange(0, 100)
        self.hardness_slider.setValue(50)
        self.hardness_slider.setToolTip("0: soft edge fading out over the radius; 100: hard edge")
        self.hardness_slider.valueChanged.connect(self._brush_edited)
        self.hardness_label = QLabel()
        hardness_row = QHBoxLayout()
        hardness_row.addWidget(self.hardness_slider, 1)
        hardness_row.addWidget(self.hardness_label)
        brush_box = QGroupBox("Brush")
        brush_form = QFormLayout(brush_box)
        brush_form.addRow("Size", self.size_spin)
        brush_form.addRow("Hardness", hardness_row)

        self.outpaint_spins: dict[str, QSpinBox] = {}
        outpaint_box = QGroupBox("Outpaint (px)")
        outpaint_box.setToolTip(
            f"Pixels added on each side, multiples of {OUTPAINT_MULTIPLE} up to "
            f"{OUTPAINT_RANGE[1]}; or drag the canvas edges"
        )
        outpaint_form = QFormLayout(outpaint_box)
        for side in OUTPAINT_SIDES:
            spin = QSpinBox()
            spin.setRange(*OUTPAINT_RANGE)
            spin.setSingleStep(OUTPAINT_MULTIPLE)
            spin.setToolTip(f"Pixels added on the {side}, multiples of {OUTPAINT_MULTIPLE}")
            # Typed values snap to multiples of 8 when the field is left (0..2048 by range).
            spin.editingFinished.connect(lambda s=spin: self._snap_outpaint(s))
            spin.valueChanged.connect(self._outpaint_edited)
            self.outpaint_spins[side] = spin
            outpaint_form.addRow(side.capitalize(), spin)

        self.strength_slider = QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(0, 100)
        self.strength_slider.setValue(round(AUTO_STRENGTH * 100))
        self.strength_slider.setToolTip(
            "Denoising strength: 0 keeps the source, 1 repaints from noise"
        )
        self.strength_auto = QCheckBox("Auto")
        self.strength_auto.setChecked(True)
        self.strength_auto.setToolTip(
            f"Auto: {AUTO_STRENGTH_INPAINTING_MODEL:g} on an inpainting model with a mask, "
            f"else {AUTO_STRENGTH:g}"
        )
        self.strength_label = QLabel()
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength_label)
        strength_row.addWidget(self.strength_auto)
        self.blur_spin = QSpinBox()
        self.blur_spin.setRange(*MASK_BLUR_RANGE)
        self.blur_spin.setValue(4)
        self.blur_spin.setSuffix(" px")
        self.blur_spin.setToolTip(
            "Mask blur: feathers the mask edge (Gaussian radius), "
            f"{MASK_BLUR_RANGE[0]} to {MASK_BLUR_RANGE[1]} px"
        )
        self.area_combo = QComboBox()
        for area in INPAINT_AREAS:
            self.area_combo.addItem(AREA_LABELS.get(area, area), area)
        self.area_combo.setToolTip(
            "Only masked: crop around the mask, repaint it at the model's size, paste it back"
        )
        self.padding_spin = QSpinBox()
        self.padding_spin.setRange(*MASK_PADDING_RANGE)
        self.padding_spin.setValue(32)
        self.padding_spin.setSuffix(" px")
        self.padding_spin.setToolTip(
            "Only masked: context kept around the mask's bounding box, "
            f"{MASK_PADDING_RANGE[0]} to {MASK_PADDING_RANGE[1]} px"
        )
        self.content_combo = QComboBox()
        for content in MASKED_CONTENTS:
            self.content_combo.addItem(CONTENT_LABELS.get(content, content), content)
        self.content_combo.setToolTip(
            "What the masked area starts from: the original pixels, their surroundings' "
            "colours (fill), noise, or nothing"
        )
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MASK_MODES)
        self.mode_combo.setToolTip("Inpaint not masked: repaint everything except the mask")
        self.soft_check = QCheckBox("Soft inpainting")
        self.soft_check.setChecked(True)
        self.soft_check.setToolTip(
            "Honour a feathered mask step by step instead of cutting it at 50 % (4-channel models)"
        )
        settings_box = QGroupBox("Inpaint")
        settings_form = QFormLayout(settings_box)
        settings_form.addRow("Strength", strength_row)
        settings_form.addRow("Mask blur", self.blur_spin)
        settings_form.addRow("Mask mode", self.mode_combo)
        settings_form.addRow("Area", self.area_combo)
        settings_form.addRow("Padding", self.padding_spin)
        settings_form.addRow("Content", self.content_combo)
        settings_form.addRow(self.soft_check)
        for signal in (
            self.strength_slider.valueChanged,
            self.strength_auto.toggled,
            self.blur_spin.valueChanged,
            self.area_combo.currentIndexChanged,
            self.padding_spin.valueChanged,
            self.content_combo.currentIndexChanged,
            self.mode_combo.currentIndexChanged,
            self.soft_check.toggled,
        ):
            signal.connect(self._setting_edited)

        self.compare_check = QCheckBox("Compare before / after")
        self.compare_check.setToolTip("Drag the split on the canvas; unchecked: edit the source")
        self.compare_check.toggled.connect(self._compare_toggled)
        self.use_result_button = self._tool(
            "Use as new source",
            "Continue from the result: it becomes the source, the mask and outpaint are cleared",
            self.use_result_as_source,
        )
        result_box = QGroupBox("Result")
        result_layout = QVBoxLayout(result_box)
        result_layout.addWidget(self.compare_check)
        result_layout.addWidget(self.use_result_button)

        panel = QWidget()
        side_layout = QVBoxLayout(panel)
        side_layout.setContentsMargins(0, 0, 4, 0)
        for box in (brush_box, outpaint_box, settings_box, result_box):
            side_layout.addWidget(box)
        side_layout.addStretch(1)
        self.side_scroll = QScrollArea()
        self.side_scroll.setWidget(panel)
        self.side_scroll.setWidgetResizable(True)
        self.side_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side_scroll.setFixedWidth(panel.sizeHint().width() + 16)

        body = QHBoxLayout()
        body.addWidget(self.stack, 1)
        body.addWidget(self.side_scroll)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.error_bar)
        layout.addLayout(toolbar)
        layout.addWidget(self.caption)
        layout.addLayout(body, 1)

        shortcuts = (
            (QKeySequence.StandardKey.Undo, self.undo),
            ("Ctrl+Shift+Z", self.redo),
            (QKeySequence.StandardKey.Redo, self.redo),
            (QKeySequence.StandardKey.Paste, self.paste),
            ("[", lambda: self.step_brush_size(-1)),
            ("]", lambda: self.step_brush_size(1)),
            ("B", lambda: self.brush_button.setChecked(True)),
            ("E", lambda: self.eraser_button.setChecked(True)),
        )
        for keys, slot in shortcuts:
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        self._refresh_labels()
        self._refresh_actions()

    def _tool(self, text: str, tip: str, slot: object) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        if callable(slot):
            button.clicked.connect(lambda _checked=False: slot())
        return button

    def wanted_width(self) -> int:
        """The width at which the toolbar fits on one row (the least the pane can live with is
        `minimumSizeHint`: the toolbar wraps below this)."""
        layout = self.layout()
        margins = layout.contentsMargins() if layout is not None else QMargins()
        toolbar = self.toolbar.sizeHint().width() + margins.left() + margins.right()
        return max(self.minimumSizeHint().width(), toolbar)

    def sizeHint(self) -> QSize:
        return QSize(900, 620)

    # -- the source ---------------------------------------------------------------------------

    def document(self) -> CanvasDocument | None:
        return self._document

    def label(self) -> str:
        return self._label

    def set_source(self, image: Image.Image, label: str) -> None:
        """Work on `image` (a new canvas, empty mask); the outpaint and settings stay.

        ValueError (naming `label` and what is allowed) when the image is too large; the
        canvas shown before stays.
        """
        try:
            document = CanvasDocument(image)
        except ValueError as error:
            raise UnusableImage(
                f"{label}: {image.width}×{image.height} px; allowed: up to {MAX_SIDE} px a side"
            ) from error
        document.brush_size = self.size_spin.value()
        document.hardness = self.hardness_slider.value() / 100
        document.erasing = self.eraser_button.isChecked()
        document.set_outpaint(*self._spin_outpaint())
        self._document = document
        self._label = label
        self._result = None
        self.view.set_document(document)
        self.stack.setCurrentWidget(self.view)
        self.compare_check.setChecked(False)
        self.clear_error()
        self._refresh_labels()
        self._refresh_actions()
        self.source_changed.emit()
        self.changed.emit()

    def open_file(self, path: Path) -> bool:
        """Open `path` as the source; False (and a message) when it cannot be used."""
        try:
            self.set_source(read_image(path), path.name)
        except UnusableImage as error:
            self.show_error(str(error))
            return False
        return True

    def open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open an image", "", IMAGE_FILTER)
        if name:
            self.open_file(Path(name))

    def paste(self) -> bool:
        """The clipboard's image (or image file) becomes the source."""
        mime = QGuiApplication.clipboard().mimeData()
        path = _dropped_path(mime) if mime is not None else None
        if path is not None:
            return self.open_file(path)
        image = QGuiApplication.clipboard().image()
        if image.isNull():
            self.show_error(
                "Paste: the clipboard holds no image; allowed: an image or an image file"
            )
            return False
        try:
            self.set_source(qimage_to_pil(image), "clipboard")
        except UnusableImage as error:
            self.show_error(str(error))
            return False
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if _dropped_path(mime) is not None or mime.hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        path = _dropped_path(mime)
        event.acceptProposedAction()
        if path is not None:
            self.open_file(path)
            return
        image = mime.imageData()
        if isinstance(image, QImage) and not image.isNull():
            try:
                self.set_source(qimage_to_pil(image), "dropped image")
            except UnusableImage as error:
                self.show_error(str(error))

    # -- the mask -----------------------------------------------------------------------------

    def load_mask_file(self, path: Path) -> bool:
        """Take `path` as the mask; False (and a message) when unreadable or of another size."""
        document = self._document
        if document is None:
            self.show_error("Open a source image before loading a mask")
            return False
        try:
            image = read_image(path)
            document.load_mask(image)
        except UnusableImage as error:
            self.show_error(str(error))
            return False
        except ValueError:
            self.show_error(
                f"{path.name}: the mask is {image.width}×{image.height} px; allowed: the "
                f"source's size, {document.width}×{document.height} px (white or transparent = "
                "repaint)"
            )
            return False
        self.clear_error()
        self._mask_edited()
        return True

    def load_mask_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Load a mask", "", IMAGE_FILTER)
        if name:
            self.load_mask_file(Path(name))

    def invert(self) -> None:
        if self._document is not None:
            self._document.invert()
            self._mask_edited()

    def clear(self) -> None:
        if self._document is not None:
            self._document.clear()
            self._mask_edited()

    def undo(self) -> None:
        if self._document is not None and self._document.undo() is not None:
            self._mask_edited()

    def redo(self) -> None:
        if self._document is not None and self._document.redo() is not None:
            self._mask_edited()

    def _mask_edited(self) -> None:
        self._refresh_actions()
        self.changed.emit()

    def step_brush_size(self, direction: int) -> None:
        """`[` and `]`: about 15 % smaller or larger (at least one pixel)."""
        size = self.size_spin.value()
        step = max(1, round(size * 0.15))
        self.size_spin.setValue(size + direction * step)

    def _brush_edited(self) -> None:
        if self._document is not None:
            self._document.brush_size = self.size_spin.value()
            self._document.hardness = self.hardness_slider.value() / 100
        self._refresh_labels()
        self.view.brush_changed()

    def _tool_changed(self) -> None:
        if self._document is not None:
            self._document.erasing = self.eraser_button.isChecked()

    # -- outpaint -----------------------------------------------------------------------------

    def _spin_outpaint(self) -> tuple[int, int, int, int]:
        left, top, right, bottom = (self.outpaint_spins[s].value() for s in OUTPAINT_SIDES)
        return left, top, right, bottom

    def _snap_outpaint(self, spin: QSpinBox) -> None:
        value = spin.value()
        snapped = round(value / OUTPAINT_MULTIPLE) * OUTPAINT_MULTIPLE
        if snapped != value:
            spin.setValue(min(OUTPAINT_RANGE[1], snapped))

    def _outpaint_edited(self) -> None:
        if self._showing:
            return
        amounts = self._spin_outpaint()
        if any(a % OUTPAINT_MULTIPLE for a in amounts):
            return  # being typed; snapped when the field is left
        if self._document is not None and self._document.outpaint != amounts:
            self._document.set_outpaint(*amounts)
        self._setting_edited()

    def _outpaint_dragged(self, amounts: tuple[int, int, int, int]) -> None:
        self._show_outpaint(amounts)
        self._setting_edited()

    def _show_outpaint(self, amounts: tuple[int, int, int, int]) -> None:
        showing, self._showing = self._showing, True
        try:
            for side, value in zip(OUTPAINT_SIDES, amounts, strict=True):
                self.outpaint_spins[side].setValue(value)
        finally:
            self._showing = showing
        self._refresh_labels()

    # -- settings -----------------------------------------------------------------------------

    def settings(self) -> InpaintSettings:
        return InpaintSettings(
            strength=None if self.strength_auto.isChecked() else self.strength_slider.value() / 100,
            mask_blur=self.blur_spin.value(),
            inpaint_area=str(self.area_combo.currentData()),
            mask_padding=self.padding_spin.value(),
            masked_content=str(self.content_combo.currentData()),
            invert_mask=self.mode_combo.currentIndex() == 1,
            outpaint=self._document.outpaint if self._document else self._spin_outpaint(),
            soft=self.soft_check.isChecked(),
        )

    def set_settings(self, settings: InpaintSettings) -> None:
        """Show `settings` (validated first: ValueError names a bad field, nothing changes)."""
        settings.validate()
        self._showing = True
        try:
            self.strength_auto.setChecked(settings.strength is None)
            if settings.strength is not None:
                self.strength_slider.setValue(round(settings.strength * 100))
            self.blur_spin.setValue(settings.mask_blur)
            self.area_combo.setCurrentIndex(self.area_combo.findData(settings.inpaint_area))
            self.padding_spin.setValue(settings.mask_padding)
            self.content_combo.setCurrentIndex(self.content_combo.findData(settings.masked_content))
            self.mode_combo.setCurrentIndex(1 if settings.invert_mask else 0)
            self.soft_check.setChecked(settings.soft)
            for side, value in zip(OUTPAINT_SIDES, settings.outpaint, strict=True):
                self.outpaint_spins[side].setValue(value)
        finally:
            self._showing = False
        if self._document is not None:
            self._document.set_outpaint(*settings.outpaint)
        self._refresh_labels()
        self.changed.emit()

    def _setting_edited(self) -> None:
        self._refresh_labels()
        if not self._showing:
            self.changed.emit()

    # -- the result ---------------------------------------------------------------------------

    def show_result(self, image: Image.Image) -> None:
        """Show a job's output; the compare split (before | after) is on until unchecked."""
        self._result = image
        self.view.set_result(image)
        self.compare_check.setChecked(True)
        self._refresh_actions()

    def result(self) -> Image.Image | None:
        return self._result

    def _compare_toggled(self, compare: bool) -> None:
        self.view.set_compare(compare)

    def use_result_as_source(self) -> None:
        """Continue from the result: it is the new source; no mask, no outpaint (it has it)."""
        result = self._result
        if result is None:
            return
        self._show_outpaint((0, 0, 0, 0))
        self.set_source(result, f"result of {self._label}" if self._label else "result")

    # -- state shown --------------------------------------------------------------------------

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setToolTip(message)
        self.error_bar.show()

    def clear_error(self) -> None:
        self.error_bar.hide()
        self.error_label.clear()

    def error_text(self) -> str:
        return self.error_label.text() if not self.error_bar.isHidden() else ""

    def _refresh_labels(self) -> None:
        self.hardness_label.setText(f"{self.hardness_slider.value()} %")
        auto = self.strength_auto.isChecked()
        self.strength_slider.setEnabled(not auto)
        self.strength_label.setText("auto" if auto else f"{self.strength_slider.value() / 100:.2f}")
        document = self._document
        if document is None:
            self.caption.setText("")
            return
        width, height = document.canvas_size
        extended = f" → {width}×{height} with outpaint" if document.outpaint != (0, 0, 0, 0) else ""
        self.caption.setText(f"{self._label}: {document.width}×{document.height}{extended}")

    def _refresh_actions(self) -> None:
        document = self._document
        has = document is not None
        for button in (
            self.load_mask_button,
            self.upscale_button,
            self.brush_button,
            self.eraser_button,
            self.invert_button,
            self.clear_button,
            self.fit_button,
            self.actual_button,
        ):
            button.setEnabled(has)
        self.undo_button.setEnabled(bool(document and document.can_undo))
        self.redo_button.setEnabled(bool(document and document.can_redo))
        self.clear_button.setEnabled(bool(document and document.has_mask()))
        self.compare_check.setEnabled(self._result is not None)
        self.use_result_button.setEnabled(self._result is not None)
