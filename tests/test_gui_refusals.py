"""Nothing is silently changed or silently dropped (pytest-qt; issue 12, point 4)."""

from __future__ import annotations

import pytest
from gui_support import fake_backend, make_window, qt_loop, set_prompt
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT
from ldstudio.core.hires import HiresSettings
from ldstudio.core.params import field_problem
from ldstudio.core.paths import bundled_model_dir
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.params_pane import CUSTOM

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def type_into(qtbot, spin, text: str) -> None:
    spin.setFocus()
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), text)
    spin.interpretText()


def cli_error(capsys, *args: str) -> str:
    model = str(bundled_model_dir())
    assert main(["generate", "a prompt", *args, "--model", model]) == EXIT_BAD_INPUT
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "typed", "cli_args"),
    [
        ("width", "8192", ["--size", "8192x512"]),
        ("width", "13", ["--size", "13x512"]),
        ("height", "100", ["--size", "512x100"]),
        ("steps", "99999", ["--steps", "99999"]),
        ("steps", "0", ["--steps", "0"]),
        ("batch_count", "99999", ["--count", "99999"]),
        ("batch_size", "0", ["--batch", "0"]),
    ],
)
def test_typed_sizes_and_steps_stay_as_typed_and_are_refused_as_the_cli_does(
    make_window, fake_backend: FakeBackend, qtbot, capsys, field, typed, cli_args
) -> None:
    window = make_window(fake_backend)
    pane = window.params_pane
    pane.aspect_combo.setCurrentIndex(CUSTOM)
    spin = {
        "width": pane.width_spin,
        "height": pane.height_spin,
        "steps": pane.steps_spin,
        "batch_count": pane.batch_count_spin,
        "batch_size": pane.batch_size_spin,
    }[field]
    type_into(qtbot, spin, typed)
    pane.commit_typed()  # what Generate does first
    assert spin.value() == int(typed) and spin.cleanText() == typed  # not 816, 1000, 64, 1…

    message = field_problem(field, int(typed))
    assert message and message in cli_error(capsys, *cli_args)  # the CLI's own words
    assert pane.problem_label.isVisibleTo(window) and message in pane.problem_label.text()

    set_prompt(window, "a lighthouse")
    submitted: list[object] = []
    window.controller.queue_changed.connect(lambda: submitted.append(1))
    window.generate_action.trigger()
    assert submitted == [] and window.controller.jobs() == []
    assert window.preview_pane.error_label.text() == f"Cannot generate: {message}"
    assert spin.cleanText() == typed  # still what was typed, for the user to correct

    type_into(qtbot, spin, {"steps": "20", "width": "512", "height": "512"}.get(field, "1"))
    assert pane.problem_label.isHidden()


def test_the_allowed_ranges_are_shown_beside_the_fields(make_window, fake_backend) -> None:
    window = make_window(fake_backend)
    texts = [label.text() for label in window.params_pane.findChildren(QLabel, "allowed_range")]
    assert "1–150" in texts
    assert "multiples of 8 from 64 to 4096 px" in texts
    steps = window.params_pane.steps_spin
    steps.setValue(150)
    steps.stepBy(1)  # the arrows stay inside the range
    assert steps.value() == 150


HIRES_TEXT = (
    "a castle on a hill\n"
    "Negative prompt: ugly\n"
    "Steps: 12, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, Model hash: 0a1b2c, "
    "Model: ldstudio-shapes, Variation seed: 1234, Variation seed strength: 0.3, Clip skip: 2, "
    "Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, Denoising strength: 0.55"
)
NOT_APPLIED = ("Model hash 0a1b2c",)
# Applied since #17: the seed & prompt options group gets them.
PROMPT_APPLIED = ("Variation seed", "Clip skip")
# Applied since the hires fix (#16): the parameter pane's Hires fix group gets them.
HIRES_APPLIED = ("Hires upscale", "Hires steps", "Hires upscaler", "Denoising strength")
HIRES_READ = HiresSettings(scale=2.0, upscaler="latent", strength=0.55, steps=10)


def test_reusing_an_imported_image_lists_every_value_not_applied_and_finds_the_bundled_model(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path
) -> None:
    from library_support import png_with_text

    window = make_window(fake_backend)
    pane = window.params_pane
    pane.set_models([("ldstudio-shapes (bundled)", ""), ("other — /models", "/models/other")])
    pane.select_model("/models/other")
    png_with_text(tmp_path / "in" / "from-a1111.png", {"parameters": HIRES_TEXT})
    notes: list[str] = []
    window.library.status_message.connect(notes.append)
    window.library.import_folder(tmp_path / "in")
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 1, timeout=5000)
    window.library_model.entry_at(0)
    qtbot.waitUntil(lambda: window.library_model.entry_at(0) is not None)
    window.library_pane.select_row(0)
    window.library_pane.actions_by_name["reuse_params"].trigger()
    qtbot.waitUntil(lambda: window.prompt_pane.prompt() == "a castle on a hill")
    restored = next(n for n in notes if n.startswith("Parameters restored"))
    kept_in_view = pane.restore_note.text()  # stays under the form, unlike the status bar
    assert pane.restore_note.isVisibleTo(window)
    for value in NOT_APPLIED:
        assert value in restored and value in kept_in_view, value
    assert not any(key in restored for key in HIRES_APPLIED + PROMPT_APPLIED)
    assert pane.hires_box.settings() == HIRES_READ
    assert "choose it" not in restored  # "Model: ldstudio-shapes" is the bundled model
    params = window.current_params()
    assert (params.model, params.seed, params.steps) == ("", 42, 12)
    assert (params.clip_skip, params.variation_seed, params.variation_strength) == (2, 1234, 0.3)


def test_opening_a_file_lists_the_values_not_applied_before_asking(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path, monkeypatch
) -> None:
    from library_support import png_with_text
    from PySide6.QtWidgets import QMessageBox

    asked: list[str] = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a: asked.append(a[2]) or QMessageBox.StandardButton.Yes
    )
    window = make_window(fake_backend)
    notes: list[str] = []
    window.library.status_message.connect(notes.append)
    window.library.open_image(png_with_text(tmp_path / "a.png", {"parameters": HIRES_TEXT}))
    qtbot.waitUntil(lambda: window.prompt_pane.prompt() == "a castle on a hill")
    for value in NOT_APPLIED:
        assert value in asked[0] and value in notes[-1], value
    assert not any(key in notes[-1] for key in HIRES_APPLIED)
    assert window.params_pane.hires_box.settings() == HIRES_READ


def broken_diffusers_folder(root) -> object:
    """A folder the model manager reports unusable: model_index.json names a missing unet."""
    import json

    folder = root / "half-copied"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet"]})
    )
    return folder


def test_add_model_refuses_what_the_model_manager_reports_unusable(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path, monkeypatch
) -> None:
    from PySide6.QtWidgets import QFileDialog, QMessageBox
    from test_gui_models import checkpoint, lora

    from ldstudio.core.models import inspect_diffusers_folder

    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    window = make_window(fake_backend)
    pane = window.params_pane
    before = [pane.model_combo.itemData(i) for i in range(pane.model_combo.count())]

    broken = broken_diffusers_folder(tmp_path)
    reported = inspect_diffusers_folder(broken, tmp_path).error  # what the manager shows
    assert reported
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *a, **k: (str(broken / "model_index.json"), "")
    )
    pane.add_model_button.click()
    assert warned and reported in warned[-1]
    (tmp_path / "notes.txt").write_text("not a model")
    for refused in (lora(tmp_path / "style.safetensors"), tmp_path / "notes.txt"):
        assert window.add_model_folder(refused) is False
        assert str(refused.name) in warned[-1]
    assert [pane.model_combo.itemData(i) for i in range(pane.model_combo.count())] == before
    assert window.settings.model_folders == [] and pane.model_value() == ""

    # A single .safetensors checkpoint can be added and is chosen.
    model = checkpoint(tmp_path / "dreamy.safetensors")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(model), ""))
    pane.add_model_button.click()
    assert pane.model_value() == str(model.resolve())
    assert window.settings.model_folders == [str(model.resolve())]


def test_a_saved_model_that_is_unusable_is_marked_and_generate_refuses_it(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path
) -> None:
    from ldstudio.core.params import GenerationParams
    from ldstudio.core.settings import Settings

    broken = broken_diffusers_folder(tmp_path)
    value = str(broken.resolve())
    # As after a restart: added earlier (or broken since), and the last model used.
    settings = Settings(model_folders=[value])
    settings.last_params = GenerationParams(prompt="a fox", model=value).to_dict()
    window = make_window(fake_backend, settings)
    combo = window.params_pane.model_combo
    at = combo.findData(value)
    qtbot.waitUntil(lambda: "unusable" in combo.itemText(at), timeout=10_000)
    from ldstudio.core.models import inspect_diffusers_folder

    reported = inspect_diffusers_folder(broken, tmp_path).error  # what the manager shows
    assert reported in combo.itemData(at, Qt.ItemDataRole.ToolTipRole)
    assert not combo.model().item(at).isEnabled()  # listed, greyed out, not choosable
    assert window.params_pane.model_value() == value  # the saved choice is kept, marked
    window.generate_action.trigger()
    assert window.controller.jobs() == []
    error = window.preview_pane.error_label.text()
    assert error == f"Cannot generate: {reported}"


def test_quitting_with_queued_jobs_asks_and_keeps_them_for_the_next_start(
    make_window, fake_backend: FakeBackend, qtbot, monkeypatch, ldstudio_home
) -> None:
    from ldstudio.core.events import JobFinished
    from ldstudio.core.jobs import load_queue, saved_queue_file
    from ldstudio.qt import kept_queue

    fake_backend.hold_at_step = 1
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(2)
    for prompt in ("running", "second", "third"):
        set_prompt(window, prompt)
        window.generate_action.trigger()
    qtbot.waitUntil(lambda: window.controller.last_progress is not None)
    asked: list[int] = []
    answer = kept_queue.STAY
    monkeypatch.setattr(kept_queue, "ask_keep_queue", lambda _w, n: asked.append(n) or answer)

    assert window.close() is False  # Cancel: nothing happens, the queue is as it was
    assert asked == [2] and window.isVisible() and len(window.controller.jobs()) == 3
    assert not saved_queue_file().exists()

    answer = kept_queue.KEEP
    assert window.close() is True
    assert [r.params.prompt for r in load_queue()] == ["second", "third"]
    seeds = [r.params.seed for r in load_queue()]

    # The next start offers them; restored, they run as they were queued (same seeds).
    offered: list[int] = []
    monkeypatch.setattr(kept_queue, "ask_restore_queue", lambda _w, n: offered.append(n) or True)
    again = make_window(FakeBackend())
    ended: list[object] = []
    again.controller.job_ended.connect(ended.append)
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=10_000)
    assert offered == [2] and all(isinstance(e, JobFinished) for e in ended)
    assert [(r.params.prompt, r.seed) for e in ended for r in e.records] == list(
        zip(["second", "third"], seeds, strict=True)
    )
    assert not saved_queue_file().exists()  # queued again: kept anew only at the next quit


def test_kept_jobs_can_be_discarded_and_a_broken_file_is_kept_and_explained(
    make_window, qtbot, monkeypatch
) -> None:
    from ldstudio.core.jobs import save_queue, saved_queue_file
    from ldstudio.core.params import GenerationParams
    from ldstudio.qt import kept_queue

    save_queue([GenerationParams(prompt="old job", seed=3)])
    monkeypatch.setattr(kept_queue, "ask_restore_queue", lambda _w, _n: False)
    backend = FakeBackend()
    window = make_window(backend)
    qtbot.waitUntil(lambda: not saved_queue_file().exists(), timeout=5000)
    qtbot.wait(100)
    assert backend.jobs_run == [] and window.controller.jobs() == []

    saved_queue_file().write_text('{"format": 1, "jobs": [{"prompt": "x", "steps": 0}]}')
    window = make_window(FakeBackend())
    qtbot.waitUntil(lambda: "were not read" in window.preview_pane.error_label.text())
    assert "job 1: steps: 0 is out of range" in window.preview_pane.error_label.text()
    assert saved_queue_file().read_text().startswith('{"format": 1')  # not lost


def test_a_field_that_takes_any_typed_value_is_no_wider_than_its_range_needs(qtbot) -> None:
    from PySide6.QtWidgets import QSpinBox

    from ldstudio.qt.params_pane import CheckedSpinBox

    checked, plain = CheckedSpinBox("width", (64, 4096), 8), QSpinBox()
    plain.setRange(64, 4096)
    for spin in (checked, plain):
        spin.setSuffix(" px")
        qtbot.addWidget(spin)
    # Within a pixel or two (Qt rounds its text margins): not the ±999,999,999 width.
    assert abs(checked.sizeHint().width() - plain.sizeHint().width()) <= 2
    assert abs(checked.minimumSizeHint().width() - plain.minimumSizeHint().width()) <= 2
