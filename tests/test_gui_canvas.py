"""The canvas pane as a user drives it: open, paint, keys, undo, masks, outpaint, results, paste."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from PIL import Image
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import (
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QMouseEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QApplication

from ldstudio.core.inpaint import InpaintSettings
from ldstudio.qt.canvas import CanvasPane, CanvasView
from ldstudio.qt.canvas.pane import qimage_to_pil

pytestmark = pytest.mark.gui


@pytest.fixture
def pane(qtbot) -> CanvasPane:
    widget = CanvasPane()
    qtbot.addWidget(widget)
    widget.resize(1000, 680)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def picture(path: Path, size: tuple[int, int] = (320, 240), mode: str = "RGB") -> Path:
    rng = np.random.default_rng(3)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = 255
    Image.fromarray(pixels, mode).save(path)
    return path


def mouse(view: CanvasView, kind: QEvent.Type, point: QPointF, buttons: Qt.MouseButton) -> None:
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    event = QMouseEvent(
        kind, point, view.mapToGlobal(point), button, buttons, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(view, event)


def drag(view: CanvasView, points: list[QPointF]) -> None:
    """Press the left button at the first point, move through the rest, release at the last."""
    held = Qt.MouseButton.LeftButton
    mouse(view, QEvent.Type.MouseButtonPress, points[0], held)
    for point in points[1:]:
        mouse(view, QEvent.Type.MouseMove, point, held)
    mouse(view, QEvent.Type.MouseButtonRelease, points[-1], Qt.MouseButton.NoButton)


def on_screen(view: CanvasView, x: float, y: float) -> QPointF:
    return view.to_screen(QPointF(x, y))


def test_empty_state_says_what_to_do(pane: CanvasPane) -> None:
    assert pane.document() is None
    assert pane.stack.currentIndex() == 0
    assert "No image on the canvas" in pane.empty_label.text()
    assert pane.empty_open_button.isVisible() and pane.empty_paste_button.isVisible()
    assert not pane.load_mask_button.isEnabled() and not pane.undo_button.isEnabled()
    assert pane.sizeHint().width() <= 1280 and pane.sizeHint().height() <= 800


def toolbar_buttons(pane: CanvasPane) -> list:  # type: ignore[type-arg]
    layout = pane.toolbar
    return [layout.itemAt(i).widget() for i in range(layout.count())]


def test_toolbar_wraps_instead_of_widening_the_pane(qtbot, pane: CanvasPane) -> None:
    pane.show()
    wide = pane.wanted_width()
    pane.resize(wide, 700)
    qtbot.waitUntil(lambda: pane.width() == wide)
    rows = {button.y() for button in toolbar_buttons(pane)}
    assert len(rows) == 1  # at its wanted width the toolbar is one row
    narrow = pane.minimumSizeHint().width()
    assert narrow < wide
    pane.resize(narrow, 700)
    qtbot.waitUntil(lambda: pane.width() == narrow)
    qtbot.waitUntil(lambda: len({b.y() for b in toolbar_buttons(pane)}) > 1)
    for button in toolbar_buttons(pane):  # every button still whole and inside the pane
        assert button.x() >= 0 and button.geometry().right() < pane.width()
    # The rows do not overlap what is below them.
    bottom = max(button.geometry().bottom() for button in toolbar_buttons(pane))
    assert pane.caption.y() > bottom


def test_open_paint_undo_redo(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    with qtbot.waitSignal(pane.source_changed):
        assert pane.open_file(picture(tmp_path / "photo.png"))
    document = pane.document()
    assert document is not None and (document.width, document.height) == (320, 240)
    assert pane.stack.currentWidget() is pane.view
    assert "photo.png: 320×240" in pane.caption.text()
    view = pane.view
    pane.size_spin.setValue(20)
    pane.hardness_slider.setValue(100)
    with qtbot.waitSignal(pane.changed):
        drag(view, [on_screen(view, 50, 100), on_screen(view, 150, 100), on_screen(view, 250, 100)])
    mask = document.mask
    assert mask[100, 50:250].min() == 255  # the whole line
    assert mask[100 + 15, :].max() == 0 and mask[:, 10].max() == 0  # nothing past the radius
    painted = mask.copy()
    # The view shows it: the overlay tints the painted pixels, not the others.
    shown = view._buffer
    assert shown is not None
    base = np.asarray(document.source)[..., ::-1]
    assert (shown[100, 100, :3] != base[100, 100]).any()
    np.testing.assert_array_equal(shown[10, 10, :3], base[10, 10])
    assert pane.undo_button.isEnabled() and pane.clear_button.isEnabled()

    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not document.has_mask()
    np.testing.assert_array_equal(shown[100, 100, :3], base[100, 100])
    assert pane.redo_button.isEnabled()
    qtbot.keyClick(
        view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    np.testing.assert_array_equal(document.mask, painted)


def test_eraser_and_brush_keys(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    pane.open_file(picture(tmp_path / "a.png"))
    document = pane.document()
    assert document is not None
    view = pane.view
    view.setFocus()
    pane.size_spin.setValue(40)
    qtbot.keyClick(view, Qt.Key.Key_BracketRight)
    assert pane.size_spin.value() == 46 and document.brush_size == 46
    qtbot.keyClick(view, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(view, Qt.Key.Key_BracketLeft)
    assert pane.size_spin.value() < 46 and document.brush_size == pane.size_spin.value()
    document.mask[:] = 255
    qtbot.keyClick(view, Qt.Key.Key_E)
    assert pane.eraser_button.isChecked() and document.erasing
    drag(view, [on_screen(view, 160, 120)])
    assert document.mask[120, 160] == 0 and document.mask[0, 0] == 255
    qtbot.keyClick(view, Qt.Key.Key_B)
    assert not document.erasing


def test_invert_clear_and_load_mask(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    pane.open_file(picture(tmp_path / "a.png"))
    document = pane.document()
    assert document is not None
    pane.invert_button.click()
    assert document.mask.min() == 255
    pane.clear_button.click()
    assert not document.has_mask()
    pane.undo_button.click()
    assert document.mask.min() == 255
    mask = np.zeros((240, 320), np.uint8)
    mask[:50, :60] = 255
    Image.fromarray(mask, "L").save(tmp_path / "mask.png")
    assert pane.load_mask_file(tmp_path / "mask.png")
    np.testing.assert_array_equal(document.mask, mask)
    # Another size is refused, naming the file and both sizes; the mask stays.
    Image.new("L", (100, 80), 255).save(tmp_path / "small.png")
    assert not pane.load_mask_file(tmp_path / "small.png")
    text = pane.error_text()
    assert "small.png" in text and "100×80" in text and "320×240" in text
    np.testing.assert_array_equal(document.mask, mask)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert not pane.load_mask_file(tmp_path / "broken.png")
    assert "broken.png" in pane.error_text() and "PNG" in pane.error_text()


def test_a_bad_file_keeps_the_canvas(pane: CanvasPane, tmp_path: Path) -> None:
    pane.open_file(picture(tmp_path / "good.png"))
    document = pane.document()
    (tmp_path / "notes.txt").write_text("hello")
    assert not pane.open_file(tmp_path / "notes.txt")
    assert "notes.txt" in pane.error_text() and "allowed" in pane.error_text()
    assert pane.document() is document and "good.png" in pane.caption.text()
    assert not pane.open_file(tmp_path / "missing.png")
    assert "missing.png: no such file" in pane.error_text()
    pane.error_close.click()
    assert pane.error_text() == ""


def test_outpaint_spins_and_edge_drag_stay_in_step(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    pane.open_file(picture(tmp_path / "a.png"))
    document = pane.document()
    assert document is not None
    with qtbot.waitSignal(pane.changed):
        pane.outpaint_spins["left"].setValue(64)
    assert document.outpaint == (64, 0, 0, 0)
    assert "→ 384×240 with outpaint" in pane.caption.text()
    # A typed value off the multiple waits, and snaps when the field is left.
    spin = pane.outpaint_spins["top"]
    spin.setValue(13)
    assert document.outpaint == (64, 0, 0, 0)
    spin.editingFinished.emit()
    assert spin.value() == 16 and document.outpaint == (64, 16, 0, 0)
    # Dragging the right edge outwards by 40 canvas px outpaints 40 on the right.
    view = pane.view
    area = view.canvas_rect()
    start = view.to_screen(QPointF(area.right() + 2 / view.scale, area.center().y()))
    assert view.edge_at(start) == "right"
    end = start + QPointF(40 * view.scale, 0)
    drag(view, [start, (start + end) / 2, end])
    assert document.outpaint == (64, 16, 40, 0)
    assert pane.outpaint_spins["right"].value() == 40
    assert pane.settings().outpaint == (64, 16, 40, 0)
    assert not document.has_mask()  # an edge drag paints nothing
    # Inside the source the mouse paints, it never grabs an edge.
    assert view.edge_at(on_screen(view, 318, 120)) is None


def test_settings_round_trip(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    assert pane.settings() == InpaintSettings()
    assert pane.settings().strength is None and not pane.strength_slider.isEnabled()
    chosen = InpaintSettings(
        strength=0.35,
        mask_blur=9,
        inpaint_area="masked",
        mask_padding=48,
        masked_content="latent_noise",
        invert_mask=True,
        outpaint=(8, 0, 0, 128),
        soft=False,
    )
    with qtbot.waitSignal(pane.changed):
        pane.set_settings(chosen)
    assert pane.settings() == chosen
    assert pane.strength_label.text() == "0.35" and pane.mode_combo.currentText() == (
        "Inpaint not masked"
    )
    pane.open_file(picture(tmp_path / "a.png"))
    document = pane.document()
    assert document is not None and document.outpaint == (8, 0, 0, 128)  # settings stay
    assert pane.settings() == chosen
    pane.strength_auto.setChecked(True)
    assert pane.settings().strength is None
    with pytest.raises(ValueError, match="mask_blur"):
        pane.set_settings(InpaintSettings(mask_blur=99))
    assert pane.settings().mask_blur == 9


def test_result_compare_and_use_as_new_source(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    pane.open_file(picture(tmp_path / "a.png"))
    pane.set_settings(InpaintSettings(outpaint=(16, 0, 0, 0)))
    document = pane.document()
    assert document is not None
    document.invert()
    result = Image.new("RGB", (336, 240), (0, 200, 0))
    pane.show_result(result)
    assert pane.result() is result
    view = pane.view
    assert view.compare and pane.compare_check.isChecked() and pane.use_result_button.isEnabled()
    # In compare, a drag moves the split instead of painting.
    before = document.mask.copy()
    drag(view, [on_screen(view, 100, 100), on_screen(view, -16 + 336 * 0.25, 100)])
    assert abs(view.split - 0.25) < 0.02
    np.testing.assert_array_equal(document.mask, before)
    left_half = (
        view.grab().toImage().pixelColor(view.to_screen(QPointF(-16 + 336 * 0.1, 120)).toPoint())
    )
    right_half = (
        view.grab().toImage().pixelColor(view.to_screen(QPointF(-16 + 336 * 0.8, 120)).toPoint())
    )
    assert right_half.green() == 200 and right_half.red() == 0
    assert (left_half.red(), left_half.green()) != (0, 200)
    pane.compare_check.setChecked(False)
    assert not view.compare
    with qtbot.waitSignal(pane.source_changed):
        pane.use_result_as_source()
    new = pane.document()
    assert new is not None and new is not document
    assert new.source.size == (336, 240) and not new.has_mask()
    assert new.outpaint == (0, 0, 0, 0) and pane.settings().outpaint == (0, 0, 0, 0)
    assert pane.result() is None and not pane.use_result_button.isEnabled()


def test_paste_from_clipboard(qtbot, pane: CanvasPane) -> None:
    image = QImage(40, 30, QImage.Format.Format_RGB32)
    image.fill(0xFF336699)
    QGuiApplication.clipboard().setImage(image)
    assert pane.paste()
    document = pane.document()
    assert document is not None and document.source.size == (40, 30)
    assert document.source.getpixel((5, 5)) == (0x33, 0x66, 0x99)
    assert pane.label() == "clipboard"
    QGuiApplication.clipboard().setText("just words")
    assert not pane.paste()
    assert "clipboard holds no image" in pane.error_text()
    assert pane.document() is document


def test_drop_a_file(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    path = picture(tmp_path / "dropped.png", (64, 48), "RGBA")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    # Qt delivers a drop to the widget that accepted the drag's enter event.
    enter = QDragEnterEvent(
        QPoint(100, 100),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(pane, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(100, 100),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(pane.source_changed):
        QApplication.sendEvent(pane, event)
    document = pane.document()
    assert document is not None and document.source.size == (64, 48)
    assert pane.label() == "dropped.png"


def test_qimage_to_pil_keeps_alpha_only_when_used() -> None:
    image = QImage(4, 4, QImage.Format.Format_ARGB32)
    image.fill(0x80FF0000)
    assert qimage_to_pil(image).mode == "RGBA"
    image.fill(0xFFFF0000)
    converted = qimage_to_pil(image)
    assert converted.mode == "RGB" and converted.getpixel((1, 1)) == (255, 0, 0)


def test_zoom_around_the_cursor_and_pan(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    pane.open_file(picture(tmp_path / "a.png"))
    view = pane.view
    anchor = on_screen(view, 100, 80)
    view.zoom_at(2.0, anchor)
    here = view.to_canvas(anchor)
    assert abs(here.x() - 100) < 1e-6 and abs(here.y() - 80) < 1e-6
    start = QPoint(200, 200)
    qtbot.mousePress(view, Qt.MouseButton.MiddleButton, pos=start)
    mouse(view, QEvent.Type.MouseMove, QPointF(230, 210), Qt.MouseButton.MiddleButton)
    qtbot.mouseRelease(view, Qt.MouseButton.MiddleButton, pos=QPoint(230, 210))
    moved = view.to_canvas(anchor + QPointF(30, 10))
    assert abs(moved.x() - 100) < 1e-6 and abs(moved.y() - 80) < 1e-6
    document = pane.document()
    assert document is not None and not document.has_mask()  # panning paints nothing


def test_brush_benchmark_quick_run(tmp_path: Path) -> None:
    env = {**os.environ, "LDSTUDIO_BENCH_DIR": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_brush.py"),
            "--quick",
            "--size",
            "1024",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "brush.json").read_text())
    assert results["canvas"] == [1024, 1024] and results["goal_ms"] == 16
    assert {(r["zoom"], r["brush_px"]) for r in results["runs"]} == {
        (zoom, brush) for zoom in ("fit", "100 %") for brush in (16, 64, 256)
    }
    for row in results["runs"]:
        assert row["segments"] == 40 and row["paints"] >= row["segments"]
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]


def test_wheel_zooms_and_space_drag_pans(qtbot, pane: CanvasPane, tmp_path: Path) -> None:
    pane.open_file(picture(tmp_path / "a.png"))
    view = pane.view
    anchor = on_screen(view, 60, 50)
    scale = view.scale
    wheel = QWheelEvent(
        anchor,
        view.mapToGlobal(anchor),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view, wheel)
    assert view.scale == pytest.approx(scale * 1.25)
    here = view.to_canvas(anchor)
    assert (here.x(), here.y()) == (pytest.approx(60), pytest.approx(50))
    # Space + left drag pans and paints nothing.
    view.setFocus()
    qtbot.keyPress(view, Qt.Key.Key_Space)
    drag(view, [QPointF(300, 300), QPointF(320, 290)])
    qtbot.keyRelease(view, Qt.Key.Key_Space)
    moved = view.to_canvas(anchor + QPointF(20, -10))
    assert (moved.x(), moved.y()) == (pytest.approx(60), pytest.approx(50))
    document = pane.document()
    assert document is not None and not document.has_mask()
    # Without Space the same drag paints.
    drag(view, [on_screen(view, 100, 100), on_screen(view, 120, 100)])
    assert document.has_mask()
    pane.fit_button.click()
    assert view.scale == pytest.approx(scale)


def test_strength_slider_and_auto(pane: CanvasPane) -> None:
    pane.strength_auto.setChecked(False)
    assert pane.strength_slider.isEnabled()
    pane.strength_slider.setValue(42)
    assert pane.settings().strength == pytest.approx(0.42)
    assert pane.strength_label.text() == "0.42"
    pane.area_combo.setCurrentIndex(pane.area_combo.findText("Only masked"))
    pane.content_combo.setCurrentIndex(pane.content_combo.findText("fill"))
    settings = pane.settings()
    assert (settings.inpaint_area, settings.masked_content) == ("masked", "fill")
    pane.strength_auto.setChecked(True)
    assert pane.settings().strength is None and pane.strength_label.text() == "auto"
