"""GridController: Generate → X/Y/Z plot… — the dialog on what Generate would queue now, every
cell queued as its own job, and when all of them finished the labelled grid sheet(s) saved in
the library (linked to the cells) and highlighted in the gallery; GUI thread, the grid's
expansion, model checks and sheet composing through the window's BackgroundRunner.

A grid is made only from a full set of cells: when one fails or is cancelled, the cells not
run yet are cancelled too, the cells already saved stay in the library, and the window says
how many were saved and that no grid image was made (as `ldstudio grid` does).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel

from ldstudio.core.events import Event, JobCancelled, JobFailed, JobFinished
from ldstudio.core.grid import Axis, AxisError, GridPlan, expand
from ldstudio.core.jobs import Job
from ldstudio.core.library.grid_sheets import save_sheets
from ldstudio.core.models import KIND_CHECKPOINT, KIND_DIFFUSERS, ModelRegistry
from ldstudio.core.request import Request
from ldstudio.core.service import EngineService
from ldstudio.qt.grid_dialog import GridChoice, GridDialog
from ldstudio.qt.window.jobs_controller import model_problems

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow

log = logging.getLogger(__name__)

Outcome = JobFinished | JobFailed | JobCancelled
REFUSED = "Cannot make an X/Y/Z plot"
MODEL_KINDS = (KIND_CHECKPOINT, KIND_DIFFUSERS)


@dataclass
class GridRun:
    """A grid being made: its plan, its cells' jobs (in plan order) and their outcomes."""

    plan: GridPlan
    z_layout: str
    jobs: list[Job]
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # by cell index
    ended: asyncio.Future[None] | None = None

    @property
    def total(self) -> int:
        return len(self.plan.cells)

    def saved(self) -> list[Path]:
        """The finished cells' files, in plan order."""
        return [
            o.records[0].path
            for _i, o in sorted(self.outcomes.items())
            if isinstance(o, JobFinished) and o.records
        ]


@dataclass(frozen=True)
class GridResult:
    """How a grid ended: "finished" (its sheets saved), "failed" or "cancelled" (no grid)."""

    status: str
    cells: tuple[Path, ...]
    grids: tuple[Path, ...]
    message: str


class GridController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.dialog: GridDialog | None = None
        self.last = GridChoice()  # the dialog's rows, kept for its next opening
        self.runs: list[GridRun] = []
        self._by_job: dict[int, tuple[GridRun, int]] = {}
        # Progress of the grids being made, beside the status bar's other permanent widgets
        # (a temporary message would hide it).
        self.progress_label = QLabel()
        self.progress_label.setObjectName("grid_progress")
        self.progress_label.hide()
        window.statusBar().addPermanentWidget(self.progress_label)
        window.controller.job_ended.connect(self._on_job_ended)
        self._stopper = GridStopper(window.controller.service)
        window.controller.service.subscribe(self._stopper)

    # -- the dialog ------------------------------------------------------------------------

    def open_dialog(self) -> None:
        """Generate → X/Y/Z plot…"""
        self.window.spawn(self.open())

    async def open(self) -> GridDialog | None:
        """The dialog on the request Generate would queue now; None (the reason shown) when
        Generate would refuse it."""
        base = await self.base_request()
        if base is None:
            return None
        w = self.window
        if self.dialog is not None:
            self.dialog.close()
        dialog = GridDialog(
            base,
            base_text=self.base_text(base),
            model_names=self.model_names(),
            choice=self.last,
            parent=w,
        )
        dialog.run_requested.connect(lambda: w.spawn(self.check_and_run(dialog)))
        dialog.finished.connect(lambda _result: self._closed(dialog))
        self.dialog = dialog
        dialog.open()
        return dialog

    def _closed(self, dialog: GridDialog) -> None:
        self.last = dialog.choice()
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()

    async def base_request(self) -> Request | None:
        """What Generate would queue now (the panes' prompt and parameters; on the canvas tab,
        the canvas's job), refused as Generate refuses it, or None (the reason shown)."""
        w = self.window
        w.params_pane.commit_typed()
        try:
            params = w.current_params()
        except ValueError as exc:
            w.preview_pane.show_error(f"{REFUSED}: {exc}")
            return None
        problem = w.params_pane.model_problem()
        if problem:
            w.preview_pane.show_error(f"{REFUSED}: {problem}")
            return None
        if not params.prompt:
            w.preview_pane.show_error(f"{REFUSED}: the prompt is empty; describe a picture")
            w.prompt_pane.prompt_edit.setFocus()
            return None
        if params.image_count != 1:
            w.preview_pane.show_error(
                f"{REFUSED}: a grid cell makes one image, and Batch makes "
                f"{params.batch_size} per pass × {params.batch_count}; set Batch to 1 × 1 "
                "(a Seed axis makes one cell per seed)"
            )
            return None
        if w.canvas.active():
            return await w.canvas.request(params, f"{REFUSED} on the canvas")
        hires_box = w.params_pane.hires_box
        hires_problem = hires_box.problem()
        if hires_problem is not None:
            w.preview_pane.show_error(f"{REFUSED}: {hires_problem}")
            return None
        return Request.txt2img(params, hires_box.settings())

    def base_text(self, request: Request) -> str:
        """What every cell starts from, as the dialog says it."""
        p = request.params
        model = Path(p.model).name if p.model else self.window.bundled_model.name
        seed = "a random seed (one for every cell)" if p.seed == "random" else f"seed {p.seed}"
        size = f"{p.width}×{p.height}" if p.width and p.height else "the model's size"
        if request.face != "txt2img":
            size = f"an {request.face} job on the canvas image"  # img2img, inpaint, outpaint
        elif request.hires is not None:
            size += " with the hires fix"
        return (
            f"Each cell starts from: {model} · {p.steps} steps · CFG {p.guidance_scale:g} · "
            f"{p.scheduler} · {seed} · {size} (the Generate tab)"
        )

    def model_names(self) -> list[str]:
        """The models a model axis's Fill in all gives: the server's, or the model folders'
        as names that say which one (a path where two share a name); never a scan here."""
        w = self.window
        if w.models.server_models is not None:
            return [value for _label, value in w.models.model_entries() if value]
        try:
            kept = ModelRegistry.shared().kept()
        except ValueError:  # a damaged models.json: the model manager says so
            kept = None
        entries = [e for e in kept or [] if e.kind in MODEL_KINDS and e.loadable]
        entries = [e for e in entries if e.path != w.bundled_model]
        names = [e.name for e in entries]
        return [e.name if names.count(e.name) == 1 else str(e.path) for e in entries]

    # -- checking and queueing ---------------------------------------------------------------

    async def check_and_run(self, dialog: GridDialog) -> GridResult | None:
        """Run pressed: the grid expanded (model names resolved) and its models checked off
        the GUI thread; refused in the dialog, else the dialog closes and the cells run."""
        w = self.window
        try:
            axes = dialog.axes()
        except AxisError as exc:
            dialog.show_problem(str(exc))
            return None
        z_layout = dialog.z_layout()
        dialog.set_checking(True)
        remote = w.models.server_models is not None
        try:
            plan = await w.off_thread(checked_plan, dialog.base, axes, remote)
        except (AxisError, ValueError) as exc:
            if self.dialog is dialog:
                dialog.show_problem(str(exc))
            return None
        if self.dialog is not dialog or not dialog.isVisible():
            return None  # closed meanwhile: nothing is queued
        dialog.accept()
        return await self.run_plan(plan, z_layout)

    async def run_plan(self, plan: GridPlan, z_layout: str) -> GridResult:
        """Queue every cell, wait for all of them, then save the grid (or say why not)."""
        w = self.window
        w.preview_pane.clear_error()
        jobs: list[Job] = []
        try:
            for cell in plan.cells:
                jobs.append(w.controller.submit(cell.request))
        except ValueError as exc:  # expand validated every cell: not expected
            for job in jobs:
                w.controller.cancel(job.id)
            message = f"{REFUSED}: {exc}"
            w.preview_pane.show_error(message)
            return GridResult("failed", (), (), message)
        run = GridRun(plan, z_layout, jobs, ended=asyncio.get_running_loop().create_future())
        self.runs.append(run)
        for i, job in enumerate(jobs):
            self._by_job[job.id] = (run, i)
        self._stopper.add(jobs)
        self._show_progress()
        try:
            assert run.ended is not None
            await run.ended
        finally:
            self._stopper.remove(jobs)
            self.runs.remove(run)
            for job in jobs:
                self._by_job.pop(job.id, None)
            self._show_progress()
        return await self._finish(run)

    def _on_job_ended(self, event: Outcome) -> None:
        found = self._by_job.get(event.job_id)
        if found is None:
            return  # not a grid's cell
        run, index = found
        if index in run.outcomes:
            return
        run.outcomes[index] = event
        if isinstance(event, JobFinished) and event.records:
            w = self.window
            for record in event.records:
                w.jobs.session_images[record.path] = (event.job_id, 0)
            w.library.refresh()
        self._show_progress()
        if len(run.outcomes) == run.total and run.ended is not None and not run.ended.done():
            run.ended.set_result(None)

    def _show_progress(self) -> None:
        texts = [
            f"grid: {sum(isinstance(o, JobFinished) for o in run.outcomes.values())} of "
            f"{run.total} cells"
            for run in self.runs
        ]
        self.progress_label.setText(" · ".join(texts))
        self.progress_label.setVisible(bool(texts))

    async def _finish(self, run: GridRun) -> GridResult:
        w = self.window
        cells = run.saved()
        if len(cells) != run.total:
            failed = next((o for o in run.outcomes.values() if isinstance(o, JobFailed)), None)
            status = "failed" if failed is not None else "cancelled"
            message = f"grid {status}: {len(cells)} of {run.total} cells saved; no grid image made"
            if failed is not None:
                where = _cell_label(run, failed.job_id)
                message += f" (the cell {where} failed: {failed.message})"
            if not w.closing:
                w.preview_pane.show_error(message, failed.detail if failed is not None else "")
                w.statusBar().showMessage(message, 15000)
            return GridResult(status, tuple(cells), (), message)
        if w.closing:
            return GridResult("cancelled", tuple(cells), (), "the window closed")
        self.progress_label.setText(f"grid: saving the grid of {run.total} cells…")
        self.progress_label.show()
        store = w.store
        try:
            grids = await w.off_thread(save_sheets, run.plan, cells, run.z_layout, None, store)
        except (OSError, ValueError) as exc:
            message = (
                f"grid: the {run.total} cells are saved, but the grid image could not be: {exc}"
            )
            w.preview_pane.show_error(message)
            return GridResult("failed", tuple(cells), (), message)
        finally:
            self._show_progress()
        self._select_when_counted(grids)
        w.library.refresh()
        names = ", ".join(path.name for path in grids)
        message = f"X/Y/Z plot done: {run.total} cells and {len(grids)} grid image(s): {names}"
        w.statusBar().showMessage(message, 10000)
        return GridResult("finished", tuple(cells), tuple(grids), message)

    def _select_when_counted(self, paths: Sequence[Path]) -> None:
        # As a job's images: highlighted once the gallery has counted the new rows.
        model = self.window.library.model
        chosen = list(paths)

        def counted(_count: int) -> None:
            model.count_changed.disconnect(counted)
            self.window.library.select_images(chosen)

        model.count_changed.connect(counted)


class GridStopper:
    """Cancels a grid's other cells as soon as one fails or is cancelled: a service listener,
    so on the engine's thread as the job ends, before it takes the next one (the next cell,
    maybe another model to load, never starts; `ldstudio grid` stops the same way)."""

    def __init__(self, service: EngineService) -> None:
        self._service = service
        self._lock = threading.Lock()  # the engine's thread reads what the GUI thread sets
        self._grid_of: dict[int, tuple[int, ...]] = {}  # job id -> its grid's job ids
        self._stopped: set[tuple[int, ...]] = set()

    def add(self, jobs: Sequence[Job]) -> None:
        ids = tuple(job.id for job in jobs)
        with self._lock:
            for job_id in ids:
                self._grid_of[job_id] = ids
            self._stopped.discard(ids)

    def remove(self, jobs: Sequence[Job]) -> None:
        with self._lock:
            for job in jobs:
                ids = self._grid_of.pop(job.id, None)
                if ids is not None:
                    self._stopped.discard(ids)

    def __call__(self, event: Event) -> None:
        if not isinstance(event, JobFailed | JobCancelled):
            return
        with self._lock:
            ids = self._grid_of.get(event.job_id)
            if ids is None or ids in self._stopped:
                return  # not a cell, or its grid is stopping already (these are its cancels)
            self._stopped.add(ids)
        for job_id in ids:
            if job_id != event.job_id:
                self._service.cancel(job_id)  # a waiting one ends at once; an ended one: no-op


def checked_plan(base: Request, axes: Sequence[Axis], remote: bool) -> GridPlan:
    """`base` expanded over `axes`, model names resolved through the model registry as
    `ldstudio grid` resolves them, and every distinct model set checked as Generate checks
    it; AxisError/ValueError naming what is wrong. With a server both are the server's.
    Worker thread (a model axis may scan the model folders)."""
    resolve: Callable[[str], str] | None = None
    if not remote:
        registry = ModelRegistry.shared()

        def resolve(name: str) -> str:
            return str(registry.resolve_reference(name, MODEL_KINDS, "model"))

    plan = expand(base, axes, resolve)
    if remote:
        return plan
    checked: set[tuple[str, str, tuple[tuple[str, float], ...]]] = set()
    for cell in plan.cells:
        p = cell.request.params
        if (p.model, p.vae, p.loras) in checked:
            continue
        checked.add((p.model, p.vae, p.loras))
        problems = model_problems(cell.request)
        if problems:
            raise ValueError(f"the cell {plan.label(cell)}: {problems[0]}")
    return plan


def _cell_label(run: GridRun, job_id: int) -> str:
    for i, job in enumerate(run.jobs):
        if job.id == job_id:
            return run.plan.label(run.plan.cells[i])
    return f"of job {job_id}"
