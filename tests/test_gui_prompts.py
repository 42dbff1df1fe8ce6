"""The parameter pane's "More seed & prompt options" (clip skip, emphasis, variation seed, seed
resize from) on the fake backend: they reach the request, wrong values are refused with the
CLI's words, Reuse all and a restart bring them back; and Vary subtle / Vary strong rerun an
image's own txt2img job with a new variation seed (not offered for a canvas image)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop, spy_submissions
from PIL import Image

from ldstudio.core.events import JobFinished
from ldstudio.core.library import LibraryEntry
from ldstudio.core.library.entries import request_json
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.core.settings import load_settings, settings_path
from ldstudio.core.upscale import UpscaleSettings
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.main_window import MainWindow
from ldstudio.qt.seed_options import FIXED, RANDOM, SeedOptionsBox
from ldstudio.qt.vary import varied_request, vary_problem

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def spied(make_window, backend: FakeBackend) -> tuple[MainWindow, list[Request]]:  # type: ignore[no-untyped-def]
    window = make_window(backend)
    submitted = spy_submissions(window)
    window.params_pane.steps_spin.setValue(3)
    window.params_pane.set_seed(7)
    return window, submitted


def choose(box: SeedOptionsBox) -> None:
    """Every option away from its default."""
    box.set_expanded(True)
    box.clip_skip_spin.setValue(2)
    box.emphasis_combo.setCurrentIndex(box.emphasis_combo.findData("comfy"))
    box.variation_check.setChecked(True)
    box.variation_mode.setCurrentIndex(FIXED)
    box.variation_seed_spin.setValue(4_000_000_000)  # above int32, as the main seed
    box.strength_spin.setValue(0.3)
    box.resize_check.setChecked(True)
    box.resize_width_spin.setValue(256)
    box.resize_height_spin.setValue(192)


CHOSEN = {
    "clip_skip": 2,
    "emphasis": "comfy",
    "variation_seed": 4_000_000_000,
    "variation_strength": 0.3,
    "seed_resize_from": (256, 192),
}


def options(params: GenerationParams) -> dict[str, object]:
    return {name: getattr(params, name) for name in CHOSEN}


def entry_for(window: MainWindow, path: Path) -> LibraryEntry:
    entry = window.store.entry_for_path(path)
    assert entry is not None
    return entry


def test_the_group_is_collapsed_and_its_options_reach_the_request(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = spied(make_window, fake_backend)
    box = window.params_pane.options_box
    assert not box.expanded() and box.body.isHidden()  # the pane keeps its height
    assert box.summary_label.text() == ""
    made = generate(qtbot, window, "a red circle")
    assert isinstance(made, JobFinished)
    defaults = GenerationParams(prompt="")
    assert options(submitted[-1].params) == options(defaults)
    choose(box)
    assert box.body.isVisible()
    box.set_expanded(False)
    # Collapsed, the header still says what is not the default.
    assert box.summary_label.text() == (
        "clip skip 2, ComfyUI emphasis, variation 0.3, seed from 256×192"
    )
    made = generate(qtbot, window, "a red circle")
    assert isinstance(made, JobFinished)
    assert options(submitted[-1].params) == CHOSEN
    assert options(made.records[0].params) == CHOSEN  # saved with the image


def test_a_random_variation_seed_is_drawn_for_each_job(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = spied(make_window, fake_backend)
    box = window.params_pane.options_box
    box.variation_check.setChecked(True)
    assert box.variation_mode.currentIndex() == RANDOM
    assert not box.variation_seed_spin.isEnabled()
    seeds = set()
    for _ in range(2):
        assert isinstance(generate(qtbot, window, "a red circle"), JobFinished)
        params = submitted[-1].params
        assert params.variation_strength == 0.1 and params.variation_seed is not None
        seeds.add(params.variation_seed)
    assert len(seeds) == 2


def test_a_clip_skip_out_of_range_is_refused_not_clamped(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = spied(make_window, fake_backend)
    pane = window.params_pane
    box = pane.options_box
    box.set_expanded(True)
    box.clip_skip_spin.setValue(13)
    assert box.clip_skip_spin.value() == 13  # kept as typed
    message = "clip_skip: 13 is out of range; allowed: 1 to 12"
    assert message in pane.problem_label.text() and pane.problem_label.isVisible()
    box.resize_check.setChecked(True)
    box.resize_width_spin.setValue(100)
    assert "seed_resize_from width: 100 is not a multiple of 8" in pane.problems()
    window.prompt_pane.prompt_edit.setPlainText("a red circle")
    window.prompt_pane.generate_button.click()
    assert submitted == []
    assert "clip_skip: 13" in window.preview_pane.error_label.text()
    box.clip_skip_spin.setValue(12)
    box.resize_check.setChecked(False)
    assert pane.problems() == [] and pane.problem_label.isHidden()


def test_reuse_all_and_a_restart_bring_the_options_back(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    window, _submitted = spied(make_window, fake_backend)
    box = window.params_pane.options_box
    choose(box)
    made = generate(qtbot, window, "a blue square")
    assert isinstance(made, JobFinished)
    box.set_params(GenerationParams(prompt=""))  # all back to the defaults
    assert options(window.current_params()) == options(GenerationParams(prompt=""))
    window.library.actions.reuse_all(entry_for(window, made.records[0].path))
    qtbot.waitUntil(lambda: box.clip_skip_spin.value() == 2)
    assert options(window.current_params()) == CHOSEN
    assert box.variation_mode.currentIndex() == FIXED
    window.close()
    saved = json.loads(settings_path().read_text(encoding="utf-8"))
    assert saved["last_params"]["clip_skip"] == 2
    again = make_window(FakeBackend(), settings=load_settings())
    assert options(again.current_params()) == CHOSEN


def test_vary_subtle_and_strong_rerun_the_images_own_job(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = spied(make_window, fake_backend)
    window.params_pane.guidance_spin.setValue(5.5)
    made = generate(qtbot, window, "a green square")
    assert isinstance(made, JobFinished)
    entry = entry_for(window, made.records[0].path)
    # The form changed since: the variation is the image's job, not the form's.
    window.params_pane.steps_spin.setValue(9)
    details = window.details_view
    details.show_entry(entry)
    for name, strength in (("vary_subtle", 0.1), ("vary_strong", 0.5)):
        button = details.buttons[name]
        assert button.isEnabled()
        with qtbot.waitSignal(window.controller.job_ended, timeout=10_000) as ended:
            button.click()
        assert isinstance(ended.args[0], JobFinished)
        request = submitted[-1]
        own = made.records[0].params
        assert request.kind == "txt2img"
        assert request.params.variation_strength == strength
        assert request.params.variation_seed is not None
        assert request.params.replace(variation_seed=None, variation_strength=0.0) == own
        assert (request.params.steps, request.params.seed) == (3, own.seed)
    # The gallery's menu offers the same.
    menu_actions = window.library_pane.actions_by_name
    window.library_pane.context_menu_for(entry)
    assert menu_actions["vary_subtle"].isEnabled() and menu_actions["vary_strong"].isEnabled()
    count = len(submitted)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10_000):
        window.library.actions.vary(entry, 0.5)
    assert len(submitted) == count + 1


def test_vary_works_on_canvas_images_and_refuses_an_upscale_without_noise(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = spied(make_window, fake_backend)
    fake_backend.blobs = window.store.blobs
    window.show_canvas()
    assert window.canvas.set_source(Image.new("RGB", (64, 64), "purple"), "photo")
    made = generate(qtbot, window, "on the canvas")
    assert isinstance(made, JobFinished)
    window.show_preview()
    entry = entry_for(window, made.records[0].path)
    assert entry.request is not None and entry.request.face == "img2img"
    assert vary_problem(entry) == ""
    varied = varied_request(entry, 0.1, variation_seed=77)
    assert varied.inputs == entry.request.inputs and varied.inpaint == entry.request.inpaint
    assert (varied.params.variation_seed, varied.params.variation_strength) == (77, 0.1)
    count = len(submitted)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10_000):
        window.library.actions.vary(entry, 0.1)
    assert len(submitted) == count + 1

    # An upscale without a refine draws no noise: refused with the reason, nothing queued.
    upscale = Request.upscaling(
        entry.request.params, UpscaleSettings(2, "lanczos", 0.0), entry.request.inputs[0][1]
    )
    plain = dataclasses.replace(entry, request_json=request_json(upscale))
    problem = vary_problem(plain)
    assert "without a refine" in problem
    details = window.details_view
    details.show_entry(plain)
    for name in ("vary_subtle", "vary_strong"):
        assert not details.buttons[name].isEnabled()
        assert details.buttons[name].toolTip() == problem
    with pytest.raises(ValueError, match="without a refine"):
        varied_request(plain, 0.1)
    count = len(submitted)
    window.library.actions.vary(plain, 0.1)
    assert len(submitted) == count


def test_syntax_mistakes_are_underlined_and_named(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    from PySide6.QtGui import QTextCharFormat

    window = make_window(fake_backend)
    pane = window.prompt_pane
    pane.prompt_edit.setPlainText("🐱 a (red:1.2 circle")
    assert pane.syntax_problems() == "⚠ '(' is never closed"
    assert pane.notes["prompt"].isVisible()
    highlighter = pane.highlighters["prompt"]
    # Underlined at the bracket, in Qt's UTF-16 positions (the emoji counts two).
    problem = highlighter.problem_at(5)
    assert problem is not None and problem.message == "'(' is never closed"
    block = pane.prompt_edit.document().firstBlock()
    formats = block.layout().formats()
    assert [(f.start, f.length) for f in formats] == [(5, 1)]
    assert formats[0].format.underlineStyle() == QTextCharFormat.UnderlineStyle.WaveUnderline
    pane.negative_edit.setPlainText("blurry)")
    assert pane.syntax_problems("negative") == "⚠ ')' closes nothing"
    pane.prompt_edit.setPlainText("a (red:1.2) circle")
    assert pane.syntax_problems() == "" and pane.notes["prompt"].isHidden()
    assert pane.prompt_edit.document().firstBlock().layout().formats() == []


def test_the_prompt_pane_names_a_non_original_emphasis(
    make_window, fake_backend: FakeBackend
) -> None:
    window = make_window(fake_backend)
    label = window.prompt_pane.emphasis_label
    assert label.isHidden()
    box = window.params_pane.options_box
    box.emphasis_combo.setCurrentIndex(box.emphasis_combo.findData("comfy"))
    assert label.isVisible() and label.text() == "ComfyUI weights"
    box.set_params(GenerationParams(prompt="", emphasis="no-norm"))
    assert label.text() == "No norm weights"
    box.emphasis_combo.setCurrentIndex(0)
    assert label.isHidden()
