"""Generate → X/Y/Z plot… in the window: the dialog refuses what `parse_axis` and `expand`
refuse (with their words, under the row), counts the cells live and refuses a grid too large;
a run queues one job per cell and saves the grid linked to its cells in the library; a cell
that fails or is cancelled leaves its saved cells and no grid, and says so (the fake backend)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gui_support import fake_backend, make_window, qt_loop, set_prompt, spy_submissions

from ldstudio.core.events import JobCancelled, JobFailed, JobFinished
from ldstudio.core.grid import MAX_CELLS, AxisError, parse_axis
from ldstudio.core.jobs import CancelToken
from ldstudio.core.library.grids import cell_position, grid_cells, grid_of
from ldstudio.core.params import SCHEDULERS, GenerationParams
from ldstudio.core.request import Request
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.grid_dialog import NO_AXIS, AxisChoice, GridChoice, GridDialog, join_values
from ldstudio.qt.main_window import MainWindow
from ldstudio.qt.window.grid_controller import GridResult

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name

TIMEOUT_MS = 20_000


def dialog_for(qtbot, prompt: str = "a red cat", **kwargs) -> GridDialog:  # type: ignore[no-untyped-def]
    base = Request.txt2img(GenerationParams(prompt=prompt, steps=2))
    dialog = GridDialog(base, **kwargs)
    qtbot.addWidget(dialog)
    return dialog


def choose(dialog: GridDialog, axis: int, key: str, text: str) -> None:
    row = dialog.rows[axis]
    row.type_combo.setCurrentIndex(row.type_combo.findData(key))
    row.values_edit.setText(text)


def refusal(spec: str, option: str) -> str:
    with pytest.raises(AxisError) as refused:
        parse_axis(spec, option)
    return str(refused.value)


# -- the dialog ------------------------------------------------------------------------------


def test_the_dialog_counts_cells_and_shows_each_rows_error_under_it(qtbot) -> None:
    dialog = dialog_for(qtbot)
    x, y, z = dialog.rows
    # Opened on CFG with no values: nothing is wrong yet, but there is nothing to run.
    assert x.key() == "cfg" and y.key() == "" and z.key() == ""
    assert x.values_edit.placeholderText() == "e.g. 3,5,7 or 1-10 (+2) or 3-12 [4]"
    assert dialog.count_label.text() == "X: type its values to vary"
    assert not dialog.run_button.isEnabled() and dialog.problem() is None

    x.values_edit.setText("3,5,7")
    assert dialog.count_label.text() == "3 cells (3 × 1 × 1)"
    assert dialog.run_button.isEnabled()

    # A value that is not a number: parse_axis's words, under the X row; Run is refused.
    x.values_edit.setText("3,abc")
    assert x.error_label.text() == refusal("cfg=3,abc", "X")
    assert "'abc' is not a number; allowed:" in x.error_label.text()
    assert x.error_label.isVisibleTo(dialog) and not dialog.run_button.isEnabled()
    x.values_edit.setText("1-10 (+2)")
    assert x.error_label.text() == "" and dialog.count_label.text() == "5 cells (5 × 1 × 1)"

    choose(dialog, 1, "sampler", "Euler a, Nope")
    assert y.values_edit.placeholderText() == "e.g. Euler a, DPM++ 2M"
    assert y.error_label.text() == refusal("sampler=Euler a, Nope", "Y")
    assert "sampler 'Nope' is not supported; allowed: Euler, Euler a" in y.error_label.text()
    assert not dialog.run_button.isEnabled()
    y.values_edit.setText("Euler a, DPM++ 2M")
    assert dialog.count_label.text() == "10 cells (5 × 2 × 1)" and dialog.run_button.isEnabled()

    # Z is only with Y; the Z layout only with Z.
    assert not dialog.z_layout_combo.isEnabled()
    choose(dialog, 2, "seed", "1,2")
    assert dialog.z_layout_combo.isEnabled()
    assert dialog.count_label.text() == "20 cells (5 × 2 × 2)"
    y.type_combo.setCurrentIndex(y.type_combo.findText(NO_AXIS))
    assert z.error_label.text().startswith("Z: only with a Y axis (the grid's rows) as well")
    assert not dialog.run_button.isEnabled()


def test_the_dialog_refuses_what_the_request_cannot_take_and_too_many_cells(qtbot) -> None:
    dialog = dialog_for(qtbot, prompt="a red cat")
    x, y, _z = dialog.rows
    # Prompt S/R's first value must be in the prompt: said under its row before anything runs.
    choose(dialog, 0, "prompt", "dog, fox")
    assert "Prompt S/R did not find 'dog' in the prompt" in x.error_label.text()
    assert not dialog.run_button.isEnabled()
    choose(dialog, 0, "prompt", "cat, dog, fox")
    assert x.error_label.text() == "" and dialog.run_button.isEnabled()
    # A strength axis on a txt2img job without a hires fix has nothing to change.
    choose(dialog, 1, "strength", "0.3,0.6")
    assert "a strength axis needs an img2img or inpaint request" in y.error_label.text()
    # The same setting on two axes would fight.
    choose(dialog, 1, "prompt", "cat, owl")
    choose(dialog, 0, "steps", "2,3")
    choose(dialog, 1, "steps", "4,5")
    assert "the same axis as X" in y.error_label.text()

    choose(dialog, 0, "seed", "1-1000")
    choose(dialog, 1, "steps", "1-11")
    assert dialog.count_label.text() == "11000 cells (1000 × 11 × 1)"
    assert dialog.error_text() == f"the grid has 11000 cells; allowed: at most {MAX_CELLS}"
    assert not dialog.run_button.isEnabled()


def test_fill_in_all_offers_every_sampler_and_the_known_models(qtbot) -> None:
    dialog = dialog_for(qtbot, model_names=["alpha", "with, comma"])
    x = dialog.x_row
    choose(dialog, 0, "steps", "")
    assert not x.fill_button.isVisibleTo(dialog)
    choose(dialog, 0, "sampler", "")
    assert x.fill_button.isVisibleTo(dialog) and x.fill_button.isEnabled()
    x.fill_button.click()
    assert parse_axis(f"sampler={x.text()}").values == SCHEDULERS
    assert dialog.count_label.text() == f"{len(SCHEDULERS)} cells ({len(SCHEDULERS)} × 1 × 1)"
    choose(dialog, 0, "model", "")
    x.fill_button.click()
    assert x.text() == 'alpha, "with, comma"'
    assert parse_axis(f"model={x.text()}").values == ("alpha", "with, comma")
    assert join_values(['say "hi"']) == '"say ""hi"""'
    # No model found: nothing to fill in, and the button says why.
    empty = dialog_for(qtbot)
    choose(empty, 0, "model", "")
    assert not empty.x_row.fill_button.isEnabled()
    assert "No model was found" in empty.x_row.fill_button.toolTip()


def test_a_lora_axis_names_its_lora_when_the_request_has_several(qtbot) -> None:
    params = GenerationParams(prompt="cat", loras=(("/l/ink.safetensors", 1.0), ("/l/oil.pt", 0.5)))
    dialog = GridDialog(Request.txt2img(params))
    qtbot.addWidget(dialog)
    x = dialog.x_row
    choose(dialog, 0, "lora", "0.2,0.8")
    assert x.target_combo.isVisibleTo(dialog)
    x.target_combo.setCurrentIndex(x.target_combo.findData("oil"))
    assert dialog.run_button.isEnabled()
    (axis,) = dialog.axes()
    assert axis.target == "oil" and axis.values == (0.2, 0.8)
    # The choice comes back as it was left.
    again = GridDialog(Request.txt2img(params), choice=dialog.choice())
    qtbot.addWidget(again)
    assert again.x_row.target() == "oil" and again.x_row.text() == "0.2,0.8"
    assert again.choice() == GridChoice(
        (AxisChoice("lora", "0.2,0.8", "oil"), AxisChoice(), AxisChoice()), "column"
    )


# -- in the window ---------------------------------------------------------------------------


def open_dialog(qtbot, window: MainWindow) -> GridDialog:  # type: ignore[no-untyped-def]
    action = next(
        a for a in window.findChildren(type(window.generate_action)) if "X/Y/Z" in a.text()
    )
    assert action.shortcut().toString() == "Ctrl+Shift+X"
    assert ("Ctrl+Shift+X", "X/Y/Z plot…", "Anywhere") in window.shortcut_rows()  # F1 lists it
    action.trigger()
    qtbot.waitUntil(lambda: window.grid.dialog is not None, timeout=TIMEOUT_MS)
    dialog = window.grid.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def run(qtbot, window: MainWindow, dialog: GridDialog) -> GridResult:  # type: ignore[no-untyped-def]
    """Press Run and wait for the grid's end."""
    results: list[GridResult] = []
    check = window.grid.check_and_run

    async def spy(d: GridDialog) -> GridResult | None:
        result = await check(d)
        if result is not None:
            results.append(result)
        return result

    window.grid.check_and_run = spy  # type: ignore[method-assign]
    dialog.run_button.click()
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT_MS)
    return results[0]


def test_a_2x2_grid_fills_the_library_with_4_cells_and_a_grid_linked_to_them(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(2)
    set_prompt(window, "a red cat")
    submitted = spy_submissions(window)
    dialog = open_dialog(qtbot, window)
    assert "2 steps" in dialog.base_label.text()
    choose(dialog, 0, "cfg", "3,5")
    choose(dialog, 1, "sampler", "Euler a, DPM++ 2M")
    assert dialog.count_label.text() == "4 cells (2 × 2 × 1)"
    progress: list[str] = []
    window.controller.job_ended.connect(
        lambda _e: progress.append(window.grid.progress_label.text())
    )
    result = run(qtbot, window, dialog)

    assert result.status == "finished", result.message
    assert window.grid.dialog is None  # closed once the grid was checked and queued
    assert [(r.params.guidance_scale, r.params.scheduler) for r in submitted] == [
        (3.0, "Euler a"), (5.0, "Euler a"), (3.0, "DPM++ 2M"), (5.0, "DPM++ 2M")
    ]  # fmt: skip
    assert len({r.params.seed for r in submitted}) == 1  # one seed for every cell
    assert progress == [f"grid: {n} of 4 cells" for n in range(1, 5)]
    assert not window.grid.progress_label.isVisible()
    store = window.store
    entries = store.entries(store.ids())
    assert len(entries) == 5
    (grid,) = [e for e in entries if "grid_cells" in e.extra]
    assert result.grids == (grid.path,)
    cells = grid_cells(store, grid)
    assert tuple(c.path for c in cells) == result.cells
    assert [(c.guidance_scale, c.scheduler) for c in cells] == [
        (3.0, "Euler a"), (5.0, "Euler a"), (3.0, "DPM++ 2M"), (5.0, "DPM++ 2M")
    ]  # fmt: skip
    for i, cell in enumerate(cells):
        found = grid_of(store, cell)
        assert found is not None and found.id == grid.id and cell_position(grid, cell) == i
    assert grid.extra["X Type"] == "CFG Scale" and grid.extra["Y Values"] == "Euler a, DPM++ 2M"
    # The grid is highlighted in the gallery, and the status bar names it.
    pane = window.library_pane
    qtbot.waitUntil(
        lambda: pane.current_entry() is not None and pane.current_entry().id == grid.id,
        timeout=TIMEOUT_MS,
    )
    assert grid.path.name in window.statusBar().currentMessage()
    # The dialog opens again with the axes as they were left.
    again = open_dialog(qtbot, window)
    assert again.x_row.text() == "3,5" and again.y_row.key() == "sampler"
    again.reject()


class FailingOn(FakeBackend):
    """Fails the job whose CFG is `cfg` (after its first step), as an engine error would."""

    def __init__(self, cfg: float) -> None:
        super().__init__()
        self.cfg = cfg

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[object]:  # type: ignore[override]
        if request.params.guidance_scale == self.cfg:
            self.fail_next("out of memory")
        return super().execute(request, cancel)


def test_a_failed_cell_stops_the_grid_keeps_the_saved_cells_and_says_so(make_window, qtbot) -> None:
    backend = FailingOn(cfg=5)
    window = make_window(backend)
    window.params_pane.steps_spin.setValue(2)
    set_prompt(window, "a red cat")
    ended: list[object] = []
    window.controller.job_ended.connect(ended.append)
    dialog = open_dialog(qtbot, window)
    choose(dialog, 0, "cfg", "3,5,7")
    result = run(qtbot, window, dialog)

    message = "grid failed: 1 of 3 cells saved; no grid image made"
    assert result.status == "failed" and result.message.startswith(message)
    assert "the cell CFG Scale: 5 failed: out of memory" in result.message
    assert window.preview_pane.error_label.text() == result.message
    assert [type(e) for e in ended] == [JobFinished, JobFailed, JobCancelled]
    entries = window.store.entries(window.store.ids())
    assert [e.guidance_scale for e in entries] == [3.0]  # the saved cell stays; no grid
    assert all("grid_cells" not in e.extra and "grid" not in e.extra for e in entries)
    assert len(backend.jobs_run) == 2  # the third cell never ran


def test_a_cancelled_cell_makes_no_grid_and_says_how_many_cells_were_saved(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    fake_backend.hold_at_step = 1
    window = make_window(fake_backend)
    window.params_pane.steps_spin.setValue(2)  # a held step 1 of 2 notices its cancel
    set_prompt(window, "a red cat")
    dialog = open_dialog(qtbot, window)
    choose(dialog, 0, "seed", "1-3")
    results: list[GridResult] = []
    check = window.grid.check_and_run

    async def spy(d: GridDialog) -> GridResult | None:
        result = await check(d)
        results.append(result)  # type: ignore[arg-type]
        return result

    window.grid.check_and_run = spy  # type: ignore[method-assign]
    dialog.run_button.click()
    label = window.grid.progress_label
    qtbot.waitUntil(lambda: label.text() == "grid: 0 of 3 cells", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: len(fake_backend.jobs_run) == 1, timeout=TIMEOUT_MS)
    fake_backend.release()  # the first cell finishes; the second is held at its step 1
    qtbot.waitUntil(lambda: label.text() == "grid: 1 of 3 cells", timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: len(fake_backend.jobs_run) == 2, timeout=TIMEOUT_MS)
    qtbot.waitUntil(window.cancel_action.isEnabled, timeout=TIMEOUT_MS)
    window.cancel_action.trigger()  # Esc: the running cell
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT_MS)

    (result,) = results
    message = "grid cancelled: 1 of 3 cells saved; no grid image made"
    assert result is not None and result.status == "cancelled" and result.message == message
    assert window.preview_pane.error_label.text() == message
    assert not label.isVisible()
    entries = window.store.entries(window.store.ids())
    assert [e.seed for e in entries] == [1]
    assert "grid_cells" not in entries[0].extra
    assert len(fake_backend.jobs_run) == 2 and not window.controller.jobs()


def test_the_dialog_refuses_a_model_name_no_folder_has_before_queueing(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    set_prompt(window, "a red cat")
    submitted = spy_submissions(window)
    dialog = open_dialog(qtbot, window)
    choose(dialog, 0, "model", "no-such-model")
    assert dialog.run_button.isEnabled()  # a name is only known to be missing at Run
    dialog.run_button.click()
    x = dialog.x_row
    qtbot.waitUntil(lambda: bool(x.error_label.text()), timeout=TIMEOUT_MS)
    assert x.error_label.text().startswith("X model: 'no-such-model' is neither an existing path")
    assert dialog.isVisible() and not dialog.run_button.isEnabled() and submitted == []
    # An empty prompt is refused as Generate refuses it: no dialog.
    dialog.reject()
    qtbot.waitUntil(lambda: window.grid.dialog is None)
    # More than one image per job: a cell is one image, said in the window's words.
    window.params_pane.batch_count_spin.setValue(2)
    window.grid.open_dialog()
    qtbot.waitUntil(lambda: window.preview_pane.error_label.text() != "", timeout=TIMEOUT_MS)
    assert window.preview_pane.error_label.text() == (
        "Cannot make an X/Y/Z plot: a grid cell makes one image, and Batch makes 1 per pass "
        "× 2; set Batch to 1 × 1 (a Seed axis makes one cell per seed)"
    )
    assert window.grid.dialog is None
    window.params_pane.batch_count_spin.setValue(1)
    window.preview_pane.clear_error()
    set_prompt(window, "")
    window.grid.open_dialog()
    qtbot.waitUntil(lambda: window.preview_pane.error_label.text() != "", timeout=TIMEOUT_MS)
    assert window.preview_pane.error_label.text() == (
        "Cannot make an X/Y/Z plot: the prompt is empty; describe a picture"
    )
    assert window.grid.dialog is None


def test_on_the_canvas_tab_the_cells_are_the_canvas_job_with_each_strength(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    from PIL import Image

    from ldstudio.core.request import KIND_INPAINT, ROLE_IMAGE

    window = make_window(fake_backend)
    fake_backend.blobs = window.store.blobs  # as app.py gives the real engine
    window.params_pane.steps_spin.setValue(2)
    set_prompt(window, "a red cat")
    assert window.canvas.set_source(Image.new("RGB", (96, 64), "grey"), "grey")
    window.show_canvas()
    submitted = spy_submissions(window)
    dialog = open_dialog(qtbot, window)
    assert "an img2img job on the canvas image" in dialog.base_label.text()
    choose(dialog, 0, "strength", "0.3,0.7")
    assert dialog.x_row.error_label.text() == "" and dialog.run_button.isEnabled()
    result = run(qtbot, window, dialog)

    assert result.status == "finished", result.message
    assert [r.kind for r in submitted] == [KIND_INPAINT, KIND_INPAINT]
    assert [r.inpaint.strength for r in submitted if r.inpaint is not None] == [0.3, 0.7]
    (digest,) = {r.input(ROLE_IMAGE) for r in submitted}
    with Image.open(window.store.blobs.path(digest)) as source:
        assert source.size == (96, 64)  # the canvas's own image, stored as Generate stores it
    (grid,) = [e for e in window.store.entries(window.store.ids()) if "grid_cells" in e.extra]
    assert [c.path for c in grid_cells(window.store, grid)] == list(result.cells)
