"""The main window on the fake backend: generate, previews, cancel, queue, failures, gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gui_support import fake_backend, generate, make_window, output_pngs, qt_loop, set_prompt
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from ldstudio.core.events import JobCancelled, JobFailed, JobFinished, StepProgress
from ldstudio.core.imagefiles import FolderSink
from ldstudio.core.library import LibraryFilter
from ldstudio.core.metadata import read_ldstudio_params
from ldstudio.core.params import GenerationParams
from ldstudio.engine.fake import FakeBackend

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def test_generate_previews_in_order_then_image_in_gallery_and_on_disk(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(6)
    steps: list[StepProgress] = []
    window.controller.step_progressed.connect(steps.append)

    outcome = generate(qtbot, window, "a red circle\non a blue background")

    assert isinstance(outcome, JobFinished)
    assert [e.step for e in steps] == [1, 2, 3, 4, 5, 6]
    reds = [int(e.preview[0, 0, 0]) for e in steps if e.preview is not None]
    assert reds == sorted(reds) and len(set(reds)) == 6  # each frame is its own, in order
    assert steps[0].preview.shape == (8, 8, 3)  # latent resolution of a 64×64 image

    (path,) = output_pngs(ldstudio_home)
    assert outcome.records[0].path == path
    params = read_ldstudio_params(path)
    assert params.prompt == "a red circle\non a blue background"  # newlines survive
    assert params.steps == 6 and params.width == params.height == 64
    assert isinstance(params.seed, int)

    entry = window.store.entry_for_path(path)
    assert entry is not None and entry.prompt == params.prompt
    qtbot.waitUntil(lambda: window.library_model.has_thumbnail(entry.id))
    assert window.library_model.rowCount() == 1
    assert window.library_model.entry_at(0).path == path
    # The final image replaces the preview; the timeline holds all six steps plus the final.
    qtbot.waitUntil(lambda: window.preview_pane.canvas.image.width() == 64)
    slider = window.preview_pane.timeline_slider
    assert slider.maximum() == 6 and slider.value() == 6  # the final image is the last position
    slider.setValue(0)  # scrub back to the first step's preview
    assert window.preview_pane.canvas.image.width() == 8
    assert window.preview_pane.canvas.image.pixelColor(0, 0).red() == reds[0]
    assert window.preview_pane.timeline_label.text() == "Step 1 of 6"  # issue 12: "of N"
    slider.setValue(6)
    assert window.preview_pane.canvas.image.width() == 64
    assert 1 <= window.preview_pane.displayed <= window.preview_pane.produced == 6
    assert window.preview_pane.progress.format().startswith("Done: 1 image")
    assert window.device_label.text() == "CPU · fp32"
    assert window.params_pane.params("x", "").seed == "random"  # random mode stays random


def test_cancel_mid_job_with_escape(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    fake_backend.hold_at_step = 3
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(10)
    set_prompt(window, "a green square")
    with qtbot.waitSignal(window.controller.job_ended) as ended:
        window.prompt_pane.generate_button.click()
        qtbot.waitUntil(
            lambda: (
                window.controller.last_progress is not None
                and window.controller.last_progress.step == 3
            )
        )
        assert window.prompt_pane.cancel_button.isEnabled()
        qtbot.keyClick(window.prompt_pane.prompt_edit, Qt.Key.Key_Escape)
    outcome = ended.args[0]
    assert isinstance(outcome, JobCancelled)
    assert outcome.step == 3
    assert output_pngs(ldstudio_home) == []
    qtbot.waitUntil(lambda: "Cancelled after step 3" in window.preview_pane.progress.format())
    assert not window.prompt_pane.cancel_button.isEnabled()
    assert window.library_model.rowCount() == 0


def test_queue_of_three_with_the_middle_one_cancelled(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    fake_backend.hold_at_step = 1
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(3)
    ended: list[object] = []
    window.controller.job_ended.connect(ended.append)
    for prompt in ("first", "second", "third"):
        set_prompt(window, prompt)
        window.prompt_pane.generate_button.click()
    qtbot.waitUntil(lambda: window.queue_pane.list.count() == 3)
    assert window.queue_pane.title.text() == "&Queue — 3 jobs"
    first, second, third = (j.id for j in window.controller.jobs())

    window.queue_pane.list.setCurrentRow(1)  # the middle job, still waiting
    window.queue_pane.cancel_button.click()
    qtbot.waitUntil(lambda: window.queue_pane.list.count() == 2)
    fake_backend.hold_at_step = None
    fake_backend.release()
    qtbot.waitUntil(lambda: len(ended) == 3, timeout=10_000)

    by_id = {e.job_id: e for e in ended}
    assert isinstance(by_id[first], JobFinished)
    assert isinstance(by_id[second], JobCancelled)
    assert isinstance(by_id[third], JobFinished)
    assert fake_backend.jobs_run == [first, third]  # the cancelled one never reached the engine
    prompts = sorted(read_ldstudio_params(p).prompt for p in output_pngs(ldstudio_home))
    assert prompts == ["first", "third"]
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 2)
    qtbot.waitUntil(lambda: window.library_model.entry_at(1) is not None)
    assert [window.library_model.entry_at(r).prompt for r in (0, 1)] == ["third", "first"]
    assert window.queue_pane.list.count() == 0


def test_cancel_all_empties_the_queue(make_window, fake_backend: FakeBackend, qtbot) -> None:
    fake_backend.hold_at_step = 1
    window = make_window(fake_backend)
    ended: list[object] = []
    window.controller.job_ended.connect(ended.append)
    for prompt in ("one", "two"):
        set_prompt(window, prompt)
        window.prompt_pane.generate_button.click()
    qtbot.waitUntil(lambda: window.controller.last_progress is not None)
    window.queue_pane.cancel_all_button.click()
    qtbot.waitUntil(lambda: len(ended) == 2)
    assert all(isinstance(e, JobCancelled) for e in ended)
    assert window.controller.jobs() == []


def test_failure_is_shown_and_the_next_job_still_runs(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    window = make_window(fake_backend)
    message = "Out of memory on CUDA while generating 1024×1024. Try a smaller size."
    fake_backend.fail_next(message)
    outcome = generate(qtbot, window, "too big")
    assert isinstance(outcome, JobFailed)
    assert window.preview_pane.error_bar.isVisibleTo(window)
    assert window.preview_pane.error_label.text() == message
    assert "scripted failure" in window.preview_pane.error_label.toolTip()

    outcome = generate(qtbot, window, "small")
    assert isinstance(outcome, JobFinished)
    assert not window.preview_pane.error_bar.isVisibleTo(window)  # cleared by the new job
    assert [read_ldstudio_params(p).prompt for p in output_pngs(ldstudio_home)] == ["small"]


def test_backend_that_cannot_start_is_explained(make_window, qtbot) -> None:
    def broken() -> FakeBackend:
        raise RuntimeError("torch is not installed")

    window = make_window(broken)
    qtbot.waitUntil(lambda: window.preview_pane.error_bar.isVisibleTo(window))
    assert "The engine could not start" in window.preview_pane.error_label.text()
    assert "torch is not installed" in window.preview_pane.error_label.text()
    outcome = generate(qtbot, window, "anything")
    assert isinstance(outcome, JobFailed) and "not running" in outcome.message


def test_invalid_and_empty_input_is_explained_not_raised(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    set_prompt(window, "   ")
    window.prompt_pane.generate_button.click()
    assert "prompt is empty" in window.preview_pane.error_label.text()
    assert window.controller.jobs() == []
    assert fake_backend.jobs_run == []


def test_close_during_a_job_cancels_it_and_stops_the_engine(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    fake_backend.hold_at_step = 2
    window = make_window(fake_backend)
    set_prompt(window, "closing soon")
    window.prompt_pane.generate_button.click()
    qtbot.waitUntil(lambda: window.controller.last_progress is not None)
    window.close()
    assert not window.controller.service.running_thread
    assert fake_backend.closed


def test_library_adopts_images_found_in_its_folder(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path
) -> None:
    folder = ldstudio_home / "library" / "images" / "2026-01"
    sink = FolderSink(folder)
    params = GenerationParams(prompt="from yesterday", seed=5, width=64, height=64)
    sink.save(
        Image.new("RGB", (64, 64), "purple"),
        params,
        index=0,
        model_name="m",
        device="cpu",
        dtype="fp32",
        seconds=1.0,
    )
    Image.new("RGB", (32, 32), "white").save(folder / "foreign.png")
    window = make_window(fake_backend)
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 2)
    foreign = window.store.entry_for_path(folder / "foreign.png")
    assert foreign is not None and foreign.params is None
    (ours,) = [p for p in folder.glob("*.png") if p.name != "foreign.png"]
    assert window.store.entry_for_path(ours).params == params


def test_gallery_context_actions(
    make_window, fake_backend: FakeBackend, qtbot, ldstudio_home: Path, tmp_path, monkeypatch
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(4)
    outcome = generate(qtbot, window, "keep me")
    assert isinstance(outcome, JobFinished)
    (record,) = outcome.records
    # The newest image is selected once the library has counted it.
    qtbot.waitUntil(lambda: window.library_pane.current_entry() is not None)
    entry = window.library_pane.current_entry()
    assert entry.path == record.path
    actions = window.library_pane.actions_by_name

    # Reuse parameters and seed.
    window.params_pane.steps_spin.setValue(30)
    set_prompt(window, "something else")
    actions["reuse_params"].trigger()
    qtbot.waitUntil(lambda: window.prompt_pane.prompt() == "keep me")
    reused = window.current_params()
    assert reused.steps == 4 and reused.seed == record.seed
    window.params_pane.seed_mode.setCurrentIndex(0)
    actions["reuse_seed"].trigger()
    assert window.current_params().seed == record.seed

    # Save as: PNG keeps the metadata; JPEG without metadata is converted and stripped.
    library = window.library.actions
    with qtbot.waitSignal(library.message):
        library.export(entry, tmp_path / "copy.png", keep_metadata=True)
    assert read_ldstudio_params(tmp_path / "copy.png").prompt == "keep me"
    with qtbot.waitSignal(library.message):
        library.export(entry, tmp_path / "copy.jpg", keep_metadata=False)
    assert Image.open(tmp_path / "copy.jpg").format == "JPEG"
    assert b"keep me" not in (tmp_path / "copy.jpg").read_bytes()

    # Export the denoising as an animated WebP: 4 previews + the final image.
    task = window.spawn(window.export_animation(entry, tmp_path / "steps.webp"))
    qtbot.waitUntil(task.done, timeout=10_000)
    with Image.open(tmp_path / "steps.webp") as animation:
        assert animation.is_animated and animation.n_frames == 5
    # The dialog proposes a place outside the library (a file there would be adopted as an
    # image), and a bare name takes the type picked in the dialog.
    offered: list[str] = []

    def save_dialog(_parent, _title, proposed, _filters):
        offered.append(proposed)
        return str(tmp_path / "bare"), "GIF (*.gif)"

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    window.export_animation_dialog()
    qtbot.waitUntil(lambda: (tmp_path / "bare.gif").is_file(), timeout=10_000)
    assert not Path(offered[0]).is_relative_to(ldstudio_home / "library")

    # Delete moves the image to the library's trash; restore brings it back.
    actions["delete"].trigger()
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 0)
    assert not record.path.exists()
    trashed = window.store.get(entry.id)
    assert trashed.trashed_at is not None
    assert read_ldstudio_params(trashed.path).prompt == "keep me"  # recoverable, metadata intact
    library.restore(trashed)
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 1)
    assert record.path.exists()


def test_batch_images_share_their_pass_timeline(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(2)
    window.params_pane.batch_size_spin.setValue(2)
    window.params_pane.batch_count_spin.setValue(2)
    outcome = generate(qtbot, window, "four")
    assert isinstance(outcome, JobFinished) and len(outcome.records) == 4
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 4)
    seeds = [r.seed for r in outcome.records]
    assert seeds == [seeds[0] + i for i in range(4)]
    qtbot.waitUntil(lambda: window.library_model.entry_at(0) is not None)
    newest = window.library_model.entry_at(0)
    assert window.session_images[newest.path] == (outcome.job_id, 1)
    timeline = window.timelines.get(outcome.job_id, 1)
    assert timeline is not None and [s for s, _ in timeline.frames] == [1, 2]
    assert timeline.frames[0][1].shape == (8, 16, 3)  # two images tiled side by side


def test_preview_frames_are_coalesced(make_window, fake_backend: FakeBackend, qtbot) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(150)
    outcome = generate(qtbot, window, "fast engine")
    assert isinstance(outcome, JobFinished)
    pane = window.preview_pane
    assert pane.produced == 150
    # The fake runs 150 steps in a few ms: far fewer repaints than frames.
    assert 1 <= pane.displayed < pane.produced


def test_preview_image_is_scaled_smoothly(qtbot) -> None:
    from ldstudio.qt.images import array_to_qimage

    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    frame[:, 4:] = 255
    image = array_to_qimage(frame)
    assert (image.width(), image.height()) == (8, 8)
    assert image.pixelColor(5, 0).red() == 255 and image.pixelColor(3, 0).red() == 0


def test_ctrl_enter_in_the_prompt_generates(make_window, fake_backend: FakeBackend, qtbot) -> None:
    window = make_window(fake_backend)
    set_prompt(window, "by keyboard")
    window.activateWindow()
    window.prompt_pane.prompt_edit.setFocus()
    with qtbot.waitSignal(window.controller.job_ended) as ended:
        qtbot.keyClick(
            window.prompt_pane.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier
        )
    assert isinstance(ended.args[0], JobFinished)
    assert window.prompt_pane.prompt() == "by keyboard"  # no newline was typed into the prompt


def test_gallery_keyboard_copy_and_delete(
    make_window, fake_backend: FakeBackend, qtbot, monkeypatch
) -> None:
    from PySide6.QtGui import QGuiApplication

    window = make_window(fake_backend)
    outcome = generate(qtbot, window, "keyboard only")
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 1)
    view = window.library_pane.view
    # The shortcuts act on the focused gallery: focus needs an active window, which a busy
    # machine may grant late (a key sent before it went nowhere: the old flake).
    window.activateWindow()
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=20_000)
    window.library_pane.select_row(0)
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not QGuiApplication.clipboard().image().isNull(), timeout=20_000)
    assert QGuiApplication.clipboard().image().width() == 64

    # Delete needs no question: the image goes to the library's trash, restorable.
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 0)
    assert not outcome.records[0].path.exists()
    assert window.store.count(LibraryFilter(trashed=True)) == 1


def test_a_library_failure_clears_once_a_later_library_action_succeeds(
    make_window, fake_backend: FakeBackend
) -> None:
    window = make_window(fake_backend)
    bar, library = window.preview_pane.error_bar, window.library
    library.error.emit("Could not tag a.png: tag too long")
    assert bar.isVisible()
    library.status_message.emit("Saved 2 images to /tmp/x")
    assert not bar.isVisible()
    # A generation failure shown since is not the library's to clear.
    library.error.emit("Could not tag a.png: tag too long")
    window.preview_pane.show_error("Generation failed: out of memory")
    library.status_message.emit("Image copied to the clipboard")
    assert bar.isVisible() and "out of memory" in window.preview_pane.error_label.text()
