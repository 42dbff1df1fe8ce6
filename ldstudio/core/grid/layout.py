"""Laying out a labelled grid image with Pillow: X labels on top, Y labels on the left, a Z
value as a title above its grid; pure, any thread.

Cells may differ in size (a size axis): each sits centred in a slot as large as the largest,
so nothing is cropped or scaled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
MIN_FONT = 12
Box = tuple[int, int, int, int]  # left, top, right, bottom
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Label:
    """A label's text (wrapped as drawn) and the box it is centred in."""

    text: str
    box: Box


@dataclass(frozen=True)
class GridImage:
    """A drawn grid and where its parts are (tests, and a viewer that maps clicks to cells)."""

    image: Image.Image
    cells: tuple[Box, ...]  # each cell's slot, row by row
    x_labels: tuple[Label, ...]
    y_labels: tuple[Label, ...]
    title: Label | None


def font_for(cell_size: tuple[int, int]) -> Font:
    """Pillow's default font at a size that reads at the cell's scale (bitmap without FreeType)."""
    return ImageFont.load_default(max(MIN_FONT, min(cell_size) // 14))


def draw_grid(
    images: Sequence[Image.Image],
    columns: int,
    x_labels: Sequence[str],
    y_labels: Sequence[str] = (),
    title: str = "",
) -> GridImage:
    """Cells row by row, `columns` to a row; labels may be empty (an axis of one value
    needs none). ValueError when the counts do not fit together."""
    if columns < 1 or not images or len(images) % columns:
        raise ValueError(f"grid: {len(images)} cells do not fill rows of {columns}")
    rows = len(images) // columns
    if x_labels and len(x_labels) != columns:
        raise ValueError(f"grid: {len(x_labels)} X labels for {columns} columns")
    if y_labels and len(y_labels) != rows:
        raise ValueError(f"grid: {len(y_labels)} Y labels for {rows} rows")
    cw = max(image.width for image in images)
    ch = max(image.height for image in images)
    font = font_for((cw, ch))
    pad = max(4, font_size(font) // 2)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    tops = [wrap(measure, text, font, cw - 2 * pad) for text in x_labels]
    left_width = 0
    lefts: list[str] = []
    if y_labels:
        widest = max(cw, 10 * font_size(font))  # a long label wraps rather than widen the grid
        lefts = [wrap(measure, text, font, widest - 2 * pad) for text in y_labels]
        left_width = max(_size(measure, text, font)[0] for text in lefts) + 2 * pad
    top_height = max((_size(measure, t, font)[1] for t in tops), default=-2 * pad) + 2 * pad
    titled = wrap(measure, title, font, left_width + columns * cw - 2 * pad) if title else ""
    title_height = _size(measure, titled, font)[1] + 2 * pad if title else 0
    top = title_height + top_height
    width, height = left_width + columns * cw, top + rows * ch
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    cells: list[Box] = []
    for i, image in enumerate(images):
        row, column = divmod(i, columns)
        slot = (left_width + column * cw, top + row * ch)
        cells.append((slot[0], slot[1], slot[0] + cw, slot[1] + ch))
        offset = (slot[0] + (cw - image.width) // 2, slot[1] + (ch - image.height) // 2)
        canvas.paste(image.convert("RGB"), offset)
    x_boxes = [
        Label(text, (left_width + c * cw, title_height, left_width + (c + 1) * cw, top))
        for c, text in enumerate(tops)
    ]
    y_boxes = [
        Label(text, (0, top + r * ch, left_width, top + (r + 1) * ch))
        for r, text in enumerate(lefts)
    ]
    title_box = Label(titled, (0, 0, width, title_height)) if title else None
    for label in [*x_boxes, *y_boxes, *([title_box] if title_box else [])]:
        _centred(draw, label, font)
    return GridImage(canvas, tuple(cells), tuple(x_boxes), tuple(y_boxes), title_box)


def stack(grids: Sequence[Image.Image], gap: int = 0) -> Image.Image:
    """Grids one above the other (a Z axis as a column of grids), left-aligned on white."""
    width = max(grid.width for grid in grids)
    height = sum(grid.height for grid in grids) + gap * (len(grids) - 1)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    y = 0
    for grid in grids:
        canvas.paste(grid, (0, y))
        y += grid.height + gap
    return canvas


def font_size(font: Font) -> int:
    return int(getattr(font, "size", MIN_FONT))


def wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> str:
    """`text` broken into lines no wider than `width` (at spaces; a long word by letters)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=font) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
            while draw.textlength(line, font=font) > width and len(line) > 1:
                cut = len(line) - 1
                while cut > 1 and draw.textlength(line[:cut], font=font) > width:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return "\n".join(lines)


def _size(draw: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int]:
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, align="center")
    return int(right - left), int(bottom - top)


def _centred(draw: ImageDraw.ImageDraw, label: Label, font: Font) -> None:
    left, top, right, bottom = label.box
    bbox = draw.multiline_textbbox((0, 0), label.text, font=font, align="center")
    x = left + (right - left - (bbox[2] - bbox[0])) / 2 - bbox[0]
    y = top + (bottom - top - (bbox[3] - bbox[1])) / 2 - bbox[1]
    draw.multiline_text((x, y), label.text, font=font, fill=INK, align="center")
