"""Feedback a user can trust (issue 12, point 5): cancel, failures, layout, shortcuts, library."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop, set_prompt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QTableWidget

from ldstudio.core.events import JobCancelled, JobFailed, JobFinished
from ldstudio.core.settings import Settings
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.main_window import MainWindow
from ldstudio.qt.preview_view import CANCELLING_TEXT

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def wait_for_step(qtbot, window: MainWindow, step: int) -> None:
    qtbot.waitUntil(
        lambda: (
            window.controller.last_progress is not None
            and window.controller.last_progress.step == step
        )
    )


# -- cancel and failure ----------------------------------------------------------------------


def test_cancel_says_so_at_once_and_cannot_be_pressed_twice(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    fake_backend.hold_at_step = 3
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(10)
    set_prompt(window, "a slow step")
    window.prompt_pane.generate_button.click()
    wait_for_step(qtbot, window, 3)
    window.preview_pane.flush()
    assert window.preview_pane.progress.format().startswith("Step 3/10")
    cancel = window.prompt_pane.cancel_button
    assert cancel.isEnabled()

    with qtbot.waitSignal(window.controller.job_ended) as ended:
        cancel.click()
        # Before the engine has answered (its events are queued, none has run yet): the bar
        # says what happens, and Cancel is not offered again.
        assert window.preview_pane.progress.format() == CANCELLING_TEXT
        assert not cancel.isEnabled()
        assert "· cancelling ·" in window.queue_pane.list.item(0).text()
        assert "stops after the current step" in window.statusBar().currentMessage()
        window.preview_pane.flush()  # a repaint meanwhile keeps the message
        assert window.preview_pane.progress.format() == CANCELLING_TEXT
    assert isinstance(ended.args[0], JobCancelled)
    assert window.preview_pane.progress.format() == "Cancelled after step 3 of 10"


def test_cancel_while_a_job_waits_for_the_engine_cancels_that_job(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    fake_backend.hold_at_step = 1
    window = make_window(fake_backend)
    for prompt in ("running", "waiting"):
        set_prompt(window, prompt)
        window.prompt_pane.generate_button.click()
    wait_for_step(qtbot, window, 1)
    running, waiting = window.controller.jobs()
    window.prompt_pane.cancel_button.click()
    assert window.controller.cancelling(running.id)
    # The running job is cancelling; Esc again must not fall on the waiting one, even when the
    # engine has already taken it (its final event for the first one not yet handled here).
    assert not window.cancel_action.isEnabled()
    window.controller.cancel_running()
    assert not waiting.cancel_token.cancelled
    qtbot.waitUntil(lambda: fake_backend.jobs_run == [running.id, waiting.id])
    qtbot.waitUntil(lambda: window.prompt_pane.cancel_button.isEnabled())  # the next one runs
    fake_backend.hold_at_step = None
    with qtbot.waitSignal(window.controller.job_ended):
        fake_backend.release()


def test_cancel_all_leaves_no_half_denoised_preview_or_recording_timeline(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(4)
    assert isinstance(generate(qtbot, window, "kept"), JobFinished)
    pane = window.preview_pane
    qtbot.waitUntil(lambda: pane.canvas.image is not None and pane.canvas.image.width() == 64)
    shown_caption = pane.caption.toolTip()

    fake_backend.hold_at_step = 2
    ended: list[object] = []
    window.controller.job_ended.connect(ended.append)
    for prompt in ("one", "two"):
        set_prompt(window, prompt)
        window.prompt_pane.generate_button.click()
    wait_for_step(qtbot, window, 2)
    qtbot.waitUntil(lambda: pane.canvas.image.width() == 8)  # the preview of step 2
    assert pane.timeline_label.text() == "Timeline: recording…"
    window.queue_pane.cancel_all_button.click()
    assert pane.progress.format() == CANCELLING_TEXT
    qtbot.waitUntil(lambda: len(ended) == 2)
    assert all(isinstance(e, JobCancelled) for e in ended)
    assert pane.timeline_label.text() == "No timeline"
    assert not pane.timeline_slider.isEnabled()
    # The image shown before the jobs is back, not the 8×8 preview of step 2.
    assert pane.canvas.image.width() == 64
    assert pane.caption.toolTip() == shown_caption
    assert pane.progress.format().startswith("Cancelled after step 2")
    assert not window.prompt_pane.cancel_button.isEnabled()


def test_a_failed_job_does_not_leave_a_full_bar(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(1)  # fails after its last step: the bar was full
    fake_backend.fail_next("The model could not decode the image.")
    outcome = generate(qtbot, window, "doomed")
    assert isinstance(outcome, JobFailed)
    bar = window.preview_pane.progress
    assert bar.format().startswith("Failed")
    assert bar.value() == bar.minimum() < bar.maximum()
    assert window.preview_pane.timeline_label.text() == "No timeline"
    assert window.preview_pane.canvas.image is None  # no half-made preview left either


def test_timeline_says_which_step_of_how_many(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(15)
    assert isinstance(generate(qtbot, window, "fifteen steps"), JobFinished)
    slider = window.preview_pane.timeline_slider
    qtbot.waitUntil(lambda: slider.maximum() == 15)
    slider.setValue(4)
    assert window.preview_pane.timeline_label.text() == "Step 5 of 15"
    slider.setValue(15)
    assert window.preview_pane.timeline_label.text() == "Final image"


# -- layout --------------------------------------------------------------------------------


def show_newest_details(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.library_pane.current_entry() is not None)
    entry = window.library_pane.current_entry()
    window.library_pane.entry_activated.emit(entry)  # double-click / Enter on it
    assert window.left_tabs.currentIndex() == window.details_tab
    qtbot.waitUntil(lambda: "Sampler" in window.details_view.parameters_text())


def image_area(window: MainWindow) -> tuple[int, int]:
    viewport = window.preview_pane.scroll_area.viewport()
    return viewport.width(), viewport.height()


@pytest.mark.parametrize("size", [(1280, 800), (1366, 768)])
def test_laptop_screens_show_a_large_image_a_long_timeline_and_readable_parameters(
    make_window, fake_backend: FakeBackend, qtbot, size: tuple[int, int]
) -> None:
    window = make_window(fake_backend)
    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size)
    window.params_pane.steps_spin.setValue(12)
    assert isinstance(generate(qtbot, window, "a red star on a blue background"), JobFinished)
    qtbot.waitUntil(lambda: window.preview_pane.timeline_slider.isEnabled())

    width, height = image_area(window)
    assert width >= 480 and height >= 480, (width, height)
    shown = window.preview_pane.canvas.target_rect()
    assert min(shown.width(), shown.height()) >= 480  # the 64×64 image itself, fitted
    assert window.preview_pane.timeline_slider.width() >= 300

    show_newest_details(qtbot, window)
    params = window.details_view.params_view
    qtbot.waitUntil(lambda: params.isVisible())
    # Every recorded parameter is on screen at once: nothing to scroll, in a tall box.
    assert params.verticalScrollBar().maximum() == 0
    assert params.height() >= 300
    assert "Prompt" in params.toPlainText() and "File" in params.toPlainText()


def test_a_1024_window_stays_usable(make_window, fake_backend: FakeBackend, qtbot) -> None:
    window = make_window(fake_backend)
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: window.width() == 1024)
    window.fit_columns(use_defaults=True)  # what the first show does for a 1024 px window
    qtbot.waitUntil(lambda: image_area(window)[0] >= 360)
    assert min(image_area(window)) >= 360
    assert window.preview_pane.timeline_slider.width() >= 200
    left, _, right = window.main_splitter.sizes()
    assert left >= 300 and right >= 240  # the form and a column of thumbnails still fit


def test_a_layout_saved_with_wide_side_columns_gives_way_to_the_image(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    first = make_window(fake_backend)
    first.main_splitter.setSizes([560, 200, 500])
    state = bytes(first.main_splitter.saveState().toBase64().data()).decode("ascii")
    first.close()

    window = make_window(FakeBackend(), settings=Settings(splitters={"main": state}))
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.main_splitter.sizes()[1] >= 480)
    assert min(image_area(window)) >= 480
    assert window.preview_pane.timeline_slider.width() >= 300


# -- shortcuts -----------------------------------------------------------------------------


def action_for(window: MainWindow, keys: str) -> QAction:
    return next(a for a in window.findChildren(QAction) if a.shortcut() == QKeySequence(keys))


def test_f1_lists_every_shortcut_the_window_has(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    action_for(window, "F1").trigger()
    dialog = window.shortcuts_dialog
    assert dialog.isVisible()
    table = dialog.findChild(QTableWidget, "shortcuts")
    rows = [
        tuple(table.item(r, c).text() for c in range(table.columnCount()))
        for r in range(table.rowCount())
    ]
    listed = {keys for keys, _what, _where in rows}
    native = QKeySequence.SequenceFormat.NativeText
    registered: list[str] = []
    for action in window.findChildren(QAction):
        registered += [k.toString(native) for k in action.shortcuts() if not k.isEmpty()]
    for shortcut in window.findChildren(QShortcut):
        keys = shortcut.keys()
        registered += [k.toString(native) for k in keys if not k.isEmpty()]
    assert len(registered) >= 25
    for keys in registered:
        assert any(keys in row_keys.split(", ") for row_keys in listed), keys
    assert all(what and where for _keys, what, where in rows)  # each says what and where
    by_keys = {keys: (what, where) for keys, what, where in rows}
    assert by_keys["Ctrl+Shift+M"] == ("Model manager…", "Anywhere")
    assert by_keys["Ctrl+Q"] == ("Quit", "Anywhere")
    assert by_keys["Ctrl+Up"] == ("Previous recent prompt", "In the prompt")
    assert by_keys["Del"][1] in ("In the library", "In the queue")
    assert {where for _k, _w, where in rows} >= {"In the library", "In the queue"}


def test_focus_prompt_shows_the_generate_tab(make_window, fake_backend: FakeBackend, qtbot) -> None:
    window = make_window(fake_backend)
    window.show_details()
    action_for(window, "Ctrl+L").trigger()
    assert window.left_tabs.currentIndex() == window.generate_tab
    action_for(window, "Ctrl+Shift+I").trigger()
    assert window.left_tabs.currentIndex() == window.details_tab


# -- model manager -------------------------------------------------------------------------


def test_model_manager_lists_the_bundled_model_and_closes(
    make_window, fake_backend: FakeBackend, qtbot, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    window = make_window(fake_backend)
    manager = window.open_model_manager()
    qtbot.waitUntil(lambda: not manager.scanning, timeout=20_000)
    assert manager.progress.text().startswith("The bundled model and 0 model files")
    first = manager.table_model.entries[0]
    assert first.path == window.bundled_model
    assert first.loadable
    name = manager.table_model.data(manager.table_model.index(0, 0))
    assert name == f"{window.bundled_model.name}  (bundled)"
    # Using it selects the picker's bundled entry; it is not listed a second time.
    window.params_pane.select_model("/elsewhere")
    manager.select_path(first.path)
    manager.use_button.click()
    combo = window.params_pane.model_combo
    assert window.params_pane.model_value() == ""
    assert [combo.itemData(i) for i in range(combo.count())].count("") == 1
    assert str(window.bundled_model) not in [combo.itemData(i) for i in range(combo.count())]

    assert manager.close_button.text().replace("&", "") == "Close"
    manager.close_button.click()
    assert not manager.isVisible()


class _TwoStages(FakeBackend):
    """A job of two stages, as a hires fix will be: the fake's denoising, then an "upscale"."""

    def execute(self, request, cancel):  # type: ignore[no-untyped-def]
        from ldstudio.core.backend import StageStarted, Step

        for event in super().execute(request, cancel):
            if isinstance(event, StageStarted):
                event = StageStarted(event.params, event.total_steps, event.image_count, 0, 2)
            yield event
        yield StageStarted(request.params.resolved(), 3, 1, index=1, count=2, name="upscale")
        for step in (1, 2, 3):
            yield Step(0, step, 3, 0.1 * step, 10.0, stage=1)
            if step == 2:
                while not self._release.wait(0.005):
                    cancel.raise_if_cancelled(step)


def test_a_job_of_several_stages_says_which_stage_runs(make_window, qtbot) -> None:
    backend = _TwoStages()
    window = make_window(backend)
    window.params_pane.steps_spin.setValue(2)
    stages: list[object] = []
    window.controller.stage_started.connect(stages.append)
    set_prompt(window, "two passes")
    window.prompt_pane.generate_button.click()
    qtbot.waitUntil(
        lambda: (
            window.controller.last_progress is not None
            and window.controller.last_progress.stage == 1
            and window.controller.last_progress.step == 2
        )
    )
    window.preview_pane.flush()
    assert window.preview_pane.progress.format().startswith("Stage 2/2 (upscale) · Step 2/3")
    assert [(s.index, s.count, s.name) for s in stages] == [(0, 2, "txt2img"), (1, 2, "upscale")]
    with qtbot.waitSignal(window.controller.job_ended) as ended:
        backend.release()
    assert isinstance(ended.args[0], JobFinished)
