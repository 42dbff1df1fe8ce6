"""EngineService: the one queue, worker, saver and event fan-out every front end uses; any thread.

The window, the CLI, the tests (and next the HTTP API) submit requests and subscribe to
events here; none of them runs a job itself. The service owns:

- the FIFO queue and the worker thread that calls the backend (built on that thread by a
  factory, so heavy imports happen there); a backend that declares `concurrent_jobs = N`
  (a cluster) gets N worker lanes, every other backend exactly one;
- saving: a backend yields finished images, the service saves each through the sink (the
  library, or a folder) and only then reports it — "saved before reported";
- ending every job exactly once: finished, failed (exceptions worded for the user) or
  cancelled, pending jobs included, and `finish()` on the queue *before* the final event, so a
  listener never sees a job that is over still listed as running;
- fan-out to any number of listeners. Listeners are called on the thread that made the event
  (the worker; for a pending job's cancel, the canceller's thread): a Qt front end marshals
  to its GUI thread with a queued signal. A listener that raises is logged, never fatal.

Qt-free and torch-free: the backend is injected.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable

from ldstudio.core.backend import Backend, DeviceInfo, ImageResult, JobError, StageStarted, Step
from ldstudio.core.events import (
    EngineFailed,
    EngineNotice,
    EngineReady,
    Event,
    ImageRecord,
    JobCancelled,
    JobCancelling,
    JobFailed,
    JobFinished,
    JobStarted,
    StepProgress,
)
from ldstudio.core.events import StageStarted as JobStageStarted
from ldstudio.core.imagefiles import ImageSink
from ldstudio.core.jobs import Cancelled, Job, JobQueue, JobState
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

log = logging.getLogger(__name__)

Outcome = JobFinished | JobFailed | JobCancelled
Listener = Callable[[Event], None]
BackendFactory = Callable[[], Backend]
OUTCOMES_KEPT = 200  # final events kept for late `wait()` calls; the oldest go first


class EngineService:
    """Create, `subscribe`, `start`; then `submit` from any thread; `close` once at the end."""

    def __init__(self, factory: BackendFactory, sink: ImageSink) -> None:
        self.queue = JobQueue()
        self._factory = factory
        self._sink = sink
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._outcomes: dict[int, Outcome] = {}
        self._ended = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self.choice: DeviceInfo | None = None  # set once the backend is built
        self.startup_error = ""  # set when it could not be built

    # -- wiring ----------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(event)` for every event from now on; returns the unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def set_sink(self, sink: ImageSink) -> None:
        """Where the next job's images go (a library switched in the window)."""
        with self._lock:
            self._sink = sink

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the engine service is already started")
        # A daemon: a front end that must stop at once (a second Ctrl+C) is not held by it.
        self._thread = threading.Thread(target=self._work, name="ldstudio-engine", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Cancel every job (the running one stops at its next step) and join the worker."""
        pending = self.queue.pending()
        self.queue.close()
        for job in pending:
            self._end(job, JobCancelled(job.id, step=0))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running_thread(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def announce(self, event: Event) -> None:
        """Publish an event that comes from outside a job (e.g. engine options applied)."""
        if isinstance(event, EngineReady):
            self.choice = _Choice(event.device, event.dtype, event.label)
        self._emit(event)

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, request: Request | GenerationParams) -> Job:
        """Queue a job. ValueError (naming the field) for an invalid request."""
        return self.queue.submit(request)

    def cancel(self, job_id: int) -> Job | None:
        """Cancel a pending job (ended at once) or the running one (stops after its step)."""
        job = self.queue.cancel(job_id)
        self._cancelled([job] if job is not None else [])
        return job

    def cancel_all(self) -> list[Job]:
        jobs = self.queue.cancel_all()
        self._cancelled(jobs)
        return jobs

    def jobs(self) -> list[Job]:
        """The running job(s) followed by the pending ones, in order."""
        return self.queue.running_jobs() + self.queue.pending()

    def wait(self, job: Job, timeout: float | None = None) -> Outcome:
        """Block until the job's final event; TimeoutError after `timeout` seconds."""
        with self._ended:
            if not self._ended.wait_for(lambda: job.id in self._outcomes, timeout):
                raise TimeoutError(f"job {job.id} did not end within {timeout} s")
            return self._outcomes[job.id]

    def run(self, request: Request | GenerationParams, timeout: float | None = None) -> Outcome:
        """Submit and wait: the whole job, for scripts and tests."""
        return self.wait(self.submit(request), timeout)

    def _cancelled(self, jobs: list[Job]) -> None:
        for job in jobs:
            if not job.taken:  # never reached the engine: over right here
                self._end(job, JobCancelled(job.id, step=0))
            else:
                # Said even when the worker has just ended it: a listener has not seen that
                # end yet (it may still be on its way to another thread) and hears it next.
                self._emit(JobCancelling(job.id))

    # -- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            backend = self._factory()
        except Exception as exc:
            log.exception("the engine could not start")
            self.startup_error = f"The engine could not start: {type(exc).__name__}: {exc}"
            self._emit(EngineFailed(self.startup_error))
            # Without a backend, queued jobs must still end so nobody waits on them forever.
            message = f"The engine is not running: {exc}"
            while (job := self.queue.take()) is not None:
                self._end(job, JobFailed(job.id, message, message), JobState.FAILED)
            return
        choice = backend.choice
        self.announce(EngineReady(choice.label, choice.device, choice.dtype))
        # A backend that runs jobs side by side (a cluster's replicas) says how many; every
        # other backend is called from this one thread only, as the contract promises.
        lanes = [
            threading.Thread(
                target=self._lane, args=(backend,), name=f"ldstudio-engine-{n}", daemon=True
            )
            for n in range(1, max(1, int(getattr(backend, "concurrent_jobs", 1))))
        ]
        try:
            for lane in lanes:
                lane.start()
            self._lane(backend)
            for lane in lanes:
                lane.join()
        finally:
            backend.close()

    def _lane(self, backend: Backend) -> None:
        while (job := self.queue.take()) is not None:
            self._run(backend, job)

    def _run(self, backend: Backend, job: Job) -> None:
        with self._lock:
            sink = self._sink
        choice = backend.choice
        saved: list[ImageRecord] = []
        step = 0
        started = time.perf_counter()
        announced = False  # JobStarted sent
        outcome: Outcome
        try:
            job.cancel_token.raise_if_cancelled(0)
            events = backend.execute(job.request, job.cancel_token)
            try:
                for event in events:
                    if isinstance(event, Step):
                        step = event.step
                        self._emit(_progress(job.id, event))
                    elif isinstance(event, ImageResult):
                        saved.append(self._save(sink, event, choice))
                    elif isinstance(event, StageStarted):
                        step = 0
                        if not announced:  # a hires fix enters its first stage per batch
                            announced = True
                            started = time.perf_counter()
                            self._emit(_job_started(job.id, event, choice))
                        if event.count > 1:
                            self._emit(
                                JobStageStarted(
                                    job.id, event.index, event.count, event.name, event.total_steps
                                )
                            )
                    elif isinstance(event, EngineNotice) and event.job_id is None:
                        self._emit(EngineNotice(event.message, job.id))
                    else:
                        self._emit(event)
            finally:
                # A generator stops its backend's work when closed early (a sink that failed).
                close = getattr(events, "close", None)
                if close is not None:
                    close()

            outcome = JobFinished(job.id, tuple(saved), time.perf_counter() - started)
            state = JobState.FINISHED
        except Cancelled as exc:
            outcome = JobCancelled(job.id, exc.step if exc.step is not None else step, tuple(saved))
            state = JobState.CANCELLED
        except JobError as exc:
            outcome = JobFailed(job.id, str(exc), exc.detail or _detail(exc))
            state = JobState.FAILED
        except Exception as exc:  # a backend or a sink that raises: the worker stays alive
            log.exception("job %d failed", job.id)
            outcome = JobFailed(
                job.id, f"Generation failed: {type(exc).__name__}: {exc}", _detail(exc)
            )
            state = JobState.FAILED
        self._end(job, outcome, state)

    def _save(self, sink: ImageSink, result: ImageResult, choice: DeviceInfo) -> ImageRecord:
        return sink.save(
            result.image,
            result.params,
            index=result.index,
            model_name=result.model_name,
            device=choice.device,
            dtype=choice.dtype,
            seconds=result.seconds,
            request=result.request,
        )

    def _end(self, job: Job, outcome: Outcome, state: JobState = JobState.CANCELLED) -> None:
        self.queue.finish(job, state)
        with self._ended:
            if job.id in self._outcomes:
                return  # ended once already (a pending job cancelled twice over)
            self._outcomes[job.id] = outcome
            while len(self._outcomes) > OUTCOMES_KEPT:
                del self._outcomes[next(iter(self._outcomes))]
            self._ended.notify_all()
        self._emit(outcome)

    def _emit(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("an engine event listener failed on %r", type(event).__name__)


class _Choice:
    def __init__(self, device: str, dtype: str, label: str) -> None:
        self.device, self.dtype, self.label = device, dtype, label


def _job_started(job_id: int, event: StageStarted, choice: DeviceInfo) -> JobStarted:
    return JobStarted(
        job_id=job_id,
        params=event.params,
        device=choice.device,
        dtype=choice.dtype,
        total_steps=event.total_steps,
        image_count=event.image_count,
    )


def _progress(job_id: int, event: Step) -> StepProgress:
    return StepProgress(
        job_id=job_id,
        batch_index=event.batch_index,
        step=event.step,
        total=event.total,
        elapsed=event.elapsed,
        it_per_s=event.it_per_s,
        preview=event.preview,
        stage=event.stage,
    )


def _detail(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-6:])
