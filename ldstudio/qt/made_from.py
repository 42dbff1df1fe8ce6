"""What a saved image was made from: its request, and the source image and mask of an inpaint
job from the library's blob store (read on a worker thread), and the image details' "Made from"
box that shows them (GUI thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap, QTextDocument
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.library import LibraryEntry, LibraryStore
from ldstudio.core.request import KINDS_WITH_SOURCE, ROLE_IMAGE, ROLE_MASK, Request
from ldstudio.core.upscale import UpscaleSettings, upscaler_label
from ldstudio.qt.images import pil_to_qimage

THUMBNAIL = 96  # px, the longer side of the source and mask thumbnails
AREA_LABELS = {"whole": "Whole picture", "masked": "Only masked"}  # A1111's words
CONTENT_LABELS = {
    "original": "original",
    "fill": "fill",
    "latent_noise": "latent noise",
    "latent_nothing": "latent nothing",
}


@dataclass(frozen=True)
class MadeFrom:
    """An inpaint image's request and its inputs; an input that cannot be read is None and
    `problems` says why ("source image 1a2b3c4d5e: not in this library's blob store")."""

    path: Path  # the image made
    request: Request
    image: Image.Image | None
    mask: Image.Image | None
    problems: tuple[str, ...] = ()

    @property
    def settings(self) -> InpaintSettings:
        return self.request.inpaint or InpaintSettings()


def open_source(path: Path) -> Image.Image:
    """An image file as a canvas source: RGB, or RGBA when it has transparency; OSError when
    it cannot be read."""
    with Image.open(path) as opened:
        opened.load()
        transparent = opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info
        return opened.convert("RGBA" if transparent else "RGB")


def read_made_from(store: LibraryStore, entry: LibraryEntry) -> MadeFrom | None:
    """What `entry` was made from, its source and mask decoded; None unless it is an inpaint
    or upscale job's image. Worker thread: it reads the blob files."""
    inputs = store.inputs_of(entry)
    request = inputs.request
    if request is None or request.kind not in KINDS_WITH_SOURCE:
        return None
    problems = list(inputs.missing)

    def load(path: Path | None, what: str, mode: str | None) -> Image.Image | None:
        if path is None:
            return None
        try:
            with Image.open(path) as opened:
                opened.load()
                return opened.convert(mode) if mode and opened.mode != mode else opened.copy()
        except (OSError, ValueError) as exc:
            problems.append(f"{what}: cannot be read ({exc})")
        return None

    image = load(inputs.image, "source image", None)
    mask = load(inputs.mask, "mask", "L")
    return MadeFrom(entry.path, request, image, mask, tuple(problems))


def thumbnail(image: Image.Image | None) -> QImage:
    """A small QImage of `image` (any thread: a QImage, not a QPixmap); null for None."""
    if image is None:
        return QImage()
    small = image.copy()
    small.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    return pil_to_qimage(small)


def settings_rows(request: Request) -> list[tuple[str, str]]:
    """The inpaint (or upscale) settings of `request` as (label, value) rows, in A1111's
    words."""
    if request.upscale is not None:
        return upscale_rows(request.upscale)
    s = request.inpaint or InpaintSettings()
    rows = [
        ("Made as", request.face),
        ("Strength", "auto" if s.strength is None else f"{s.strength:g}"),
        ("Mask blur", f"{s.mask_blur} px"),
        ("Inpaint area", AREA_LABELS.get(s.inpaint_area, s.inpaint_area)),
        ("Masked content", CONTENT_LABELS.get(s.masked_content, s.masked_content)),
        ("Soft inpainting", "on" if s.soft else "off"),
    ]
    if s.inpaint_area == "masked":
        rows.append(("Mask padding", f"{s.mask_padding} px"))
    if s.invert_mask:
        rows.append(("Mask mode", "Inpaint not masked"))
    if s.outpainting:
        left, top, right, bottom = s.outpaint
        rows.append(("Outpaint", f"left {left}, top {top}, right {right}, bottom {bottom} px"))
    return rows


def upscale_rows(settings: UpscaleSettings) -> list[tuple[str, str]]:
    """An upscale's settings as (label, value) rows."""
    rows = [
        ("Made as", "upscale"),
        ("Scale", f"×{settings.scale}"),
        ("Upscaler", upscaler_label(settings)),
        ("Refine strength", f"{settings.refine_strength:g}" if settings.refines else "off"),
    ]
    if settings.refines:
        rows.append(("Tiles", f"{settings.tile} px, overlap {settings.overlap} px"))
    return rows


class MadeFromView(QWidget):
    """The details' "Made from" box: source and mask thumbnails, the face and its settings."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("made_from")
        self.title = QLabel("<b>Made from</b>")
        self.source_label = QLabel()
        self.mask_label = QLabel()
        for label in (self.source_label, self.mask_label):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setMinimumSize(THUMBNAIL, THUMBNAIL)
            label.setWordWrap(True)
            label.setStyleSheet("QLabel { border: 1px solid palette(mid); }")
        self.source_caption = QLabel("Source")
        self.mask_caption = QLabel("Mask")
        self.facts = QLabel()
        self.facts.setObjectName("made_from_facts")
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.source_label, 0, 0)
        grid.addWidget(self.mask_label, 0, 1)
        grid.addWidget(self.source_caption, 1, 0, Qt.AlignmentFlag.AlignHCenter)
        grid.addWidget(self.mask_caption, 1, 1, Qt.AlignmentFlag.AlignHCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        layout.addWidget(self.title)
        layout.addLayout(grid)
        layout.addWidget(self.facts)
        self.made: MadeFrom | None = None
        self.show_made_from(None)

    def show_made_from(
        self, made: MadeFrom | None, source: QImage | None = None, mask: QImage | None = None
    ) -> None:
        """Show what an image was made from (thumbnails made on a worker); None hides the box."""
        self.made = made
        self.setVisible(made is not None)
        if made is None:
            return
        request = made.request
        self._show(self.source_label, source, "source missing" if made.image is None else "")
        if request.input(ROLE_IMAGE) is None:  # read from another tool's text
            self._show(self.mask_label, None, "not recorded")
        elif request.upscale is not None:
            self._show(self.mask_label, None, f"upscaled ×{request.upscale.scale}")
        elif request.input(ROLE_MASK) is not None:
            self._show(self.mask_label, mask, "mask missing" if made.mask is None else "")
        else:
            self._show(self.mask_label, None, "no mask:\nthe whole image")
        rows = settings_rows(request)
        text = "<br>".join(f"{label}: <b>{value}</b>" for label, value in rows)
        if made.problems:
            problems = "<br>".join(made.problems)
            text += f"<br><span style='color:#b3261e'>{problems}</span>"
        self.facts.setText(text)

    def text(self) -> str:
        """What the box says, as plain text (tests, copy)."""
        if self.made is None:
            return ""
        return " ".join(
            part
            for part in (self.source_label.text(), self.mask_label.text(), _plain(self.facts))
            if part
        )

    @staticmethod
    def _show(label: QLabel, image: QImage | None, text: str) -> None:
        if image is not None and not image.isNull() and not text:
            label.setPixmap(QPixmap.fromImage(image))
            label.setText("")
        else:
            label.setPixmap(QPixmap())
            label.setText(text)


def _plain(label: QLabel) -> str:
    document = QTextDocument()
    document.setHtml(label.text())
    return document.toPlainText().replace("\n", "; ")
