"""JobsController: the window's side of jobs — Generate, a job's run and its images, and what
the engine reports (started, steps, outcomes, cancelling, models loading, notices); GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from ldstudio.core.events import (
    EngineNotice,
    ImageRecord,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StepProgress,
)
from ldstudio.core.models import KIND_UPSCALER, ModelFileError, ModelRegistry
from ldstudio.core.models.preflight import checked_upscaler, preflight
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import KIND_UPSCALE, Request, as_request
from ldstudio.qt.timeline import TimelineStore
from ldstudio.qt.window.canvas_controller import EMPTY_CANVAS

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow

log = logging.getLogger(__name__)

Outcome = JobFinished | JobFailed | JobCancelled


def model_problems(request: Request) -> list[str]:
    """What the request's model files lack, as the engine would say it before loading: the
    diffusion model, VAE and LoRAs (prompt tags too) unless it runs none (an upscale without a
    refine), and a hires fix's upscaler model."""
    registry = ModelRegistry.shared()
    upscale = request.upscale
    if request.kind == KIND_UPSCALE and upscale is not None and not upscale.refines:
        return []  # the engine loads no diffusion model: its prompt's <lora:…> tags are text
    problems = preflight(request.params, registry)
    hires = request.hires
    if hires is not None and hires.model:
        try:
            path = registry.resolve_reference(hires.upscaler, (KIND_UPSCALER,), "hires upscaler")
            checked_upscaler(path, "hires upscaler")
        except (ValueError, ModelFileError) as exc:
            problems.append(str(exc))
    return problems


class JobsController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.timelines = TimelineStore()
        # Images made in this session: path -> (job id, pass), to find their timelines.
        self.session_images: dict[Path, tuple[int, int]] = {}
        self._select_paths: list[Path] = []  # a finished job's images, highlighted once counted
        self._engine_cancelling: int | None = None  # the job whose cancel the bar announces
        c = window.controller
        c.backend_ready.connect(self.on_backend_ready)
        c.backend_failed.connect(lambda message: window.preview_pane.show_error(message))
        c.model_loading.connect(self._on_model_loading)
        c.model_ready.connect(self._on_model_ready)
        c.job_started.connect(self._on_job_started)
        c.step_progressed.connect(self._on_step)
        c.stage_started.connect(window.preview_pane.stage_started)
        c.job_finished.connect(self._on_job_finished)
        c.job_failed.connect(self._on_job_failed)
        c.job_cancelled.connect(self._on_job_cancelled)
        c.job_cancelling.connect(self._on_job_cancelling)
        c.queue_changed.connect(self._refresh_queue)
        c.notice.connect(self._on_notice)
        window.prompt_pane.generate_requested.connect(self.generate)
        window.prompt_pane.cancel_requested.connect(c.cancel_running)
        window.queue_pane.cancel_requested.connect(c.cancel)
        window.queue_pane.cancel_all_requested.connect(c.cancel_all)
        window.library.model.count_changed.connect(self._on_library_counted)
        window.library.actions.vary_requested.connect(
            lambda request: window.background.spawn(self.run_job(request))
        )

    # -- generating ------------------------------------------------------------------------

    def generate(self) -> None:
        w = self.window
        w.params_pane.commit_typed()
        try:
            params = w.current_params()
        except ValueError as exc:
            w.preview_pane.show_error(f"Cannot generate: {exc}")
            return
        if w.canvas.active() and w.canvas_pane.document() is None:
            w.preview_pane.show_error(EMPTY_CANVAS)
            return
        if w.params_pane.model_problem():
            w.preview_pane.show_error(f"Cannot generate: {w.params_pane.model_problem()}")
            return
        if not params.prompt:
            w.preview_pane.show_error("Cannot generate: the prompt is empty; describe a picture")
            w.prompt_pane.prompt_edit.setFocus()
            return
        w.preview_pane.clear_error()
        w.settings.remember_prompt(params.prompt)
        w.prompt_pane.set_recent(w.settings.recent_prompts)
        w.preferences.store_params(params)
        # The canvas tab shown: the job works on its image (no silent fall-back to txt2img
        # when it has none: the canvas says why).
        if w.canvas.active():
            w.background.spawn(w.canvas.generate(params))
            return
        hires_box = w.params_pane.hires_box
        problem = hires_box.problem()
        if problem is not None:
            w.preview_pane.show_error(f"Cannot generate: {problem}")
            return
        w.background.spawn(self.run_job(Request.txt2img(params, hires_box.settings())))

    async def run_job(self, request: Request | GenerationParams) -> Outcome | None:
        """Check the request as the CLI does, queue it, and wait for its end; None when the
        check refused it (the reason is shown, nothing is queued)."""
        checked = as_request(request)
        params = checked.params
        # Here, not on an executor: it reads a few file headers (milliseconds; the model list's
        # scan is already cached), and jobs must reach the queue in the order they were asked.
        # With a server the model files are the server's: it checks them (and names what it
        # lacks); here they may well be missing.
        remote = self.window.models.server_models is not None
        problems = [] if remote else model_problems(checked)
        if problems:
            self.window.preview_pane.show_error(f"Cannot generate: {problems[0]}")
            return None
        job = self.window.controller.submit(request)
        outcome = await self.window.controller.wait(job)
        if self.window.closing:
            return outcome
        records: tuple[ImageRecord, ...] = ()
        if isinstance(outcome, JobFinished):
            records = outcome.records
        elif isinstance(outcome, JobCancelled):
            records = outcome.saved
        if records:
            await self.add_records(records, job.id, params.batch_size)
        return outcome

    async def add_records(
        self, records: tuple[ImageRecord, ...], job_id: int, batch_size: int
    ) -> None:
        # Saved params carry batch_size 1 (each file is one image); the job's says which pass.
        for record in records:
            self.session_images[record.path] = (job_id, record.index // batch_size)
        # The job's own images, by id: not "row 0", which a filter, the oldest-first order or
        # another process writing into the library would make some other image.
        self._select_paths = [record.path for record in records]
        self.window.library.refresh()

    def _on_library_counted(self, _count: int) -> None:
        if self._select_paths:
            paths, self._select_paths = self._select_paths, []
            self.window.library.select_images(paths)

    # -- engine events ------------------------------------------------------------------------

    def on_backend_ready(self, label: str) -> None:
        self.window.device_label.setText(label)
        self.window.busy_bar.hide()
        self.window.statusBar().showMessage("Engine ready", 4000)
        self.window.preferences.check_saved_engine_options()

    def _on_notice(self, event: EngineNotice) -> None:
        log.info("engine: %s", event.message)
        self.window.statusBar().showMessage(event.message, 15000)

    def _on_model_loading(self, event: ModelLoading) -> None:
        self.window.busy_bar.show()
        self.window.statusBar().showMessage(f"Loading model {Path(event.model).name}…")

    def _on_model_ready(self, event: ModelReady) -> None:
        self.window.busy_bar.hide()
        if not event.cached:
            self.window.statusBar().showMessage(
                f"Model {event.model} ready ({event.family}, loaded in {event.seconds:.1f} s)", 5000
            )

    def _on_job_started(self, event: JobStarted) -> None:
        w = self.window
        self._update_cancel()
        if isinstance(event.params.seed, int):
            w.params_pane.set_last_seed(event.params.seed)
        w.preview_pane.job_started(event)
        w.latent_label.setText(w.models.latent_text(event.params.width, event.params.height))

    def _on_step(self, event: StepProgress) -> None:
        self.window.preview_pane.offer(event)
        if event.preview is not None:
            self.timelines.add_frame(
                event.job_id, event.batch_index, event.step, event.preview, event.total
            )

    def _on_job_finished(self, event: JobFinished) -> None:
        count = len(event.records)
        self.window.preview_pane.job_ended(
            f"Done: {count} image{'s' if count != 1 else ''} in {event.seconds:.1f} s"
        )
        self._job_ended()

    def _on_job_failed(self, event: JobFailed) -> None:
        # Only the engine's job fails, and it is the newest (it may fail before it started).
        self.window.preview_pane.job_failed("Failed — see the message above")
        self.window.preview_pane.show_error(event.message, event.detail)
        self.window.statusBar().showMessage(f"Job {event.job_id} failed", 5000)
        self._job_ended()

    def _on_job_cancelled(self, event: JobCancelled) -> None:
        started = self.window.controller.last_started
        if self._is_shown_job(event.job_id):
            ours = started is not None and started.job_id == event.job_id
            total = f" of {started.total_steps}" if ours and started is not None else ""
            self.window.preview_pane.job_ended(
                f"Cancelled after step {event.step}{total}", made_images=bool(event.saved)
            )
        self.window.statusBar().showMessage(f"Job {event.job_id} cancelled", 4000)
        self._job_ended()

    def _is_shown_job(self, job_id: int) -> bool:
        """True for the job whose progress the preview pane shows: the last one started, or
        the engine's job cancelled while it was still loading its model."""
        started = self.window.controller.last_started
        return job_id == self._engine_cancelling or (
            started is not None and started.job_id == job_id
        )

    def _on_job_cancelling(self, job_id: int) -> None:
        # Only the engine's job (running, or loading its model) is ever "cancelling".
        self._engine_cancelling = job_id
        self.window.preview_pane.job_cancelling()
        self.window.statusBar().showMessage(
            f"Cancelling job {job_id}: it stops after the current step", 10_000
        )
        self._refresh_queue()

    def _job_ended(self) -> None:
        self.window.busy_bar.hide()
        self._update_cancel()

    def _update_cancel(self) -> None:
        can_cancel = self.window.controller.cancel_target() is not None
        self.window.prompt_pane.set_busy(can_cancel)
        self.window.cancel_action.setEnabled(can_cancel)

    def _refresh_queue(self) -> None:
        controller = self.window.controller
        jobs = controller.jobs()
        cancelling = {job.id: "cancelling" for job in jobs if controller.cancelling(job.id)}
        self.window.queue_pane.set_jobs(jobs, cancelling)
        self._update_cancel()
