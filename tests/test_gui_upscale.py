"""Upscale… in the window: the dialog says the size it makes and refuses (with UpscaleSettings'
message) what the settings refuse; the library's and the canvas's Upscale… queue an upscale
request on the image's bytes in the blob store with the dialog's settings and the parameter
pane's refine parameters; end to end on the real engine, the result is a new library image
linked to its source."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from gui_support import (
    fake_backend,
    generate,
    make_window,
    qt_loop,
    set_prompt,
    spy_submissions,
)
from PIL import Image

from ldstudio.core.events import JobFinished
from ldstudio.core.metadata import read_request
from ldstudio.core.models import KIND_UPSCALER, ModelEntry
from ldstudio.core.models.detection import STATUS_ERROR
from ldstudio.core.models.upscalers import bundled_upscaler_path
from ldstudio.core.request import KIND_UPSCALE, ROLE_IMAGE, Request
from ldstudio.core.upscale import UpscaleSettings
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.main_window import MainWindow
from ldstudio.qt.upscale_dialog import BUNDLED_TEXT, STRENGTH_HINT, UpscaleDialog, UpscaleSource

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def dialog_for(qtbot, width: int = 96, height: int = 64, **kwargs) -> UpscaleDialog:  # type: ignore[no-untyped-def]
    dialog = UpscaleDialog(UpscaleSource("photo.png", width, height), UpscaleSettings(), **kwargs)
    qtbot.addWidget(dialog)
    return dialog


def upscaler_entry(name: str, scale: int, status: str = "ok") -> ModelEntry:
    path = Path(f"/models/{name}.safetensors")
    return ModelEntry(
        path,
        name,
        KIND_UPSCALER,
        path.parent,
        1000,
        architecture="Compact",
        scale=scale,
        status=status,
        error="damaged" if status != "ok" else "",
    )


def test_the_dialog_says_the_output_size_and_refuses_what_the_settings_refuse(qtbot) -> None:
    dialog = dialog_for(qtbot)
    assert dialog.settings() == UpscaleSettings()
    assert dialog.size_label.text() == "96×64 → 192×128"
    assert dialog.strength_hint.text() == STRENGTH_HINT
    assert dialog.ok_button.isEnabled() and dialog.error_text() == ""
    dialog.scale_combo.setCurrentIndex(dialog.scale_combo.findData(4))
    assert dialog.size_label.text() == "96×64 → 384×256"

    # A smaller tile: the overlap stays as it was (not clamped), and is refused, saying why.
    dialog.tile_spin.setValue(128)
    assert dialog.overlap_spin.value() == 96
    message = dialog.error_text()
    with pytest.raises(ValueError) as refused:
        UpscaleSettings(scale=4, tile=128, overlap=96).validate()
    assert message == str(refused.value)
    assert message.startswith("overlap: 96 is not allowed")
    assert dialog.error_label.isVisibleTo(dialog) and not dialog.ok_button.isEnabled()
    dialog.overlap_spin.setValue(32)
    assert dialog.ok_button.isEnabled() and dialog.error_text() == ""
    assert dialog.overlap_spin.maximum() == 32  # now it follows the tile
    dialog.tile_spin.setValue(1024)
    assert dialog.overlap_spin.maximum() == 256

    # Not a multiple of 8: refused too, not snapped.
    dialog.tile_spin.setValue(500)
    assert dialog.tile_spin.value() == 500 and dialog.error_text().startswith("tile: 500")
    assert not dialog.ok_button.isEnabled()


def test_a_source_too_large_for_the_scale_is_refused(qtbot) -> None:
    dialog = dialog_for(qtbot, 3000, 200)
    assert dialog.ok_button.isEnabled()
    dialog.scale_combo.setCurrentIndex(dialog.scale_combo.findData(4))
    assert dialog.size_label.text() == "3000×200 → 12000×800"
    assert dialog.error_text() == UpscaleSettings(scale=4).size_problem(3000, 200)
    assert not dialog.ok_button.isEnabled()


def test_the_upscaler_list_and_a_missing_bundled_upscaler(qtbot) -> None:
    dialog = dialog_for(
        qtbot,
        upscalers=[upscaler_entry("sharp-x4", 4), upscaler_entry("broken", 4, STATUS_ERROR)],
        missing_bundled={2: "upscaler: the bundled ldstudio-compact-x2 is not installed"},
    )
    combo = dialog.upscaler_combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert texts == [BUNDLED_TEXT, "Lanczos", "Bicubic", "sharp-x4 — Compact ×4"]
    assert BUNDLED_TEXT == "Bundled (ldstudio-compact-x2/x4)"
    assert dialog.error_text() == "upscaler: the bundled ldstudio-compact-x2 is not installed"
    assert not dialog.ok_button.isEnabled()
    combo.setCurrentIndex(combo.findData("lanczos"))
    assert dialog.ok_button.isEnabled() and dialog.settings().upscaler == "lanczos"
    combo.setCurrentIndex(3)
    assert dialog.settings().upscaler == str(Path("/models/sharp-x4.safetensors"))
    assert "resized down to ×2" in dialog.upscaler_note.text()
    dialog.strength_spin.setValue(0)
    assert "no diffusion model" in dialog.refine_label.text()


# -- in the window --------------------------------------------------------------------------


def upscale_window(make_window, backend: FakeBackend) -> tuple[MainWindow, list[Request]]:  # type: ignore[no-untyped-def]
    window = make_window(backend)
    backend.blobs = window.store.blobs
    submitted = spy_submissions(window)
    window.params_pane.steps_spin.setValue(3)
    window.params_pane.set_seed(7)
    return window, submitted


def wait_dialog(qtbot, window: MainWindow) -> UpscaleDialog:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: window.upscale.dialog is not None and window.upscale.dialog.isVisible())
    dialog = window.upscale.dialog
    assert dialog is not None
    return dialog


def accept(qtbot, window: MainWindow, dialog: UpscaleDialog, timeout: int = 10_000) -> object:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.controller.job_ended, timeout=timeout) as ended:
        dialog.ok_button.click()
    return ended.args[0]


def test_upscale_on_a_library_image_queues_an_upscale_of_its_bytes(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = upscale_window(make_window, fake_backend)
    first = generate(qtbot, window, "a red circle on a blue background")
    assert isinstance(first, JobFinished)
    qtbot.waitUntil(lambda: window.library_pane.current_entry() is not None)
    entry = window.library_pane.current_entry()
    pane = window.library_pane
    texts = [a.text() for a in pane.context_menu_for(entry).actions() if a.text()]
    assert "&Upscale…" in texts
    set_prompt(window, "the window's prompt")  # the image's own prompt is the one offered
    pane.actions_by_name["upscale"].trigger()
    dialog = wait_dialog(qtbot, window)
    assert dialog.prompt() == "a red circle on a blue background"
    assert dialog.size_label.text() == "64×64 → 128×128"
    refine = dialog.refine_label.text()
    assert "3 steps" in refine and "seed 7" in refine and window.bundled_model.name in refine
    dialog.scale_combo.setCurrentIndex(dialog.scale_combo.findData(4))
    dialog.upscaler_combo.setCurrentIndex(dialog.upscaler_combo.findData("lanczos"))
    dialog.strength_spin.setValue(0.45)
    dialog.tile_spin.setValue(256)
    dialog.overlap_spin.setValue(32)
    dialog.prompt_edit.setPlainText("a sharper red circle")
    shown = dialog.settings()
    outcome = accept(qtbot, window, dialog)
    assert isinstance(outcome, JobFinished)

    request = submitted[-1]
    assert request.kind == KIND_UPSCALE and request.face == "upscale"
    assert request.upscale == shown == UpscaleSettings(4, "lanczos", 0.45, 256, 32)
    assert request.params.prompt == "a sharper red circle"
    assert request.params.steps == 3 and request.params.seed == 7
    digest = request.input(ROLE_IMAGE)
    assert window.store.blobs.get(digest) == entry.path.read_bytes()
    # Queued as every job is: the engine ran it and its image is in the library.
    (record,) = outcome.records
    assert window.store.entry_for_path(record.path) is not None

    # The dialog remembers its settings for the session; the prompt is each image's own.
    pane.context_menu_for(entry)
    pane.actions_by_name["upscale"].trigger()
    again = wait_dialog(qtbot, window)
    assert again is not dialog and again.settings() == shown
    assert again.prompt() == "a red circle on a blue background"
    again.reject()
    qtbot.waitUntil(lambda: window.upscale.dialog is None)


def test_upscale_on_the_canvas_queues_an_upscale_of_its_source(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = upscale_window(make_window, fake_backend)
    canvas = window.canvas_pane
    assert not canvas.upscale_button.isEnabled()  # no image yet
    assert window.canvas.set_source(Image.new("RGB", (96, 64), "purple"), "photo")
    set_prompt(window, "a purple field")
    assert canvas.upscale_button.isEnabled()
    canvas.upscale_button.click()
    dialog = wait_dialog(qtbot, window)
    assert dialog.prompt() == "a purple field"
    assert dialog.size_label.text() == "96×64 → 192×128"
    assert "photo" in dialog.source_label.text()
    dialog.upscaler_combo.setCurrentIndex(dialog.upscaler_combo.findData("bicubic"))
    dialog.strength_spin.setValue(0)
    outcome = accept(qtbot, window, dialog)
    assert isinstance(outcome, JobFinished)
    request = submitted[-1]
    assert request.kind == KIND_UPSCALE
    assert request.upscale == UpscaleSettings(2, "bicubic", 0.0)
    document = canvas.document()
    assert document is not None
    assert request.input(ROLE_IMAGE) == hashlib.sha256(document.source_png()).hexdigest()
    assert request.params.model == "" and request.params.loras == ()  # no refine: no model


def test_upscale_with_nothing_selected_or_an_empty_canvas_says_why(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = upscale_window(make_window, fake_backend)
    window.upscale.upscale_selected()
    assert "no image is highlighted" in window.preview_pane.error_label.text()
    window.upscale.upscale_canvas()
    qtbot.waitUntil(lambda: "canvas" in window.preview_pane.error_label.text())
    assert "no image yet" in window.preview_pane.error_label.text()
    assert window.upscale.dialog is None and submitted == []


def test_upscale_end_to_end_on_the_real_engine(
    make_window, qtbot, ldstudio_home: Path, tmp_path: Path
) -> None:
    """No diffusion model (refine 0): the bundled ×2 upscaler when it is in this checkout,
    else Lanczos; the result is a new library image whose request names its source's blob."""
    from ldstudio.app import diffusers_backend_factory

    window = make_window(diffusers_backend_factory(device="cpu"))
    folder = tmp_path / "photos"
    folder.mkdir()
    source = folder / "photo.png"
    Image.new("RGB", (48, 32), (200, 40, 90)).save(source)
    report = window.store.import_folder(folder)
    assert len(report.added) == 1
    entry = window.store.entry_for_path(source)
    assert entry is not None
    window.library.refresh()
    window.upscale.upscale_entry(entry)
    dialog = wait_dialog(qtbot, window)
    bundled = bundled_upscaler_path(2).is_file()
    if not bundled:
        dialog.upscaler_combo.setCurrentIndex(dialog.upscaler_combo.findData("lanczos"))
    dialog.strength_spin.setValue(0)
    assert dialog.ok_button.isEnabled(), dialog.error_text()
    outcome = accept(qtbot, window, dialog, timeout=180_000)
    assert isinstance(outcome, JobFinished), outcome
    (record,) = outcome.records
    with Image.open(record.path) as made:
        assert made.size == (96, 64)
    made_entry = window.store.entry_for_path(record.path)
    assert made_entry is not None and made_entry.id != entry.id
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    indexed = made_entry.request
    assert made_entry.face == "upscale"
    assert indexed is not None and indexed.kind == KIND_UPSCALE
    assert indexed.input(ROLE_IMAGE) == digest
    # The image's own metadata holds the whole request, settings and all.
    saved, _notes = read_request(record.path)
    assert saved is not None and saved.face == "upscale" and saved.input(ROLE_IMAGE) == digest
    assert saved.upscale == UpscaleSettings(2, "" if bundled else "lanczos", 0.0)


def test_an_upscaler_model_no_longer_found_stays_chosen_and_is_refused(qtbot) -> None:
    dialog = dialog_for(qtbot, upscalers=[upscaler_entry("4x-here", 4)])
    gone = "/models/old/4x-gone.safetensors"
    dialog.set_settings(UpscaleSettings(scale=4, upscaler=gone))
    assert dialog.settings().upscaler == gone  # not silently the bundled one
    assert "4x-gone (not found)" in dialog.upscaler_combo.currentText()
    problem = dialog.problem()
    assert problem is not None and "4x-gone is not among the upscaler models" in problem
    assert problem in dialog.error_text() and not dialog.ok_button.isEnabled()
