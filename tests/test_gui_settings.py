"""Settings persist across restarts; the settings file is written atomically and never lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop, set_prompt

from ldstudio.core.events import JobFinished
from ldstudio.core.params import GenerationParams
from ldstudio.core.settings import (
    RECENT_PROMPTS_MAX,
    Settings,
    load_settings,
    save_settings,
    settings_path,
)
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.params_pane import CUSTOM, FIXED

__all__ = ["fake_backend", "make_window", "qt_loop"]


def test_settings_round_trip_and_defaults(ldstudio_home: Path) -> None:
    assert load_settings() == Settings()
    settings = Settings(library_folder="/data/lib", splitters={"main": "AAAA"}, preview_interval=3)
    settings.remember_prompt("a")
    settings.remember_prompt("b")
    settings.remember_prompt("a")
    save_settings(settings)
    assert settings_path() == ldstudio_home / "settings.json"
    again = load_settings()
    assert again == settings
    assert again.recent_prompts == ["a", "b"]
    assert again.library_dir() == Path("/data/lib")
    assert [p.name for p in ldstudio_home.iterdir()] == ["settings.json"]  # no temp files left


def test_recent_prompts_are_bounded() -> None:
    settings = Settings()
    for i in range(RECENT_PROMPTS_MAX + 5):
        settings.remember_prompt(f"p{i}")
    assert len(settings.recent_prompts) == RECENT_PROMPTS_MAX
    assert settings.recent_prompts[0] == f"p{RECENT_PROMPTS_MAX + 4}"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"preview_interval": "three"}'])
def test_unreadable_settings_are_kept_aside_not_overwritten(ldstudio_home: Path, text: str) -> None:
    ldstudio_home.mkdir(parents=True)
    settings_path().write_text(text, encoding="utf-8")
    assert load_settings() == Settings()
    assert (ldstudio_home / "settings.json.bad").read_text(encoding="utf-8") == text


def test_saved_params_that_no_longer_validate_are_ignored() -> None:
    settings = Settings(last_params={"prompt": "x", "steps": 9999})
    assert settings.params() is None
    settings = Settings(last_params={"prompt": "x", "steps": 12, "from_the_future": 1})
    assert settings.params() == GenerationParams(prompt="x", steps=12)


def test_settings_survive_a_restart(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path, tmp_path: Path
) -> None:
    window = make_window(fake_backend)
    pane = window.params_pane
    pane.scheduler_combo.setCurrentText("DPM++ 2M Karras")
    pane.steps_spin.setValue(7)
    pane.guidance_spin.setValue(4.5)
    pane.aspect_combo.setCurrentIndex(CUSTOM)
    pane.width_spin.setValue(96)
    pane.height_spin.setValue(128)
    pane.seed_mode.setCurrentIndex(FIXED)
    pane.seed_spin.setValue(4_000_000_000)  # above int32: the seed widget takes the full range
    pane.preview_combo.setCurrentText("vae")
    pane.preview_interval_spin.setValue(2)
    window.prompt_pane.negative_edit.setPlainText("blurry")
    assert isinstance(generate(qtbot, window, "remember me"), JobFinished)
    window.resize(790, 590)  # the offscreen screen is 800×600; geometry is clamped to it
    qtbot.waitUntil(lambda: window.main_splitter.width() > 700)
    window.main_splitter.setSizes([250, 260, 240])
    window.close()

    saved = json.loads(settings_path().read_text(encoding="utf-8"))
    assert saved["recent_prompts"][0] == "remember me"

    again = make_window(FakeBackend(), settings=load_settings())
    assert again.prompt_pane.prompt() == "remember me"
    assert again.prompt_pane.negative_prompt() == "blurry"
    assert again.prompt_pane.recent_menu.actions()[0].toolTip() == "remember me"
    params = again.current_params()
    assert (params.scheduler, params.steps, params.guidance_scale) == ("DPM++ 2M Karras", 7, 4.5)
    assert (params.width, params.height, params.seed) == (96, 128, 4_000_000_000)
    assert (params.preview_method, params.preview_interval) == ("vae", 2)
    assert (again.width(), again.height()) == (790, 590)
    left, _, right = again.main_splitter.sizes()
    assert (left, right) == (250, 240)  # the side panes keep the widths the user gave them


def test_new_images_go_into_the_library(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    window = make_window(fake_backend)
    outcome = generate(qtbot, window, "here")
    assert isinstance(outcome, JobFinished)
    assert outcome.records[0].path.is_relative_to(ldstudio_home / "library" / "images")
    assert window.store.entry_for_path(outcome.records[0].path) is not None


def test_recent_prompts_are_one_keystroke_away(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    from PySide6.QtCore import Qt

    window = make_window(fake_backend)
    for prompt in ("older", "newer"):
        generate(qtbot, window, prompt)
    set_prompt(window, "")
    window.prompt_pane.prompt_edit.setFocus()
    qtbot.keyClick(
        window.prompt_pane.prompt_edit, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier
    )
    assert window.prompt_pane.prompt() == "newer"
    qtbot.keyClick(
        window.prompt_pane.prompt_edit, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier
    )
    assert window.prompt_pane.prompt() == "older"
    window.prompt_pane.prompt_edit.undo()
    assert window.prompt_pane.prompt() == "newer"  # recalling a prompt is undoable


def test_a_chosen_library_folder_is_used_from_the_next_start(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path: Path
) -> None:
    window = make_window(fake_backend)
    elsewhere = tmp_path / "my-library"
    window.choose_library_folder(elsewhere)
    assert window.store.root != elsewhere.resolve()  # this session keeps its library
    window.close()
    restarted = make_window(fake_backend, settings=load_settings())
    assert restarted.store.root == elsewhere.resolve()
    outcome = generate(qtbot, restarted, "kept elsewhere")
    assert isinstance(outcome, JobFinished)
    assert outcome.records[0].path.is_relative_to(elsewhere.resolve())
