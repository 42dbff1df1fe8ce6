"""GenerationController: submits jobs, turns engine events into signals and awaitables; GUI thread.

Every engine event arrives here (queued from the engine thread) and is handled in one place,
`_on_event`. Orchestration reads as async code: `outcome = await controller.generate(params)`.
"""

from __future__ import annotations

import asyncio
import logging

from PySide6.QtCore import QObject, Signal, Slot

from ldstudio.core.events import (
    EngineNotice,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StepProgress,
)
from ldstudio.core.jobs import Job, JobQueue, JobState
from ldstudio.core.params import GenerationParams
from ldstudio.qt.worker import EngineThread

log = logging.getLogger(__name__)

Outcome = JobFinished | JobFailed | JobCancelled
OUTCOMES_KEPT = 200  # final events remembered for late `wait()` calls; oldest dropped first


class GenerationController(QObject):
    backend_ready = Signal(str)
    backend_failed = Signal(str)
    model_loading = Signal(object)  # ModelLoading
    model_ready = Signal(object)  # ModelReady
    job_started = Signal(object)  # JobStarted
    step_progressed = Signal(object)  # StepProgress
    job_finished = Signal(object)  # JobFinished
    job_failed = Signal(object)  # JobFailed
    job_cancelled = Signal(object)  # JobCancelled
    job_ended = Signal(object)  # any of the three above, after its own signal
    job_cancelling = Signal(int)  # job id: its cancel is asked; it stops after its current step
    queue_changed = Signal()
    notice = Signal(object)  # EngineNotice: a warm-up, a retry, options applied

    def __init__(self, engine: EngineThread) -> None:
        super().__init__()
        self.engine = engine
        self.queue: JobQueue = engine.queue
        self.device_label = ""
        self.last_started: JobStarted | None = None
        self.last_progress: StepProgress | None = None
        self._jobs: dict[int, Job] = {}
        self._waiters: dict[int, list[asyncio.Future[Outcome]]] = {}
        self._outcomes: dict[int, Outcome] = {}
        engine.worker.event_emitted.connect(self._on_event)
        engine.worker.backend_ready.connect(self._on_backend_ready)
        engine.worker.backend_failed.connect(self.backend_failed)

    def start(self) -> None:
        self.engine.start()

    def shutdown(self) -> None:
        """Cancel every job and join the engine thread (the running job stops at its next step)."""
        self.engine.stop()
        for job_id in list(self._waiters):
            self._resolve(JobCancelled(job_id, step=0))

    # -- submitting and cancelling -----------------------------------------------------------

    def submit(self, params: GenerationParams) -> Job:
        """Queue a job. Raises ValueError (naming the field) when params are invalid."""
        job = self.queue.submit(params)
        self._jobs[job.id] = job
        self.queue_changed.emit()
        return job

    async def wait(self, job: Job) -> Outcome:
        """The job's final event: JobFinished, JobFailed or JobCancelled."""
        if job.id in self._outcomes:
            return self._outcomes[job.id]
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job.id, []).append(future)
        return await future

    async def generate(self, params: GenerationParams) -> Outcome:
        return await self.wait(self.submit(params))

    def cancel(self, job_id: int) -> None:
        job = self.queue.cancel(job_id)
        if job is not None and job.state is JobState.CANCELLED:
            # A pending job never reaches the engine: its cancellation is final right here.
            self._on_event(JobCancelled(job_id, step=0))
        elif job is not None and job.id not in self._outcomes:
            # The running job stops at its next step boundary, which may be minutes away on a
            # slow machine: say so now.
            self.job_cancelling.emit(job.id)
        self.queue_changed.emit()

    def cancel_target(self) -> Job | None:
        """The job Cancel (Esc) stops: the running one unless already cancelling; while none
        runs yet (the engine is still taking it), the first waiting one. None while a cancel
        is under way: the engine may have moved on to the next job before its final event
        arrived, and a second Esc must not fall on that one."""
        if any(self.cancelling(job_id) for job_id in self._jobs):
            return None
        jobs = self.jobs()
        running = self.queue.running
        if running is not None and running in jobs:
            return None if running.cancel_token.cancelled else running
        waiting = [job for job in jobs if not job.cancel_token.cancelled]
        return waiting[0] if waiting else None

    def cancelling(self, job_id: int) -> bool:
        """True while the job's cancel is asked but its final event has not come."""
        job = self._jobs.get(job_id)
        return job is not None and job.cancel_token.cancelled and job_id not in self._outcomes

    def cancel_running(self) -> None:
        target = self.cancel_target()
        if target is not None:
            self.cancel(target.id)

    def cancel_all(self) -> None:
        for job in self.queue.cancel_all():
            if job.state is JobState.CANCELLED:
                self._on_event(JobCancelled(job.id, step=0))
            elif job.id not in self._outcomes:
                self.job_cancelling.emit(job.id)
        self.queue_changed.emit()

    def jobs(self) -> list[Job]:
        """The running job (if any) followed by pending jobs in order."""
        running = self.queue.running
        jobs = ([running] if running is not None else []) + self.queue.pending()
        # The final event can arrive before the worker has called queue.finish(): a job whose
        # outcome is known is over, whatever the queue says for another moment.
        return [job for job in jobs if job.id not in self._outcomes]

    def job(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    # -- events ----------------------------------------------------------------------------

    @Slot(str)
    def _on_backend_ready(self, label: str) -> None:
        self.device_label = label
        self.backend_ready.emit(label)

    @Slot(object)
    def _on_event(self, event: Event) -> None:
        if isinstance(event, StepProgress):
            self.last_progress = event
            self.step_progressed.emit(event)
        elif isinstance(event, JobStarted):
            self.last_started = event
            self.last_progress = None
            self.job_started.emit(event)
            self.queue_changed.emit()
        elif isinstance(event, ModelLoading):
            self.model_loading.emit(event)
        elif isinstance(event, ModelReady):
            self.model_ready.emit(event)
        elif isinstance(event, EngineNotice):
            self.notice.emit(event)
        elif isinstance(event, JobFinished | JobFailed | JobCancelled):
            if event.job_id in self._outcomes:
                return  # a pending job cancelled here, then also reported by the engine
            if isinstance(event, JobFinished):
                self.job_finished.emit(event)
            elif isinstance(event, JobFailed):
                self.job_failed.emit(event)
            else:
                self.job_cancelled.emit(event)
            self._resolve(event)
            self.job_ended.emit(event)
            self.queue_changed.emit()
        else:
            log.warning("unknown engine event %r", event)

    def _resolve(self, outcome: Outcome) -> None:
        self._outcomes[outcome.job_id] = outcome
        while len(self._outcomes) > OUTCOMES_KEPT:
            del self._outcomes[next(iter(self._outcomes))]
        self._jobs.pop(outcome.job_id, None)
        for future in self._waiters.pop(outcome.job_id, []):
            if not future.done():
                future.set_result(outcome)
