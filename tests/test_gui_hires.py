"""The window's hires fix on the fake backend: the parameter pane's group queues a txt2img
request with its second pass, says the size it makes and where latent upscaling blurs,
refuses a target too large, stays off for canvas jobs, and Reuse all brings it back."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop, set_prompt, spy_submissions
from PIL import Image

from ldstudio.core.events import JobFinished
from ldstudio.core.hires import HiresSettings
from ldstudio.core.request import Request
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.main_window import MainWindow

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def spied(make_window, backend: FakeBackend) -> tuple[MainWindow, list[Request]]:  # type: ignore[no-untyped-def]
    window = make_window(backend)
    submitted = spy_submissions(window)
    window.params_pane.steps_spin.setValue(3)
    window.params_pane.set_seed(7)
    return window, submitted


def test_the_hires_group_queues_a_second_pass_and_says_its_size(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = spied(make_window, fake_backend)
    box = window.params_pane.hires_box
    assert not box.isChecked()
    outcome = generate(qtbot, window, "a red circle")
    assert isinstance(outcome, JobFinished) and submitted[-1].hires is None
    box.setChecked(True)
    box.scale_spin.setValue(1.5)
    # What the pane knows of the model's size (the fake backend reports none to it).
    shown = window.params_pane.native_size
    side = round(shown * 1.5 / 8) * 8
    assert box.target_label.text() == f"{shown}×{shown} → {side}×{side}"
    assert window.latent_label.text().endswith(f" · hires fix to {side}×{side}")
    window.show_canvas()  # no hires fix there: the status bar does not claim one
    assert "hires" not in window.latent_label.text()
    window.show_preview()
    outcome = generate(qtbot, window, "a red circle")
    assert isinstance(outcome, JobFinished)
    assert submitted[-1].hires == HiresSettings(scale=1.5)
    (record,) = outcome.records
    native = fake_backend.native_size
    made_side = round(native * 1.5 / 8) * 8
    with Image.open(record.path) as made:
        assert made.size == (made_side, made_side)


def test_latent_below_half_is_warned_and_a_huge_target_refused(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = spied(make_window, fake_backend)
    box = window.params_pane.hires_box
    box.setChecked(True)
    box.upscaler_combo.setCurrentIndex(box.upscaler_combo.findData("latent"))
    box.strength_spin.setValue(0.4)
    assert box.hint_label.isVisibleTo(window) and "blurry" in box.hint_label.text()
    box.strength_spin.setValue(0.6)
    assert not box.hint_label.isVisibleTo(window)
    params = window.params_pane
    params.aspect_combo.setCurrentIndex(params.aspect_combo.findText("Custom"))
    params.width_spin.setValue(2048)
    params.height_spin.setValue(64)
    box.scale_spin.setValue(4.0)
    assert box.target_label.text().startswith("hires scale 4: 2048x64 becomes 8192x256")
    set_prompt(window, "a red circle")
    window.prompt_pane.generate_button.click()
    qtbot.waitUntil(lambda: window.preview_pane.error_bar.isVisible())
    assert window.preview_pane.error_label.text() == (
        "Cannot generate: hires scale 4: 2048x64 becomes 8192x256; allowed: 64 to 4096 "
        "pixels a side"
    )
    assert submitted == []


def test_the_canvas_tab_turns_the_hires_fix_off_and_says_why(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = spied(make_window, fake_backend)
    box = window.params_pane.hires_box
    box.setChecked(True)
    window.show_canvas()
    assert not box.isEnabled() and "second pass of a txt2img job" in box.toolTip()
    assert box.settings() is None
    assert window.canvas.set_source(Image.new("RGB", (64, 64), "purple"), "photo")
    set_prompt(window, "a red circle")
    with qtbot.waitSignal(window.controller.job_ended, timeout=20_000):
        window.prompt_pane.generate_button.click()
    assert submitted[-1].kind == "inpaint" and submitted[-1].hires is None
    window.show_preview()
    assert box.isEnabled() and box.isChecked()  # as the user left it


def test_reuse_all_brings_the_hires_fix_back(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path: Path
) -> None:
    window, _submitted = spied(make_window, fake_backend)
    box = window.params_pane.hires_box
    box.setChecked(True)
    box.scale_spin.setValue(2.0)
    box.strength_spin.setValue(0.35)
    box.steps_spin.setValue(5)
    made = generate(qtbot, window, "a blue square")
    assert isinstance(made, JobFinished)
    box.setChecked(False)
    plain = generate(qtbot, window, "a green square")
    assert isinstance(plain, JobFinished)
    qtbot.waitUntil(lambda: window.library_pane.current_entry() is not None)

    def reuse(path: Path) -> None:
        entry = window.store.entry_for_path(path)
        assert entry is not None
        window.library.actions.reuse_all(entry)

    reuse(made.records[0].path)
    qtbot.waitUntil(lambda: box.isChecked())
    assert box.settings() == HiresSettings(scale=2.0, strength=0.35, steps=5)
    reuse(plain.records[0].path)
    qtbot.waitUntil(lambda: not box.isChecked())
