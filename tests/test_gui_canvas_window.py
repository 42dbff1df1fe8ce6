"""The canvas in the main window on the fake backend: send a library image to it, paint a mask,
Generate queues an inpaint request on it, the result lands in the compare and the library, the
details say what an image was made from, and Reuse all rebuilds the same job."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from gui_support import (
    JOB_TIMEOUT_MS,
    fake_backend,
    generate,
    make_window,
    qt_loop,
    set_prompt,
    spy_submissions,
)
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from ldstudio.core.events import JobFinished
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.request import KIND_INPAINT, ROLE_IMAGE, ROLE_MASK, Request
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.main_window import MainWindow
from ldstudio.qt.window.canvas_controller import EMPTY_CANVAS

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def canvas_window(make_window, backend: FakeBackend) -> tuple[MainWindow, list[Request]]:
    """A window whose backend reads the library's blobs, and the requests it submits."""
    window = make_window(backend)
    backend.blobs = window.store.blobs
    submitted = spy_submissions(window)
    window.params_pane.steps_spin.setValue(3)
    window.params_pane.set_seed(7)
    return window, submitted


def newest_entry(qtbot, window: MainWindow):  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: window.library_pane.current_entry() is not None)
    return window.library_pane.current_entry()


def send_newest_to_canvas(qtbot, window: MainWindow) -> None:
    entry = newest_entry(qtbot, window)
    window.library_pane.context_menu_for(entry)  # enables the actions for it
    window.library_pane.actions_by_name["send_to_canvas"].trigger()
    qtbot.waitUntil(lambda: window.canvas_pane.document() is not None)


def paint(qtbot, window: MainWindow, start: tuple[float, float], end: tuple[float, float]) -> None:
    """One brush stroke through the canvas view, in image pixels."""
    view = window.canvas_pane.view
    qtbot.waitUntil(lambda: view.isVisible() and view.width() > 100)
    a = view.to_screen(QPointF(*start)).toPoint()
    b = view.to_screen(QPointF(*end)).toPoint()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for t in np.linspace(0, 1, 6)[1:]:
        point = QPoint(round(a.x() + (b.x() - a.x()) * t), round(a.y() + (b.y() - a.y()) * t))
        QTest.mouseMove(view, point)
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


def click_generate(qtbot, window: MainWindow) -> object:
    with qtbot.waitSignal(window.controller.job_ended, timeout=JOB_TIMEOUT_MS) as ended:
        window.prompt_pane.generate_button.click()
    return ended.args[0]


def blob_image(window: MainWindow, digest: str) -> Image.Image:
    return Image.open(io.BytesIO(window.store.blobs.get(digest)))


def test_generate_on_an_empty_canvas_says_why_and_queues_nothing(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = canvas_window(make_window, fake_backend)
    set_prompt(window, "a red circle")
    window.show_canvas()
    assert window.prompt_pane.generate_button.text() == "&Generate (canvas)"
    window.prompt_pane.generate_button.click()
    qtbot.wait(50)
    assert window.preview_pane.error_label.text() == EMPTY_CANVAS
    # Seen from the canvas tab: the message bar lies above both tabs.
    assert window.preview_pane.error_bar.isVisible()
    assert submitted == [] and window.controller.jobs() == []
    window.show_preview()  # the preview tab generates from the prompt alone, as before
    assert window.prompt_pane.generate_button.text() == "&Generate"
    assert isinstance(click_generate(qtbot, window), JobFinished)
    assert [r.kind for r in submitted] == ["txt2img"]


def test_a_canvas_too_large_to_run_whole_is_refused_before_anything_is_stored(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = canvas_window(make_window, fake_backend)
    set_prompt(window, "a red circle")
    assert window.canvas.set_source(Image.new("RGB", (4200, 64), "purple"), "wide")
    window.canvas_pane.outpaint_spins["right"].setValue(16)
    blobs_before = sorted(window.store.blobs.root.rglob("*"))
    window.prompt_pane.generate_button.click()
    qtbot.waitUntil(lambda: window.preview_pane.error_bar.isVisible())
    message = window.preview_pane.error_label.text()
    assert message.startswith("Cannot generate on the canvas: the image is 4200x64 (4216x64 with")
    assert "allowed: 64 to 4096 pixels a side" in message and "Only masked" in message
    assert submitted == [] and window.controller.jobs() == []
    assert sorted(window.store.blobs.root.rglob("*")) == blobs_before  # nothing stored
    # Only masked with a mask runs at the model's size: accepted.
    window.canvas_pane.outpaint_spins["right"].setValue(0)
    window.canvas_pane.area_combo.setCurrentIndex(window.canvas_pane.area_combo.findData("masked"))
    paint(qtbot, window, (100, 10), (300, 50))
    assert isinstance(click_generate(qtbot, window), JobFinished)
    assert [r.kind for r in submitted] == ["inpaint"]


def test_send_to_canvas_paint_and_generate_an_inpaint_job(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = canvas_window(make_window, fake_backend)
    first = generate(qtbot, window, "a red circle on a blue background")
    assert isinstance(first, JobFinished)
    source_path = first.records[0].path
    send_newest_to_canvas(qtbot, window)
    assert window.center_tabs.currentIndex() == window.canvas_tab
    document = window.canvas_pane.document()
    assert document is not None
    with Image.open(source_path) as saved:
        assert np.array_equal(np.asarray(document.source), np.asarray(saved.convert("RGB")))
    assert window.prompt_pane.generate_button.text() == "&Generate (img2img)"

    paint(qtbot, window, (16, 16), (40, 40))
    assert document.has_mask()
    assert window.prompt_pane.generate_button.text() == "&Generate (inpaint)"
    assert "64×64" in window.prompt_pane.generate_button.toolTip()
    window.canvas_pane.set_settings(InpaintSettings(strength=0.6, mask_blur=2, soft=False))

    outcome = click_generate(qtbot, window)
    assert isinstance(outcome, JobFinished)
    request = submitted[-1]
    assert request.kind == KIND_INPAINT and request.face == "inpaint"
    assert request.params.prompt == "a red circle on a blue background"
    assert request.params.width is None and request.params.height is None  # the canvas's size
    assert request.inpaint == window.canvas_pane.settings()
    assert request.inpaint is not None and request.inpaint.strength == 0.6
    image_sha, mask_sha = request.input(ROLE_IMAGE), request.input(ROLE_MASK)
    assert image_sha == hashlib.sha256(document.source_png()).hexdigest()
    assert np.array_equal(np.asarray(blob_image(window, image_sha)), np.asarray(document.source))
    mask = blob_image(window, mask_sha)
    assert mask.mode == "L" and np.array_equal(np.asarray(mask), document.mask)

    # The image is in the library, and in the canvas's before/after compare.
    (record,) = outcome.records
    assert window.store.entry_for_path(record.path) is not None
    qtbot.waitUntil(lambda: window.canvas_pane.result() is not None)
    with Image.open(record.path) as made:
        assert np.array_equal(np.asarray(window.canvas_pane.result()), np.asarray(made))
    assert window.canvas_pane.compare_check.isChecked()


def test_details_say_what_an_image_was_made_from_and_reuse_all_rebuilds_the_job(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = canvas_window(make_window, fake_backend)
    generate(qtbot, window, "a green square")
    send_newest_to_canvas(qtbot, window)
    paint(qtbot, window, (8, 30), (56, 30))
    window.canvas_pane.set_settings(InpaintSettings(strength=0.5, inpaint_area="masked"))
    made = click_generate(qtbot, window)
    assert isinstance(made, JobFinished)
    original = submitted[-1]

    # The new image selected, its details open: "Made from" with the source and the mask.
    qtbot.waitUntil(
        lambda: (
            (e := window.library_pane.current_entry()) is not None
            and e.path == made.records[0].path
        )
    )
    window.show_details()
    box = window.details_view.made_from
    qtbot.waitUntil(lambda: box.isVisible())
    text = box.text()
    assert "Made as: inpaint" in text and "Strength: 0.5" in text
    assert "Inpaint area: Only masked" in text
    assert box.source_label.pixmap() is not None and not box.source_label.pixmap().isNull()
    assert not box.mask_label.pixmap().isNull()

    # Another image on the canvas, other settings: Reuse all puts the job back as it was.
    window.canvas_pane.set_source(Image.new("RGB", (64, 64), "white"), "blank")
    window.canvas_pane.set_settings(InpaintSettings())
    set_prompt(window, "something else")
    window.show_preview()
    window.details_view.buttons["reuse_params"].click()
    qtbot.waitUntil(lambda: window.canvas_pane.label().startswith("source of"))
    assert window.center_tabs.currentIndex() == window.canvas_tab
    assert window.prompt_pane.prompt() == "a green square"
    again = click_generate(qtbot, window)
    assert isinstance(again, JobFinished)
    assert submitted[-1] == original  # same prompt, seed, settings, source and mask blobs


def test_made_from_names_a_missing_source(make_window, fake_backend: FakeBackend, qtbot) -> None:
    window, submitted = canvas_window(make_window, fake_backend)
    generate(qtbot, window, "a blue star")
    send_newest_to_canvas(qtbot, window)
    made = click_generate(qtbot, window)  # img2img: no mask
    assert isinstance(made, JobFinished) and submitted[-1].face == "img2img"
    window.store.blobs.path(submitted[-1].input(ROLE_IMAGE)).unlink()
    qtbot.waitUntil(
        lambda: (
            (e := window.library_pane.current_entry()) is not None
            and e.path == made.records[0].path
        )
    )
    box = window.details_view.made_from
    window.details_view.show_entry(window.library_pane.current_entry())
    qtbot.waitUntil(lambda: "source missing" in box.text())
    assert "not in this library's blob store" in box.text()
    assert "no mask" in box.text()


def test_use_as_new_source_feeds_the_next_job(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = canvas_window(make_window, fake_backend)
    generate(qtbot, window, "a yellow circle")
    send_newest_to_canvas(qtbot, window)
    paint(qtbot, window, (20, 20), (30, 30))
    made = click_generate(qtbot, window)
    assert isinstance(made, JobFinished)
    qtbot.waitUntil(lambda: window.canvas_pane.result() is not None)
    window.canvas_pane.use_result_button.click()
    document = window.canvas_pane.document()
    assert document is not None and not document.has_mask()
    click_generate(qtbot, window)
    source = blob_image(window, submitted[-1].input(ROLE_IMAGE))
    with Image.open(made.records[0].path) as result:
        assert np.array_equal(np.asarray(source), np.asarray(result))
    assert submitted[-1].face == "img2img"


def test_outpaint_label_and_canvas_shortcuts_in_the_f1_list(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, _submitted = canvas_window(make_window, fake_backend)
    window.canvas_pane.set_source(Image.new("RGB", (64, 48), "grey"), "grey")
    assert window.center_tabs.currentIndex() == window.canvas_tab  # a new source is shown
    window.canvas_pane.set_settings(InpaintSettings(outpaint=(0, 0, 64, 0)))
    assert window.prompt_pane.generate_button.text() == "&Generate (outpaint)"
    assert "128×48" in window.prompt_pane.generate_button.toolTip()
    rows = window.shortcut_rows()
    on_canvas = {keys for keys, _does, where in rows if where == "On the canvas"}
    assert {"[", "]"} <= on_canvas
    assert all(does for _keys, does, where in rows if where == "On the canvas")
    assert any(keys == "Ctrl+Shift+N" and where == "In the library" for keys, _d, where in rows)


def test_the_canvas_gets_room_at_1280_and_gives_it_back(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path: Path
) -> None:
    window, _submitted = canvas_window(make_window, fake_backend)
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() == 1280)
    window.fit_columns(use_defaults=True)
    before = window.main_splitter.sizes()
    window.show_canvas()
    scroll = window.center_tabs.widget(window.canvas_tab)
    qtbot.waitUntil(lambda: scroll.width() >= window.canvas_pane.minimumSizeHint().width())
    assert window.canvas_pane.width() <= scroll.width()  # no sideways scrolling at 1280
    window.show_preview()
    assert window.main_splitter.sizes() == before


def test_the_size_fields_say_when_the_canvas_decides_the_size(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, _submitted = canvas_window(make_window, fake_backend)
    params = window.params_pane
    allowed = params.size_range_label.text()
    params.aspect_combo.setCurrentIndex(params.aspect_combo.findText("Custom"))
    assert params.width_spin.isEnabled()
    window.show_canvas()
    assert not params.aspect_combo.isEnabled() and not params.width_spin.isEnabled()
    assert params.size_range_label.text() == "the canvas's size (no image yet)"
    assert window.canvas.set_source(Image.new("RGB", (96, 80), "purple"), "photo")
    assert params.size_range_label.text() == "the canvas's size: 96×80"
    window.canvas_pane.outpaint_spins["right"].setValue(32)
    assert params.size_range_label.text() == "the canvas's size: 128×80"
    area = window.canvas_pane.area_combo
    area.setCurrentIndex(area.findData("masked"))
    assert params.size_range_label.text() == "Only masked: the model's size around the mask"
    window.show_preview()  # the fields are the size again, as the user left them
    assert params.size_range_label.text() == allowed
    assert params.aspect_combo.isEnabled() and params.width_spin.isEnabled()
