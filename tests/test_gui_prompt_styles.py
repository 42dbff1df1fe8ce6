"""Styles in the prompt pane on the fake backend: imported from a styles.csv, picked as chips,
applied and named in the request, restored by Reuse all (a style no longer in styles.csv is
shown as missing, not dropped); and Reuse all → Generate keeps every newer field."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop, spy_submissions
from library_support import png_with_text

from ldstudio.core.events import JobFinished
from ldstudio.core.library import LibraryEntry
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import read_file
from ldstudio.core.request import Request
from ldstudio.core.settings import load_settings
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.main_window import MainWindow
from ldstudio.qt.style_picker import StylePicker, styles_path

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name

STYLES_CSV = (
    "name,prompt,negative_prompt\n"
    'cinematic,"cinematic still of {prompt}, film grain",cartoon\n'
    'sharp,"highly detailed, sharp focus",blurry\n'
)


def write_csv(folder: Path, text: str, name: str = "styles.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def menu_texts(picker: StylePicker) -> list[tuple[str, bool, bool]]:
    picker._fill_menu()
    return [(a.text(), a.isEnabled(), a.isChecked()) for a in picker.menu.actions() if a.text()]


def pick(picker: StylePicker, name: str) -> None:
    picker._fill_menu()
    action = next(a for a in picker.menu.actions() if a.text() == name)
    action.trigger()


def spied(make_window, backend: FakeBackend) -> tuple[MainWindow, list[Request]]:  # type: ignore[no-untyped-def]
    window = make_window(backend)
    submitted = spy_submissions(window)
    window.params_pane.steps_spin.setValue(3)
    window.params_pane.set_seed(7)
    return window, submitted


def entry_for(window: MainWindow, path: Path) -> LibraryEntry:
    entry = window.store.entry_for_path(path)
    assert entry is not None
    return entry


def test_without_styles_the_menu_offers_the_import_and_a_bad_file_is_refused(
    make_window, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    window = make_window(fake_backend)
    picker = window.prompt_pane.style_picker
    assert picker.button.isVisible()
    assert menu_texts(picker) == [
        ("No styles imported", False, False),
        ("Import styles.csv…", True, False),
    ]
    assert "No styles imported yet" in picker.button.toolTip()
    bad = write_csv(tmp_path, "name,prompt\nok,fine\n,nameless\n", "bad.csv")
    assert picker.import_file(bad) == f"{bad}, line 3: a style without a name"
    assert not styles_path().exists() and picker.library == ()
    good = write_csv(tmp_path, STYLES_CSV, "mine.csv")
    assert picker.import_file(good) == ""
    assert styles_path().read_text(encoding="utf-8") == STYLES_CSV
    assert [s.name for s in picker.library] == ["cinematic", "sharp"]
    assert menu_texts(picker) == [
        ("cinematic", True, False),
        ("sharp", True, False),
        ("Import styles.csv…", True, False),
    ]


def test_picked_styles_reach_the_request_and_reuse_all_brings_them_back(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    ldstudio_home.mkdir(parents=True, exist_ok=True)
    write_csv(ldstudio_home, STYLES_CSV)
    window, submitted = spied(make_window, fake_backend)
    pane = window.prompt_pane
    picker = pane.style_picker
    pick(picker, "cinematic")
    pick(picker, "sharp")
    assert picker.chip_states() == {"cinematic": "picked", "sharp": "picked"}
    assert picker.chips["sharp"].text() == "sharp ✕" and picker.button.text() == "Styles (2)"
    assert menu_texts(picker)[:2] == [("cinematic", True, True), ("sharp", True, True)]
    made = generate(qtbot, window, "a red circle")
    assert isinstance(made, JobFinished)
    sent = submitted[-1].params
    assert (
        sent.prompt == "cinematic still of a red circle, film grain, highly detailed, sharp focus"
    )
    assert sent.negative_prompt == "cartoon, blurry"
    assert sent.styles == ("cinematic", "sharp")
    assert made.records[0].params.styles == ("cinematic", "sharp")  # saved with the image
    assert pane.prompt() == "a red circle"  # the box keeps the user's words

    picker.chips["cinematic"].click()  # removed: not applied, not named
    picker.remove("sharp")
    assert picker.chips == {} and window.current_params().styles == ()
    window.library.actions.reuse_all(entry_for(window, made.records[0].path))
    qtbot.waitUntil(lambda: pane.prompt() == "a red circle" and len(picker.chips) == 2)
    assert pane.negative_prompt() == ""
    assert picker.chip_states() == {"cinematic": "picked", "sharp": "picked"}
    again = generate(qtbot, window, pane.prompt())
    assert isinstance(again, JobFinished)
    assert (submitted[-1].params.prompt, submitted[-1].params.styles) == (sent.prompt, sent.styles)


def test_a_style_gone_from_styles_csv_is_shown_missing_and_kept(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path, tmp_path: Path
) -> None:
    ldstudio_home.mkdir(parents=True, exist_ok=True)
    write_csv(ldstudio_home, STYLES_CSV)
    window, submitted = spied(make_window, fake_backend)
    pane, picker = window.prompt_pane, window.prompt_pane.style_picker
    pick(picker, "sharp")
    made = generate(qtbot, window, "a blue square")
    assert isinstance(made, JobFinished)
    only_cinematic = "name,prompt,negative_prompt\ncinematic,{prompt} in a film,\n"
    assert picker.import_file(write_csv(tmp_path, only_cinematic, "new.csv")) == ""
    assert picker.chip_states() == {"sharp": "missing"}  # picked, then gone: applied as it was
    picker.remove("sharp")
    window.library.actions.reuse_all(entry_for(window, made.records[0].path))
    full = "a blue square, highly detailed, sharp focus"
    qtbot.waitUntil(lambda: pane.prompt() == full)
    assert picker.chip_states() == {"sharp": "missing"}
    chip = picker.chips["sharp"]
    assert chip.text() == "⚠ sharp (missing) ✕"
    assert "not in styles.csv: its text stays in the prompt" in chip.toolTip()
    assert pane.negative_prompt() == "blurry"
    again = generate(qtbot, window, pane.prompt())
    assert isinstance(again, JobFinished)
    sent = submitted[-1].params
    assert (sent.prompt, sent.negative_prompt, sent.styles) == (full, "blurry", ("sharp",))
    picker.remove("sharp")  # stop naming it; its text stays in the box
    assert window.current_params().styles == () and pane.prompt() == full


def test_reuse_all_of_an_a1111_image_then_generate_keeps_every_field(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path, tmp_path: Path
) -> None:
    ldstudio_home.mkdir(parents=True, exist_ok=True)
    write_csv(ldstudio_home, STYLES_CSV)
    window, submitted = spied(make_window, fake_backend)
    text = (
        "a castle, highly detailed, sharp focus, (tower:1.2) BREAK moat\n"
        "Negative prompt: blurry\n"
        "Steps: 4, Sampler: Euler a, CFG scale: 6, Seed: 1234, Size: 64x64, Clip skip: 2, "
        "Variation seed: 99, Variation seed strength: 0.3, Seed resize from: 128x96, "
        'Emphasis: No norm, Styles: "gone, sharp"'
    )
    image = png_with_text(tmp_path / "a1111.png", {"parameters": text})
    window.library.restore(read_file(image))
    pane, picker = window.prompt_pane, window.prompt_pane.style_picker
    # "sharp" is not the last text of this prompt (A1111 appended the weights after it): kept.
    qtbot.waitUntil(lambda: pane.prompt().startswith("a castle"))
    assert picker.chip_states() == {"gone": "missing", "sharp": "in prompt"}
    made = generate(qtbot, window, pane.prompt())
    assert isinstance(made, JobFinished)
    sent = submitted[-1].params
    assert sent.prompt == "a castle, highly detailed, sharp focus, (tower:1.2) BREAK moat"
    assert (sent.negative_prompt, sent.seed, sent.steps) == ("blurry", 1234, 4)
    assert (sent.clip_skip, sent.emphasis) == (2, "no-norm")
    assert (sent.variation_seed, sent.variation_strength) == (99, 0.3)
    assert sent.seed_resize_from == (128, 96)
    assert sent.styles == ("gone", "sharp")


def test_the_draft_holds_the_options_box_values(make_window, fake_backend: FakeBackend) -> None:
    window = make_window(fake_backend)
    box = window.params_pane.options_box
    box.clip_skip_spin.setValue(3)
    box.resize_check.setChecked(True)
    values = window.draft.values
    assert values.clip_skip == 3 and values.seed_resize_from == (512, 512)
    # Set in the draft (a load, another front end), the box shows it.
    window.draft.load(GenerationParams(prompt="", clip_skip=4, emphasis="comfy"))
    assert box.clip_skip_spin.value() == 4 and box.emphasis() == "comfy"
    assert not box.resize_check.isChecked()
    assert window.current_params().clip_skip == 4
    box.clip_skip_spin.setValue(13)  # kept as typed and named once
    assert (
        window.params_pane.problems().count("clip_skip: 13 is out of range; allowed: 1 to 12") == 1
    )


def test_a_restart_brings_the_picked_styles_back_and_a_cli_import_is_seen(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    ldstudio_home.mkdir(parents=True, exist_ok=True)
    write_csv(ldstudio_home, STYLES_CSV)
    window, _submitted = spied(make_window, fake_backend)
    pick(window.prompt_pane.style_picker, "sharp")
    window.prompt_pane.prompt_edit.setPlainText("a red circle")
    window.close()
    again = make_window(FakeBackend(), settings=load_settings())
    picker = again.prompt_pane.style_picker
    assert again.prompt_pane.prompt() == "a red circle"
    assert picker.chip_states() == {"sharp": "picked"}
    # Replaced behind the window's back (`ldstudio styles import`): read when the menu opens.
    write_csv(ldstudio_home, STYLES_CSV + "extra,more {prompt},\n")
    picker.menu.aboutToShow.emit()
    assert [text for text, _on, _checked in menu_texts(picker)][:3] == [
        "cinematic",
        "sharp",
        "extra",
    ]
