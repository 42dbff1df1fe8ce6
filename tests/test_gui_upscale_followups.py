"""Upscale follow-ups in the window: Reuse all on an upscale's image opens the Upscale dialog on
its source blob (not the canvas) with its settings and prompt, the refine's parameters going to
the parameter pane; the queue says what a job does; the details pane's Upscale…; the dialog's
settings survive a restart (a damaged value dropped field by field); refine strength 0 is not
refused for a prompt's LoRA tags; and the hires fix offers the upscaler models found, keeping a
saved one that is not found (marked, and refused by Generate with the file's reason)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from gui_support import generate, make_window, qt_loop, set_prompt, spy_submissions
from PySide6.QtCore import Qt
from test_gui_upscale import accept, upscale_window, wait_dialog

from ldstudio.core.backend import ImageResult
from ldstudio.core.events import JobFinished
from ldstudio.core.hires import HiresSettings
from ldstudio.core.jobs import Job
from ldstudio.core.library import LibraryEntry
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import KIND_UPSCALE, ROLE_IMAGE, Request
from ldstudio.core.settings import Settings, load_settings, settings_path
from ldstudio.core.upscale import UpscaleSettings
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.hires_box import DEFAULT_TEXT, NOT_FOUND_TEXT
from ldstudio.qt.image_details import entry_result
from ldstudio.qt.main_window import MainWindow
from ldstudio.qt.queue_pane import QueuePane

pytestmark = pytest.mark.gui
__all__ = ["make_window", "qt_loop"]  # fixtures used by name

SCAN_TIMEOUT_MS = 30_000


class UpscalingFake(FakeBackend):
    """The fake backend, its upscales' images recorded as upscales (the fake paints every job
    as txt2img): what Reuse all reads back from the library."""

    def execute(self, request, cancel):  # type: ignore[no-untyped-def]
        for event in super().execute(request, cancel):
            if isinstance(event, ImageResult) and request.kind == KIND_UPSCALE:
                event = dataclasses.replace(event, request=request)
            yield event


@pytest.fixture
def fake_backend() -> FakeBackend:
    return UpscalingFake()


def first_image(qtbot, window: MainWindow, prompt: str = "a red circle") -> LibraryEntry:  # type: ignore[no-untyped-def]
    outcome = generate(qtbot, window, prompt)
    assert isinstance(outcome, JobFinished)
    qtbot.waitUntil(lambda: window.library_pane.current_entry() is not None)
    entry = window.store.entry_for_path(outcome.records[-1].path)
    assert entry is not None
    return entry


def upscale_of(qtbot, window: MainWindow, entry: LibraryEntry, **shown) -> LibraryEntry:  # type: ignore[no-untyped-def]
    """Upscale `entry` through the dialog with `shown` (settings fields, prompt, negative)."""
    window.upscale.upscale_entry(entry)
    dialog = wait_dialog(qtbot, window)
    prompt, negative = shown.pop("prompt", None), shown.pop("negative", None)
    dialog.set_settings(UpscaleSettings(**shown))
    if prompt is not None:
        dialog.prompt_edit.setPlainText(prompt)
    if negative is not None:
        dialog.negative_edit.setPlainText(negative)
    outcome = accept(qtbot, window, dialog)
    assert isinstance(outcome, JobFinished), outcome
    made = window.store.entry_for_path(outcome.records[-1].path)
    assert made is not None and made.face == "upscale"
    return made


# -- 1. Reuse all on an upscale's image ------------------------------------------------------


def test_reuse_all_on_an_upscale_opens_the_dialog_on_its_source(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = upscale_window(make_window, fake_backend)
    source = first_image(qtbot, window)
    wanted = UpscaleSettings(4, "lanczos", 0.45, 256, 32)
    made = upscale_of(
        qtbot, window, source, **wanted.to_dict(), prompt="sharper", negative="blurry"
    )
    digest = submitted[-1].input(ROLE_IMAGE)
    # Other values in the panes now: Reuse all brings the refine's back, not the prompt pane's.
    window.params_pane.steps_spin.setValue(9)
    window.params_pane.set_seed(1234)
    set_prompt(window, "the window's own prompt")
    window.left_tabs.setCurrentIndex(window.details_tab)
    window.details_view.show_entry(made)
    window.details_view.buttons["reuse_params"].click()
    dialog = wait_dialog(qtbot, window)

    assert dialog.settings() == wanted
    assert dialog.prompt() == "sharper" and dialog.negative_prompt() == "blurry"
    assert dialog.source.label == f"source of {made.path.name}"
    assert dialog.size_label.text() == "64×64 → 256×256"  # the source's size, not the result's
    assert window.params_pane.steps_spin.value() == 3
    assert window.draft.seed_value() == 7
    assert "3 steps" in dialog.refine_label.text() and "seed 7" in dialog.refine_label.text()
    assert window.prompt_pane.prompt() == "the window's own prompt"
    assert window.left_tabs.currentIndex() == window.generate_tab
    assert window.canvas_pane.document() is None  # no img2img job on the canvas
    outcome = accept(qtbot, window, dialog)
    assert isinstance(outcome, JobFinished)
    again = submitted[-1]
    assert again.kind == KIND_UPSCALE and again.upscale == wanted
    assert again.input(ROLE_IMAGE) == digest  # the same source blob
    assert again.params.prompt == "sharper" and again.params.steps == 3


def test_reuse_all_on_an_upscale_whose_source_is_gone_says_so(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = upscale_window(make_window, fake_backend)
    made = upscale_of(qtbot, window, first_image(qtbot, window), upscaler="lanczos")
    digest = submitted[-1].input(ROLE_IMAGE)
    assert digest is not None
    window.store.blobs.path(digest).unlink()
    count = len(submitted)
    window.library.actions.reuse_all(made)
    error = window.preview_pane.error_label
    qtbot.waitUntil(lambda: "not in this library's blob store" in error.text())
    assert error.text().startswith(f"Cannot upscale the source of {made.path.name} again: ")
    assert window.upscale.dialog is None and len(submitted) == count
    assert window.canvas_pane.document() is None


# -- 2. The queue says what a job does -------------------------------------------------------


def test_the_queue_names_what_a_job_that_is_not_txt2img_does(qtbot) -> None:
    pane = QueuePane()
    qtbot.addWidget(pane)
    digest = "ab" * 32
    empty = GenerationParams(prompt="", steps=3, seed=1)
    upscale = Job.create(Request.upscaling(empty, UpscaleSettings(scale=4), digest))
    prompted = Job.create(
        Request.upscaling(empty.replace(prompt="a red\ncircle"), UpscaleSettings(), digest)
    )
    plain = Job.create(GenerationParams(prompt="a blue square", steps=3, seed=1))
    pane.set_jobs([upscale, prompted, plain], {upscale.id: "cancelling"})
    texts = [pane.list.item(row).text() for row in range(pane.list.count())]
    assert texts == [
        f"#{upscale.id} · cancelling · upscale ×4",
        f"#{prompted.id} · waiting · upscale ×2 · a red circle",
        f"#{plain.id} · waiting · a blue square",  # txt2img reads as before
    ]
    assert pane.list.item(1).toolTip() == "upscale ×2: a red\ncircle"


def test_a_running_upscale_without_a_prompt_reads_as_one_in_the_queue(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, _submitted = upscale_window(make_window, fake_backend)
    entry = first_image(qtbot, window)
    fake_backend.hold_at_step = 1
    window.upscale.upscale_entry(entry)
    dialog = wait_dialog(qtbot, window)
    dialog.set_settings(UpscaleSettings(scale=4, upscaler="lanczos"))
    dialog.prompt_edit.setPlainText("")
    with qtbot.waitSignal(window.controller.job_ended, timeout=10_000):
        dialog.ok_button.click()
        queue = window.queue_pane.list
        qtbot.waitUntil(lambda: queue.count() == 1 and "running" in queue.item(0).text())
        assert queue.item(0).text().endswith(" · running · upscale ×4")
        fake_backend.hold_at_step = None
        fake_backend.release()


# -- 3. The details pane's Upscale… ----------------------------------------------------------


def test_the_details_pane_upscales_the_image_it_shows(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = upscale_window(make_window, fake_backend)
    entry = first_image(qtbot, window, "a green square")
    details = window.details_view
    button = details.buttons["upscale"]
    details.show_entry(None)
    assert button.text() == "&Upscale…" and not button.isEnabled()
    details.show_entry(entry)
    assert button.isEnabled()
    button.click()
    dialog = wait_dialog(qtbot, window)
    assert dialog.source.label == entry.path.name and dialog.prompt() == "a green square"
    dialog.upscaler_combo.setCurrentIndex(dialog.upscaler_combo.findData("bicubic"))
    assert isinstance(accept(qtbot, window, dialog), JobFinished)
    assert submitted[-1].kind == KIND_UPSCALE
    assert window.store.blobs.get(submitted[-1].input(ROLE_IMAGE)) == entry.path.read_bytes()
    details.show_entry(dataclasses.replace(entry, missing=True))  # its file gone from disk
    assert not button.isEnabled()


# -- 4. The dialog's last settings across restarts ---------------------------------------------


def test_the_dialogs_settings_survive_a_restart(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, _submitted = upscale_window(make_window, fake_backend)
    entry = first_image(qtbot, window)
    wanted = UpscaleSettings(4, "bicubic", 0.0, 384, 96)
    upscale_of(qtbot, window, entry, **wanted.to_dict())

    def saved() -> object:
        path = settings_path()
        return (
            json.loads(path.read_text(encoding="utf-8")).get("last_upscale")
            if path.is_file()
            else None
        )

    qtbot.waitUntil(lambda: saved() == wanted.to_dict())  # saved on OK, not only at close
    window.close()
    backend = FakeBackend()
    again = make_window(backend, settings=load_settings())
    backend.blobs = again.store.blobs
    again.upscale.upscale_entry(entry)
    dialog = wait_dialog(qtbot, again)
    assert dialog.settings() == wanted
    dialog.reject()
    qtbot.waitUntil(lambda: again.upscale.dialog is None)


def test_a_damaged_saved_upscale_is_dropped_field_by_field(ldstudio_home: Path) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    damaged = {"scale": 3, "upscaler": 5, "tile": 128, "overlap": 32, "from_the_future": 1}
    path.write_text(json.dumps({"last_upscale": damaged, "last_hires": "no"}))
    settings = load_settings()
    # The tile and its overlap hold only together: both kept.
    assert settings.upscale() == UpscaleSettings(tile=128, overlap=32)
    problems = " ".join(settings.load_problems)
    assert "last_upscale.scale" in problems and "last_upscale.upscaler" in problems
    assert "last_upscale.tile" not in problems and "last_hires" in problems
    again = load_settings()  # rewritten without them: the next start is quiet
    assert again.load_problems == [] and again.upscale() == settings.upscale()
    assert Settings(last_upscale={"scale": "x"}).upscale() == UpscaleSettings()
    assert Settings().upscale() == UpscaleSettings()


def test_a_saved_hires_size_is_kept_beside_a_damaged_scale(ldstudio_home: Path) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"last_hires": {"scale": 9, "width": 1024, "height": 768}}))
    settings = load_settings()
    assert settings.hires() == HiresSettings(width=1024, height=768)
    assert "last_hires.scale" in " ".join(settings.load_problems)
    assert "width" not in " ".join(settings.load_problems)


# -- 5. Refine strength 0 and a prompt's LoRA tags ----------------------------------------------


def test_refine_zero_ignores_the_prompts_lora_tags_and_a_refine_does_not(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window, submitted = upscale_window(make_window, fake_backend)
    entry = first_image(qtbot, window)
    tagged = "a red circle <lora:not-installed:0.8>"
    made = upscale_of(qtbot, window, entry, upscaler="lanczos", refine_strength=0.0, prompt=tagged)
    assert submitted[-1].params.prompt == tagged  # kept as written: the image records it
    assert made.prompt == tagged
    count = len(submitted)
    window.upscale.upscale_entry(entry)
    dialog = wait_dialog(qtbot, window)
    dialog.set_settings(UpscaleSettings(upscaler="lanczos", refine_strength=0.3))
    dialog.prompt_edit.setPlainText(tagged)
    dialog.ok_button.click()
    error = window.preview_pane.error_label
    qtbot.waitUntil(lambda: "not-installed" in error.text())
    assert error.text().startswith("Cannot generate: prompt: <lora:not-installed>")
    assert len(submitted) == count


# -- 6. The hires fix's upscaler models -----------------------------------------------------------


def write_compact(path: Path) -> Path:
    from safetensors.torch import save_file

    from ldstudio.engine.upscalers.compact import Compact

    path.parent.mkdir(parents=True, exist_ok=True)
    module = Compact(3, 3, 16, 2, 4)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


def combo_items(window: MainWindow) -> list[tuple[str, str]]:
    combo = window.params_pane.hires_box.upscaler_combo
    return [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]


def test_the_hires_fix_offers_the_upscaler_models_found(
    make_window, fake_backend: FakeBackend, qtbot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ldstudio.core.models import ModelFolderStore

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    folder = tmp_path / "models"
    model = write_compact(folder / "ESRGAN" / "4x-sharp.safetensors")
    (folder / "ESRGAN" / "4x-broken.safetensors").write_bytes(b"not a safetensors file")
    ModelFolderStore(folders=[str(folder)]).save()
    # A saved hires fix with that model: kept while the scan runs, listed once it is found.
    saved = HiresSettings(scale=1.5, upscaler=str(model))
    window = make_window(fake_backend, settings=Settings(last_hires=saved.to_dict()))
    submitted = spy_submissions(window)
    box = window.params_pane.hires_box
    assert box.settings() == saved
    label = "4x-sharp — Compact ×4"
    qtbot.waitUntil(lambda: (label, str(model)) in combo_items(window), timeout=SCAN_TIMEOUT_MS)
    from ldstudio.core.models.upscalers import bundled_upscaler_path

    assert combo_items(window) == [
        ("lanczos", "lanczos"),
        ("latent", "latent"),
        ("ldstudio-compact-x2 — bundled, Compact ×2", str(bundled_upscaler_path(2))),
        ("ldstudio-compact-x4 — bundled, Compact ×4", str(bundled_upscaler_path(4))),
        (label, str(model)),
    ]  # the broken file is not offered
    assert box.upscaler_combo.currentText() == label and box.settings() == saved
    assert box.strength_spin.text() == f"{DEFAULT_TEXT} (0.5)"
    assert "an upscaler model 0.5" in box.strength_spin.toolTip()
    box.upscaler_combo.setCurrentIndex(box.upscaler_combo.findData("latent"))
    assert box.strength_spin.text() == f"{DEFAULT_TEXT} (0.6)"
    box.upscaler_combo.setCurrentIndex(box.upscaler_combo.findData(str(model)))
    # Rescanned (Models → Rescan): the list is the scan's, the choice is kept.
    window.spawn(window.refresh_models())
    qtbot.waitUntil(lambda: window.pending_tasks() == 0, timeout=SCAN_TIMEOUT_MS)
    assert box.upscaler() == str(model)
    outcome = generate(qtbot, window, "a red circle")
    assert isinstance(outcome, JobFinished)
    assert submitted[-1].hires == saved


def test_a_saved_hires_upscaler_not_found_is_kept_marked_and_refused(
    make_window, fake_backend: FakeBackend, qtbot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    gone = str(tmp_path / "models" / "4x-gone.safetensors")
    saved = HiresSettings(upscaler=gone, strength=0.4)
    window = make_window(fake_backend, settings=Settings(last_hires=saved.to_dict()))
    submitted = spy_submissions(window)
    qtbot.waitUntil(lambda: window.pending_tasks() == 0, timeout=SCAN_TIMEOUT_MS)  # scanned
    box = window.params_pane.hires_box
    assert box.isChecked() and box.settings() == saved  # not silently lanczos
    assert box.upscaler_combo.currentText() == f"⚠ 4x-gone {NOT_FOUND_TEXT}"
    tip = box.upscaler_combo.itemData(
        box.upscaler_combo.currentIndex(), Qt.ItemDataRole.ToolTipRole
    )
    assert gone in tip
    set_prompt(window, "a red circle")
    window.prompt_pane.generate_button.click()
    error = window.preview_pane.error_label
    qtbot.waitUntil(lambda: error.text().startswith("Cannot generate: hires upscaler"))
    assert "4x-gone" in error.text() and submitted == []

    # Reuse all of an image made with it marks it the same way.
    box.upscaler_combo.setCurrentIndex(box.upscaler_combo.findData("lanczos"))
    box.setChecked(False)
    made = generate(qtbot, window, "a blue square")
    assert isinstance(made, JobFinished)
    result = window.store.entry_for_path(made.records[0].path)
    assert result is not None
    other = str(tmp_path / "elsewhere" / "2x-other.safetensors")
    assert result.params is not None
    request = Request.txt2img(result.params, HiresSettings(upscaler=other))
    reused = entry_result(result)
    assert reused is not None
    window.library.restore(dataclasses.replace(reused, request=request))
    assert box.isChecked() and box.upscaler() == other
    assert box.upscaler_combo.currentText() == f"⚠ 2x-other {NOT_FOUND_TEXT}"
