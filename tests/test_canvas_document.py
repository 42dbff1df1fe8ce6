"""CanvasDocument: what a stroke paints, where, how soft; undo/redo; whole-mask edits; outpaint."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from ldstudio.core.canvas import TILE, CanvasDocument, brush_coverage


def doc(width: int = 200, height: int = 160, **brush: object) -> CanvasDocument:
    document = CanvasDocument(Image.new("RGB", (width, height), (10, 20, 30)))
    for name, value in brush.items():
        setattr(document, name, value)
    return document


def outside(mask: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = rect
    rest = mask.copy()
    rest[y0:y1, x0:x1] = 0
    return rest


def test_a_dab_is_a_disc_of_the_brush_size_inside_its_rect() -> None:
    document = doc(brush_size=20, hardness=1.0)
    rect = document.begin_stroke(50, 60)
    document.end_stroke()
    assert rect == (40, 50, 61, 71)
    mask = document.mask
    assert not outside(mask, rect).any()
    ys, xs = np.nonzero(mask == 255)
    # Fully painted pixels lie within the radius; none beyond it is painted at all.
    centres = np.hypot(xs + 0.5 - 50, ys + 0.5 - 60)
    assert centres.max() <= 10
    ys, xs = np.nonzero(mask)
    assert np.hypot(xs + 0.5 - 50, ys + 0.5 - 60).max() < 10
    assert mask[60, 50] == 255 and mask[60, 41] > 0 and mask[60, 38] == 0
    # Area close to the disc's (antialiased edge of one pixel).
    assert abs((mask / 255).sum() - math.pi * 10**2) < 2 * math.pi * 10


def test_a_segment_touches_only_its_dirty_rect() -> None:
    document = doc(brush_size=16, hardness=0.5)
    document.begin_stroke(30, 30)
    before = document.mask.copy()
    rect = document.stroke_to(120, 70)
    assert rect == (22, 22, 129, 79)
    x0, y0, x1, y1 = rect
    changed = np.argwhere(document.mask != before)
    assert changed[:, 1].min() >= x0 and changed[:, 1].max() < x1
    assert changed[:, 0].min() >= y0 and changed[:, 0].max() < y1
    # The whole segment is painted: the midpoint is full.
    assert document.mask[50, 75] == 255
    document.end_stroke()


def test_rect_is_clipped_at_the_image_edges() -> None:
    document = doc(brush_size=40)
    assert document.begin_stroke(-5, 3) == (0, 0, 16, 24)
    assert document.stroke_to(-100, -100) == (0, 0, 16, 24)  # the brush leaves the image
    assert document.stroke_to(-500, -500) == (0, 0, 0, 0)
    document.end_stroke()


def test_hardness_sets_the_falloff() -> None:
    xs = np.arange(0, 64, dtype=np.float32) + 0.5
    ys = np.array([0.5], np.float32)
    hard = brush_coverage(xs, ys, (0.5, 0.5), (0.5, 0.5), radius=32, hardness=1.0)[0]
    soft = brush_coverage(xs, ys, (0.5, 0.5), (0.5, 0.5), radius=32, hardness=0.0)[0]
    half = brush_coverage(xs, ys, (0.5, 0.5), (0.5, 0.5), radius=32, hardness=0.5)[0]
    # Hard: full up to one pixel from the radius. Soft: falls all the way from the centre.
    assert (hard[:31] == 1).all() and hard[32:].max() == 0
    assert soft[0] == 1 and 0 < soft[16] < 1 and soft[31] < 0.01
    # Half: full inside half the radius, then a monotone fall to 0 at the radius.
    assert (half[:16] == 1).all() and 0 < half[24] < 1 and half[32:].max() == 0
    assert (np.diff(half) <= 0).all() and (np.diff(soft) <= 0).all()


def test_overlapping_segments_do_not_build_up() -> None:
    document = doc(brush_size=30, hardness=0.0)
    document.begin_stroke(100, 80)
    single = document.mask.copy()
    for _ in range(5):
        document.stroke_to(100, 80)
    document.end_stroke()
    np.testing.assert_array_equal(document.mask, single)  # max, not a sum


def test_eraser_lowers_the_mask_by_its_coverage() -> None:
    document = doc(brush_size=40, hardness=1.0)
    document.mask[:] = 255
    document.erasing = True
    rect = document.begin_stroke(100, 80)
    document.end_stroke()
    assert document.mask[80, 100] == 0
    x0, y0, x1, y1 = rect
    untouched = np.ones_like(document.mask, bool)
    untouched[y0:y1, x0:x1] = False
    assert (document.mask[untouched] == 255).all()
    assert document.mask[80, 130] == 255
    # A soft eraser leaves grey at its edge, never raises the mask.
    document.hardness = 0.0
    document.begin_stroke(20, 20)
    document.end_stroke()
    assert 0 < document.mask[20, 5] < 255


def test_undo_redo_restore_each_stroke_exactly() -> None:
    document = doc(300, 260, brush_size=50, hardness=0.3)
    states = [document.mask.copy()]
    rng = np.random.default_rng(1)
    for stroke in range(4):
        document.erasing = stroke == 2
        points = rng.uniform(-20, 320, size=(6, 2))
        document.begin_stroke(*points[0])
        for x, y in points[1:]:
            document.stroke_to(x, y)
        document.end_stroke()
        states.append(document.mask.copy())
    for expected in reversed(states[:-1]):
        assert document.undo() is not None
        np.testing.assert_array_equal(document.mask, expected)
    assert not document.can_undo and document.undo() is None
    for expected in states[1:]:
        assert document.redo() is not None
        np.testing.assert_array_equal(document.mask, expected)
    assert not document.can_redo
    # A new stroke after an undo drops the redo.
    document.undo()
    document.begin_stroke(10, 10)
    document.end_stroke()
    assert not document.can_redo


def test_undo_keeps_the_stroke_rect_not_the_whole_mask() -> None:
    document = doc(4096, 4096, brush_size=16)
    document.begin_stroke(100, 100)
    for i in range(1, 40):
        document.stroke_to(100 + i * 4, 100)
    document.end_stroke()
    step = document._undo[-1]
    x0, y0, x1, y1 = step.rect
    assert step.rect == (92, 92, 265, 109)
    assert step.pixels.shape == (y1 - y0, x1 - x0)
    # While the stroke ran it saved only the tiles it touched.
    document.begin_stroke(1000, 1000)
    assert set(document._saved) == {(1000 // TILE, 1000 // TILE)}
    assert document._saved[(15, 15)].shape == (TILE, TILE)
    document.end_stroke()


def test_an_empty_stroke_is_no_undo_step() -> None:
    document = doc()
    document.begin_stroke(-500, -500)
    document.end_stroke()
    assert not document.can_undo


def test_invert_clear_and_load_mask_are_undoable() -> None:
    document = doc(64, 48)
    document.begin_stroke(10, 10)
    document.end_stroke()
    painted = document.mask.copy()
    document.invert()
    np.testing.assert_array_equal(document.mask, 255 - painted)
    document.clear()
    assert not document.has_mask() and document.mask_png() is None
    loaded = np.zeros((48, 64), np.uint8)
    loaded[5:20, 30:60] = 200
    document.load_mask(Image.fromarray(loaded, "L"))
    np.testing.assert_array_equal(document.mask, loaded)
    document.undo()
    assert not document.has_mask()
    document.undo()
    np.testing.assert_array_equal(document.mask, 255 - painted)
    document.undo()
    np.testing.assert_array_equal(document.mask, painted)
    document.redo()
    document.redo()
    document.redo()
    np.testing.assert_array_equal(document.mask, loaded)


def test_load_mask_from_alpha_and_refuses_another_size() -> None:
    document = doc(64, 48)
    rgba = np.full((48, 64, 4), 255, np.uint8)
    rgba[:10, :10, 3] = 0  # transparent = repaint
    document.load_mask(Image.fromarray(rgba, "RGBA"))
    assert document.mask[:10, :10].min() == 255 and document.mask[10:, 10:].max() == 0
    before = document.mask.copy()
    with pytest.raises(ValueError) as error:
        document.load_mask(Image.new("L", (65, 48)))
    assert "65×48" in str(error.value) and "64×48" in str(error.value)
    np.testing.assert_array_equal(document.mask, before)


def test_outpaint_is_validated_naming_side_value_and_allowed() -> None:
    document = doc(100, 80)
    document.set_outpaint(64, 0, 8, 2048)
    assert document.outpaint == (64, 0, 8, 2048)
    assert document.canvas_size == (100 + 72, 80 + 2048)
    for amounts, side, value in (
        ((12, 0, 0, 0), "left", "12"),
        ((0, -8, 0, 0), "top", "-8"),
        ((0, 0, 2056, 0), "right", "2056"),
    ):
        with pytest.raises(ValueError) as error:
            document.set_outpaint(*amounts)
        message = str(error.value)
        assert f"outpaint {side}" in message and value in message
        assert "multiples of 8" in message and "2048" in message
    assert document.outpaint == (64, 0, 8, 2048)


def test_listeners_hear_rects_and_whole_changes() -> None:
    document = doc()
    heard: list[object] = []
    document.add_listener(heard.append)
    rect = document.begin_stroke(50, 50)
    document.end_stroke()
    document.invert()
    document.set_outpaint(8, 0, 0, 0)
    document.undo()
    assert heard == [rect, None, None, None]
    document.undo()
    assert heard[-1] == rect


def test_pngs_round_trip() -> None:
    document = CanvasDocument(Image.new("RGBA", (40, 30), (1, 2, 3, 128)))
    assert document.source.mode == "RGBA"
    document.brush_size = 10
    document.hardness = 0.2
    document.begin_stroke(20, 15)
    document.end_stroke()
    mask_png = document.mask_png()
    assert mask_png is not None
    with Image.open(io.BytesIO(mask_png)) as mask:
        assert mask.mode == "L"
        np.testing.assert_array_equal(np.asarray(mask), document.mask)
    with Image.open(io.BytesIO(document.source_png())) as source:
        assert source.mode == "RGBA" and source.getpixel((0, 0)) == (1, 2, 3, 128)
    assert CanvasDocument(Image.new("L", (4, 4))).source.mode == "RGB"


def test_brush_and_size_bounds() -> None:
    document = doc()
    with pytest.raises(ValueError, match="brush size: 0 px; allowed: 1 to 1024"):
        document.brush_size = 0
    with pytest.raises(ValueError, match="hardness"):
        document.hardness = 1.5
    with pytest.raises(ValueError, match="9000×10"):
        CanvasDocument(Image.new("L", (9000, 10)))
