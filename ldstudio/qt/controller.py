"""GenerationController: the window's client of the EngineService; GUI thread.

It submits to the service and subscribes to it: every event is relayed to the GUI thread
(a queued signal from the engine's worker thread) and handled in one place, `_on_event`,
which turns it into typed Qt signals and awaitables. It invents no event: pending jobs'
cancellations and the final events come from the service, each exactly once.
Orchestration reads as async code: `outcome = await controller.generate(params)`.
"""

from __future__ import annotations

import asyncio
import logging

from PySide6.QtCore import QObject, Signal, Slot

from ldstudio.core.events import (
    EngineFailed,
    EngineNotice,
    EngineReady,
    Event,
    JobCancelled,
    JobCancelling,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StageStarted,
    StepProgress,
)
from ldstudio.core.jobs import Job
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.core.service import EngineService

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
    stage_started = Signal(object)  # StageStarted: a job with several stages enters one
    queue_changed = Signal()
    notice = Signal(object)  # EngineNotice: a warm-up, a retry, options applied
    _relayed = Signal(object)  # any event, from whichever thread made it

    def __init__(self, service: EngineService) -> None:
        super().__init__()
        self.service = service
        self.queue = service.queue
        self.device_label = ""
        self.last_started: JobStarted | None = None
        self.last_progress: StepProgress | None = None
        self._jobs: dict[int, Job] = {}
        self._waiters: dict[int, list[asyncio.Future[Outcome]]] = {}
        self._outcomes: dict[int, Outcome] = {}
        # Auto connection: queued from the engine's thread, direct from this one (a pending
        # job cancelled here ends before `cancel()` returns, as the window expects).
        self._relayed.connect(self._on_event)
        self._unsubscribe = service.subscribe(self._relayed.emit)

    def start(self) -> None:
        self.service.start()

    def shutdown(self) -> None:
        """Cancel every job and join the engine thread (the running job stops at its next step)."""
        self._unsubscribe()
        self.service.close()
        for job_id in list(self._waiters):
            self._resolve(JobCancelled(job_id, step=0))

    # -- submitting and cancelling -----------------------------------------------------------

    def submit(self, request: Request | GenerationParams) -> Job:
        """Queue a job. Raises ValueError (naming the field) when the request is invalid."""
        job = self.service.submit(request)
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
        # A pending job ends at once (JobCancelled, relayed directly); the running one says
        # JobCancelling now: its next step boundary may be minutes away on a slow machine.
        self.service.cancel(job_id)
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
        self.service.cancel_all()
        self.queue_changed.emit()

    def jobs(self) -> list[Job]:
        """The running job (if any) followed by pending jobs in order."""
        live = self.service.jobs()
        listed = {job.id for job in live}
        # The service finishes a job before it reports its end, and that report reaches this
        # thread a moment later: until it is handled here, the window still shows the job
        # (it was the running one), and a job whose end was handled here is over.
        ending = [job for job in self._jobs.values() if job.id not in listed]
        return ending + [job for job in live if job.id not in self._outcomes]

    def job(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    # -- events ----------------------------------------------------------------------------

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
        elif isinstance(event, StageStarted):
            self.stage_started.emit(event)
        elif isinstance(event, JobCancelling):
            if event.job_id not in self._outcomes:
                self.job_cancelling.emit(event.job_id)
        elif isinstance(event, EngineReady):
            self.device_label = event.label
            self.backend_ready.emit(event.label)
        elif isinstance(event, EngineFailed):
            self.backend_failed.emit(event.message)
        elif isinstance(event, JobFinished | JobFailed | JobCancelled):
            if event.job_id in self._outcomes:
                return  # ended here already (at shutdown)
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
