"""The engine options dialog: what auto means, refusals shown inline, saved with the settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QDialogButtonBox, QLabel, QWidget

from ldstudio.app import diffusers_backend_factory
from ldstudio.core.events import EngineNotice, JobFinished
from ldstudio.core.options import EngineOptions
from ldstudio.core.settings import Settings, load_settings, save_settings
from ldstudio.qt.engine_options import (
    AUTO_TEXT,
    COMPILE_NOTE,
    EngineEnvironment,
    EngineOptionsDialog,
    load_engine_options,
    reset_impossible_options,
)

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name

CPU_ONLY = EngineEnvironment(devices=("cpu",), running="CPU · fp32 · SDPA, VAE tiling auto")
WITH_CUDA = EngineEnvironment(devices=("cuda", "cpu"), running="CUDA · fp16")


def make(qtbot, settings: Settings, environment: EngineEnvironment | None) -> EngineOptionsDialog:
    dialog = EngineOptionsDialog(settings, environment)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def choose(dialog: EngineOptionsDialog, name: str, value: str) -> None:
    combo = dialog.combos[name]
    combo.setCurrentIndex(combo.findData(value))


def ok_button(dialog: EngineOptionsDialog):
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)


def test_every_option_has_a_tooltip_and_auto_says_what_it_picks(qtbot) -> None:
    dialog = make(qtbot, Settings(), CPU_ONLY)
    for name, combo in dialog.combos.items():
        assert combo.toolTip(), name
        assert combo.itemText(0) == f"auto ({AUTO_TEXT[name]})"
        assert combo.currentData() == "auto"
    for name, check in dialog.checks.items():
        assert check.toolTip(), name
    assert "CUDA if torch sees a GPU" in dialog.combos["device"].itemText(0)
    assert "CPU · fp32" in dialog.running_label.text()
    assert dialog.options() == EngineOptions()


def test_cpu_offload_without_cuda_is_refused_inline(qtbot) -> None:
    dialog = make(qtbot, Settings(), CPU_ONLY)
    choose(dialog, "cpu_offload", "on")
    note = dialog.notes["cpu_offload"]
    assert not note.isHidden()
    assert "needs a CUDA GPU" in note.text() and "auto or off" in note.text()
    assert not ok_button(dialog).isEnabled()
    choose(dialog, "cpu_offload", "off")
    assert note.isHidden()
    assert ok_button(dialog).isEnabled()

    # Asking for a device the machine lacks is refused the same way.
    choose(dialog, "device", "cuda")
    assert "No CUDA GPU is available" in dialog.notes["device"].text()
    assert not ok_button(dialog).isEnabled()


def test_cpu_offload_allowed_with_cuda_but_not_with_the_device_set_to_cpu(qtbot) -> None:
    dialog = make(qtbot, Settings(), WITH_CUDA)
    choose(dialog, "cpu_offload", "on")
    assert dialog.problems() == {}
    choose(dialog, "device", "cpu")
    assert "device is set to cpu" in dialog.problems()["cpu_offload"]


def test_doubtful_choices_are_explained_but_allowed(qtbot) -> None:
    dialog = make(qtbot, Settings(), CPU_ONLY)
    choose(dialog, "dtype", "fp16")
    assert "slow" in dialog.notes["dtype"].text()
    assert ok_button(dialog).isEnabled()


def test_options_round_trip_through_the_settings_file(qtbot, tmp_path: Path) -> None:
    settings = Settings()
    dialog = make(qtbot, settings, WITH_CUDA)
    choose(dialog, "dtype", "bf16")
    choose(dialog, "attention_slicing", "on")
    choose(dialog, "vae_tiling", "off")
    dialog.checks["compile_unet"].setChecked(True)
    dialog.checks["sdpa"].setChecked(False)
    with qtbot.waitSignal(dialog.options_changed) as blocker:
        ok_button(dialog).click()
    expected = EngineOptions(
        dtype="bf16", attention_slicing="on", vae_tiling="off", compile_unet=True, sdpa=False
    )
    assert blocker.args == [expected]

    path = tmp_path / "settings.json"
    save_settings(settings, path)
    reloaded = load_settings(path)
    assert load_engine_options(reloaded) == expected
    again = make(qtbot, reloaded, WITH_CUDA)
    assert again.options() == expected
    assert again.combos["dtype"].currentData() == "bf16"
    assert again.checks["compile_unet"].isChecked()

    # Accepting unchanged options does not ask the engine to rebuild.
    with qtbot.assertNotEmitted(again.options_changed):
        ok_button(again).click()


def test_invalid_saved_options_fall_back_to_auto(qtbot) -> None:
    settings = Settings(engine_options={"device": "tpu", "dtype": "fp16"})
    assert load_engine_options(settings) == EngineOptions()
    dialog = make(qtbot, settings, None)
    assert dialog.options() == EngineOptions()
    # Without knowing the machine, only what is impossible everywhere is refused.
    choose(dialog, "device", "cpu")
    choose(dialog, "cpu_offload", "on")
    assert "needs a CUDA GPU" in dialog.problems()["cpu_offload"]


def test_while_the_engine_starts_machine_dependent_choices_wait_for_it(qtbot) -> None:
    # Opened before "Engine ready": nothing says whether this machine has a CUDA GPU yet.
    settings = Settings()
    dialog = make(qtbot, settings, None)
    assert "still starting" in dialog.running_label.text()
    assert "checked when it is ready" in dialog.running_label.text()
    choose(dialog, "device", "cuda")
    assert "known once the engine is ready" in dialog.notes["device"].text()
    assert not ok_button(dialog).isEnabled()
    dialog.accept()  # a keyboard accept is refused as well
    assert settings.engine_options == {}
    # Choices that run anywhere are not held back.
    choose(dialog, "device", "cpu")
    dialog.checks["compile_unet"].setChecked(True)
    assert ok_button(dialog).isEnabled()


def test_the_choice_is_checked_when_the_engine_finds_its_devices(qtbot) -> None:
    found: list[EngineEnvironment] = []
    settings = Settings()
    dialog = make(qtbot, settings, lambda: found[0] if found else None)
    choose(dialog, "device", "cuda")
    assert not ok_button(dialog).isEnabled()
    found.append(CPU_ONLY)  # the engine is ready: CPU only
    qtbot.waitUntil(lambda: "No CUDA GPU is available" in dialog.notes["device"].text())
    assert "CPU · fp32" in dialog.running_label.text()
    assert not ok_button(dialog).isEnabled()
    ok_button(dialog).click()
    assert settings.engine_options == {}, "cuda was saved on a machine without CUDA"

    with_cuda = make(qtbot, Settings(), None)
    choose(with_cuda, "device", "cuda")
    with_cuda.set_environment(WITH_CUDA)
    assert with_cuda.notes["device"].isHidden()
    assert ok_button(with_cuda).isEnabled()


def test_saved_options_this_machine_cannot_run_are_reset_to_auto_with_a_message() -> None:
    # Saved on a GPU machine, or before the dialog checked them.
    saved = {"device": "cuda", "cpu_offload": "on", "attention_slicing": "on"}
    settings = Settings(engine_options=dict(saved))
    message = reset_impossible_options(settings, CPU_ONLY)
    assert "device cuda → auto (No CUDA GPU is available to torch here" in message
    assert "cpu_offload on → auto" in message and "Engine options" in message
    assert load_engine_options(settings) == EngineOptions(attention_slicing="on")
    assert reset_impossible_options(settings, CPU_ONLY) == ""

    fine = Settings(engine_options=dict(saved))
    assert reset_impossible_options(fine, WITH_CUDA) == ""
    assert fine.engine_options == saved


def _in_dialog(dialog: EngineOptionsDialog, widget: QWidget) -> QRect:
    return QRect(widget.mapTo(dialog, widget.rect().topLeft()), widget.size())


def test_notes_push_the_rows_below_down_without_overlap(qtbot) -> None:
    dialog = make(qtbot, Settings(), CPU_ONLY)
    qtbot.waitExposed(dialog)
    choose(dialog, "device", "cpu")
    choose(dialog, "dtype", "fp16")
    dialog.checks["compile_unet"].setChecked(True)
    choose(dialog, "cpu_offload", "on")
    qtbot.wait(50)  # let the layout settle
    (compile_note,) = [w for w in dialog.findChildren(QLabel) if w.text() == COMPILE_NOTE]
    labels = [compile_note, *(note for note in dialog.notes.values() if not note.isHidden())]
    assert len(labels) == 4
    for label in labels:
        # Every wrapped line of each note has room: none is squeezed.
        assert label.height() >= label.heightForWidth(label.width()), label.text()
    # The compile note ends above the next row's field, and the last note above the buttons.
    assert (
        _in_dialog(dialog, compile_note).bottom()
        < _in_dialog(dialog, dialog.combos["vae_tiling"]).top()
    )
    assert (
        _in_dialog(dialog, dialog.notes["cpu_offload"]).bottom()
        < _in_dialog(dialog, dialog.restart_label).top()
    )


# -- in the window and the real engine (phase 2 wiring) ------------------------------------------


def test_window_saves_options_and_shows_engine_notices(make_window, fake_backend, qtbot) -> None:
    window = make_window(fake_backend)
    applied: list[EngineOptions] = []
    window.apply_engine_options = applied.append
    dialog = window.open_engine_options()
    choose(dialog, "attention_slicing", "on")
    ok_button(dialog).click()
    assert applied == [EngineOptions(attention_slicing="on")]
    assert window.settings.engine_options["attention_slicing"] == "on"
    qtbot.waitUntil(lambda: load_settings().engine_options.get("attention_slicing") == "on")

    window.controller.service.announce(EngineNotice("Compiling the UNet…", 1))
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == "Compiling the UNet…")


def test_real_engine_falls_back_then_rebuilds_with_new_options(
    make_window, qtbot, tiny_model: Path
) -> None:
    # CPU offload needs CUDA: saved options like these (from another machine) must not stop
    # the engine; it runs on automatic choices and says so at the first job.
    factory = diffusers_backend_factory(options=EngineOptions(device="cpu", cpu_offload="on"))
    window = make_window(factory)
    window.add_model_folder(tiny_model)
    window.params_pane.steps_spin.setValue(2)
    notices: list[EngineNotice] = []
    window.controller.notice.connect(notices.append)
    assert isinstance(generate(qtbot, window, "a red circle", timeout=120_000), JobFinished)
    assert any("cannot run here" in n.message for n in notices)
    environment = window.engine_environment()
    assert environment is not None and "cpu" in environment.devices
    assert window.device_label.text() == "CPU · fp32"

    window.apply_engine_options(EngineOptions(device="cpu", attention_slicing="on"))
    with qtbot.waitSignal(window.controller.backend_ready, timeout=120_000):
        assert isinstance(generate(qtbot, window, "a red circle", timeout=120_000), JobFinished)
    assert any(
        n.message == "Engine options applied: CPU · fp32 · attention slicing" for n in notices
    )
    assert window.device_label.text() == "CPU · fp32 · attention slicing"
    assert "attention slicing" in window.engine_environment().running


def test_the_window_resets_impossible_saved_options_when_the_engine_is_ready(
    make_window, fake_backend, ldstudio_home, qtbot
) -> None:
    settings = Settings(engine_options={"device": "cuda", "attention_slicing": "on"})
    window = make_window(fake_backend, settings)
    applied: list[EngineOptions] = []
    window.apply_engine_options = applied.append
    window.engine_environment = lambda: CPU_ONLY
    window.jobs.on_backend_ready("CPU · fp32")
    assert load_engine_options(window.settings) == EngineOptions(attention_slicing="on")
    assert applied == [EngineOptions(attention_slicing="on")]  # the other choice applies again
    notice = window.engine_options_notice
    assert notice.isVisible() and "device cuda → auto" in notice.text()
    saved = ldstudio_home / "settings.json"  # written off the GUI thread
    qtbot.waitUntil(lambda: saved.is_file() and '"attention_slicing": "on"' in saved.read_text())
    assert '"device": "cuda"' not in saved.read_text()
