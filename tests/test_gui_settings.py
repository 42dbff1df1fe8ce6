"""Settings persist across restarts; the settings file is written atomically and never lost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
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


def test_the_hires_fix_survives_a_restart_and_a_canvas_job_keeps_it(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    from PIL import Image

    from ldstudio.core.hires import HiresSettings

    window = make_window(fake_backend)
    fake_backend.blobs = window.store.blobs
    box = window.params_pane.hires_box
    box.setChecked(True)
    box.scale_spin.setValue(1.5)
    box.upscaler_combo.setCurrentIndex(box.upscaler_combo.findData("latent"))
    box.steps_spin.setValue(6)
    # A canvas job (the group off there) does not turn the remembered hires fix off.
    window.show_canvas()
    assert window.canvas.set_source(Image.new("RGB", (64, 64), "purple"), "photo")
    assert isinstance(generate(qtbot, window, "on the canvas"), JobFinished)
    window.show_preview()
    window.close()
    saved = json.loads(settings_path().read_text(encoding="utf-8"))
    wanted = HiresSettings(scale=1.5, upscaler="latent", steps=6)
    assert saved["last_hires"] == wanted.to_dict()
    again = make_window(FakeBackend(), settings=load_settings())
    assert again.params_pane.hires_box.settings() == wanted
    # Turned off, it stays off.
    again.params_pane.hires_box.setChecked(False)
    again.close()
    assert json.loads(settings_path().read_text(encoding="utf-8"))["last_hires"] == {}


def test_a_damaged_saved_hires_fix_is_named_and_dropped(ldstudio_home: Path) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"last_hires": {"scale": 9, "upscaler": "latent"}}))
    settings = load_settings()
    assert settings.hires() is not None and settings.hires().upscaler == "latent"  # type: ignore[union-attr]
    assert any("last_hires.scale" in problem for problem in settings.load_problems)


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


# -- the user's own settings file, damaged (issue 13) ------------------------------------------

UNREADABLE = {
    "not UTF-8": b'{"recent_prompts": ["caf\xe9"]}',
    "nested too deeply": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "not valid JSON": b"{not json",
    "got a list": b"[1, 2]",
    "got null": b"null",
}
# Every known key with a value of the wrong type, beside values that are fine.
WRONG_TYPES = {
    "recent_prompts": ["kept first", 5, None, "kept second"],
    "model_folders": 5,
    "splitters": {"main": 5, "left": "AAAA"},
    "window_geometry": "é not base64",
    "window_state": ["x"],
    "library_folder": "/bad\u0000path",
    "preview_method": "sparkles",
    "preview_interval": 10**12,
    "last_params": {"prompt": "a cat", "width": "512", "steps": 12, "seed": "x"},
    "engine_options": {"device": [], "dtype": "fp32"},
    "window": "x",  # not a key ldstudio knows: left as it is
}
DROPPED = [
    "recent_prompts[1] (5;",
    "recent_prompts[2] (null;",
    "model_folders (a number; allowed: a list,",
    "splitters['main'] (5;",
    "window_geometry (",
    "window_state (a list;",
    "library_folder (",
    'preview_method ("sparkles"; allowed: one of latent2rgb, taesd, vae, none)',
    "preview_interval (1000000000000; allowed: a whole number from 1 to 150)",
    "last_params.width (width: '512' is not an integer",
    "last_params.seed (",
    "engine_options.device (",
]


@pytest.mark.parametrize("reason", list(UNREADABLE))
def test_unreadable_settings_start_with_defaults_saying_so(
    ldstudio_home: Path, reason: str
) -> None:
    ldstudio_home.mkdir(parents=True)
    settings_path().write_bytes(UNREADABLE[reason])
    started = time.perf_counter()
    loaded = load_settings()
    assert time.perf_counter() - started < 2.0
    assert loaded == Settings()
    assert (ldstudio_home / "settings.json.bad").read_bytes() == UNREADABLE[reason]
    assert not settings_path().exists()
    [problem] = loaded.load_problems
    assert problem.startswith(f"settings: {settings_path()} could not be read (")
    assert reason in problem and "kept as settings.json.bad beside it" in problem
    assert load_settings().load_problems == []  # said once: the next start is quiet


def test_a_settings_folder_is_moved_aside(ldstudio_home: Path) -> None:
    (settings_path() / "inside").mkdir(parents=True)
    loaded = load_settings()
    assert loaded == Settings() and "Is a directory" in loaded.load_problems[0]
    assert (ldstudio_home / "settings.json.bad" / "inside").is_dir()
    save_settings(loaded)  # the next save writes a file where the folder was
    assert load_settings() == Settings()


def test_each_broken_file_is_kept_under_its_own_name(ldstudio_home: Path) -> None:
    """Issue 13: a second broken file overwrote the first `.bad`, the user's earlier edit."""
    ldstudio_home.mkdir(parents=True)
    texts = ["{first hand edit", '{"preview_interval": "second"}', "[third]", "{fourth"]
    for text in texts:
        settings_path().write_text(text, encoding="utf-8")
        load_settings()
    kept = {p.name: p.read_text(encoding="utf-8") for p in ldstudio_home.glob("settings.json.*")}
    assert kept == {
        "settings.json.bad": texts[0],
        "settings.json.bad-2": texts[1],
        "settings.json.bad-3": texts[2],
        "settings.json.bad-4": texts[3],
    }


def test_wrong_types_drop_only_those_values(ldstudio_home: Path) -> None:
    ldstudio_home.mkdir(parents=True)
    original = json.dumps(WRONG_TYPES, ensure_ascii=False).encode()
    settings_path().write_bytes(original)
    loaded = load_settings()
    assert loaded.recent_prompts == ["kept first", "kept second"]
    assert loaded.splitters == {"left": "AAAA"}
    assert loaded.last_params == {"prompt": "a cat", "steps": 12}
    assert loaded.engine_options == {"dtype": "fp32"}
    assert (loaded.model_folders, loaded.preview_method, loaded.preview_interval) == (
        [],
        "latent2rgb",
        1,
    )
    [problem] = loaded.load_problems
    assert problem.startswith(f"settings: {settings_path()}: dropped ")
    for words in DROPPED:
        assert words in problem, words
    assert problem.endswith("The file as it was is kept as settings.json.bad beside it")
    assert (ldstudio_home / "settings.json.bad").read_bytes() == original
    rewritten = json.loads(settings_path().read_text(encoding="utf-8"))
    assert rewritten["window"] == "x" and "model_folders" not in rewritten
    again = load_settings()
    assert again == loaded and again.load_problems == []  # said once


def test_the_cli_says_so_once_on_stderr(ldstudio_home: Path) -> None:
    ldstudio_home.mkdir(parents=True)
    settings_path().write_bytes(b"\xff\xfe")
    script = "import sys; from ldstudio.cli import main; sys.exit(main(['gallery', 'list']))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("could not be read (it is not UTF-8 text)") == 1, done.stderr
    assert (ldstudio_home / "settings.json.bad").read_bytes() == b"\xff\xfe"


def test_the_window_starts_with_wrong_types_and_says_what_it_dropped(
    make_window, fake_backend: FakeBackend, ldstudio_home: Path
) -> None:
    """Issue 13: wrong element types crashed the window at start."""
    ldstudio_home.mkdir(parents=True)
    settings_path().write_text(json.dumps(WRONG_TYPES), encoding="utf-8")
    window = make_window(fake_backend)
    tips = [a.toolTip() for a in window.prompt_pane.recent_menu.actions()]
    assert tips == ["kept first", "kept second"]
    params = window.current_params()
    assert (params.prompt, params.steps) == ("a cat", 12)
    notice = window.settings_notice
    assert notice.isVisible() and notice.windowTitle() == "Settings"
    assert all(words in notice.text() for words in DROPPED)
    assert window.settings.load_problems == []  # shown once


@pytest.mark.parametrize("reason", ["not UTF-8", "nested too deeply", "a folder"])
def test_the_window_starts_with_an_unreadable_settings_file(
    make_window, fake_backend: FakeBackend, ldstudio_home: Path, reason: str
) -> None:
    ldstudio_home.mkdir(parents=True)
    if reason == "a folder":
        settings_path().mkdir()
    else:
        settings_path().write_bytes(UNREADABLE[reason])
    window = make_window(fake_backend)
    assert "kept as settings.json.bad beside it" in window.settings_notice.text()
    assert window.current_params().steps == GenerationParams(prompt="").steps
    window.close()  # saving on close writes a fresh file; the one kept aside stays
    assert (ldstudio_home / "settings.json.bad").exists() and settings_path().is_file()
