"""What a saved image was made from: its request, and the source image and mask of an inpaint
job from the library's blob store (read on a worker thread), and the image details' "Made from"
box that shows them (GUI thread). An X/Y/Z plot's images are linked too: a grid lists its cells,
a cell names its grid (`read_grid_links`, `MadeFromView.show_grid`), each a link to open it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QTextDocument
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.library import LibraryEntry, LibraryStore
from ldstudio.core.library.grids import cell_position, grid_cells, grid_of
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


@dataclass(frozen=True)
class GridLinks:
    """An X/Y/Z plot's links from one image: a grid's cells, or the grid a cell belongs to."""

    grid: LibraryEntry  # the grid (the image itself when it is one)
    cells: tuple[LibraryEntry, ...]  # the grid's cells, in grid order (X fastest)
    position: int | None  # the image's place among them when it is a cell

    @property
    def is_grid(self) -> bool:
        return self.position is None


def read_grid_links(store: LibraryStore, entry: LibraryEntry) -> GridLinks | None:
    """The grid links of `entry`, or None when it is neither a grid nor a cell of one.
    Worker thread: it reads the index."""
    cells = grid_cells(store, entry)
    if cells:
        return GridLinks(entry, tuple(cells), None)
    grid = grid_of(store, entry)
    if grid is None:
        return None
    return GridLinks(grid, tuple(grid_cells(store, grid)), cell_position(grid, entry))


def grid_html(links: GridLinks) -> str:
    """The links as rich text: `image:ID` anchors the view turns into `image_requested`."""

    def link(entry: LibraryEntry) -> str:
        return f"<a href='image:{entry.id}'>{html.escape(entry.path.name)}</a>"

    if links.is_grid:
        items = "<br>".join(f"{i + 1}. {link(cell)}" for i, cell in enumerate(links.cells))
        return f"X/Y/Z plot of <b>{len(links.cells)}</b> cells:<br>{items}"
    place = "" if links.position is None else f" {links.position + 1} of {len(links.cells)}"
    return f"Cell{place} of the X/Y/Z plot {link(links.grid)}"


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
    """The details' "Made from" box: source and mask thumbnails, the face and its settings;
    and an X/Y/Z plot's links (`show_grid`), whose clicks ask to open that image."""

    image_requested = Signal(int)  # a library image id: show this image (a cell, a grid)

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
        self.grid_links = QLabel()
        self.grid_links.setObjectName("made_from_grid")
        self.grid_links.setWordWrap(True)
        self.grid_links.setTextFormat(Qt.TextFormat.RichText)
        self.grid_links.linkActivated.connect(self._link_activated)
        layout.addWidget(self.grid_links)
        self.made: MadeFrom | None = None
        self.links: GridLinks | None = None
        self.show_made_from(None)
        self.show_grid(None)

    def show_grid(self, links: GridLinks | None) -> None:
        """Show a grid's cells or a cell's grid (read on a worker); None hides that part."""
        self.links = links
        self.grid_links.setVisible(links is not None)
        self.grid_links.setText(grid_html(links) if links is not None else "")
        self._update_visible()

    def _update_visible(self) -> None:
        made = self.made is not None
        for part in (self.title, self.source_label, self.mask_label, self.source_caption,
                     self.mask_caption, self.facts):  # fmt: skip
            part.setVisible(made)
        self.setVisible(made or self.links is not None)

    def _link_activated(self, href: str) -> None:
        kind, _sep, value = href.partition(":")
        if kind == "image" and value.isdigit():
            self.image_requested.emit(int(value))

    def show_made_from(
        self, made: MadeFrom | None, source: QImage | None = None, mask: QImage | None = None
    ) -> None:
        """Show what an image was made from (thumbnails made on a worker); None hides the box."""
        self.made = made
        self._update_visible()
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
        parts = [self.source_label.text(), self.mask_label.text(), _plain(self.facts)]
        if self.made is None:
            parts = []
        if self.links is not None:
            parts.append(_plain(self.grid_links))
        return " ".join(part for part in parts if part)

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
