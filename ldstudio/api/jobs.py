"""Per-job event logs and the live progress the A1111 routes report; written on the engine
worker's thread, read from the server's asyncio loop.

`JobTracker` subscribes to the EngineService and keeps, for every job submitted through the
server, the list of its events in order. A reader (an SSE stream, a txt2img call waiting for
its images) asks for the events after the ones it has and awaits more: appending wakes the
waiting coroutines on their own loop (`call_soon_threadsafe`), so no thread is parked per
request and no event is missed between submit and subscribe.

Memory: the logs of jobs still queued or running are all kept, of ended jobs the newest (up to
LOGS_KEPT logs in all); once a job has ended, its preview frames are dropped from the log (a
late replay carries its steps, not its pictures).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldstudio.core.events import (
    Event,
    ImageRecord,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StageStarted,
    StepProgress,
)
from ldstudio.core.service import EngineService, Outcome

LOGS_KEPT = 64
FINAL_EVENTS = (JobFinished, JobFailed, JobCancelled)


class JobLog:
    """The events of one job, in order; `ended` once its final event is in."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._lock = threading.Lock()
        self._events: list[Event] = []
        # (loop, flag, woken only by the final event)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, bool]] = []

    @property
    def ended(self) -> bool:
        with self._lock:
            return bool(self._events) and isinstance(self._events[-1], FINAL_EVENTS)

    @property
    def outcome(self) -> Outcome | None:
        with self._lock:
            last = self._events[-1] if self._events else None
        return last if isinstance(last, FINAL_EVENTS) else None

    def append(self, event: Event) -> None:
        with self._lock:
            if self._events and isinstance(self._events[-1], FINAL_EVENTS):
                return  # a JobCancelling after the end: the job is over for every reader
            self._events.append(event)
            if isinstance(event, FINAL_EVENTS):
                # Ended: the frames were for watching it run; the steps stay.
                self._events = [_without_preview(e) for e in self._events]
            final = isinstance(event, FINAL_EVENTS)
            waiters = [w for w in self._waiters if final or not w[2]]
            self._waiters = [w for w in self._waiters if not (final or not w[2])]
        for loop, flag, _final_only in waiters:
            # A loop that has closed (a server shutting down) has nobody left to wake.
            if not loop.is_closed():
                loop.call_soon_threadsafe(flag.set)

    def since(self, start: int) -> list[Event]:
        with self._lock:
            return self._events[start:]

    async def wait_since(self, start: int, timeout: float | None) -> list[Event]:
        """The events after the first `start`, waiting up to `timeout` s for one ([] then)."""
        flag = asyncio.Event()
        with self._lock:
            if len(self._events) > start:
                return self._events[start:]
            self._waiters.append((asyncio.get_running_loop(), flag, False))
        if not await self._wait(flag, timeout):
            return []
        return self.since(start)

    async def wait_outcome(self) -> Outcome:
        """Wait for the job's final event (woken once, not at every step)."""
        flag = asyncio.Event()
        with self._lock:
            if not (self._events and isinstance(self._events[-1], FINAL_EVENTS)):
                self._waiters.append((asyncio.get_running_loop(), flag, True))
            else:
                flag.set()
        await self._wait(flag, None)
        outcome = self.outcome
        assert outcome is not None  # only the final event sets a final-only flag
        return outcome

    async def _wait(self, flag: asyncio.Event, timeout: float | None) -> bool:
        try:
            await asyncio.wait_for(flag.wait(), timeout)
        except TimeoutError:
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not flag]
            return False
        return True


@dataclass
class Progress:
    """What /sdapi/v1/progress reports about the running job (engine thread writes it)."""

    job_id: int | None = None
    started: float = 0.0  # time.time() when it started
    stage: int = 0
    stages: int = 1
    batch_index: int = 0
    batch_count: int = 1
    step: int = 0
    steps: int = 0
    preview: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        """0..1 over the whole job: stages, then batch rounds within a stage, then steps."""
        if self.job_id is None or not self.steps:
            return 0.0
        within = (self.batch_index + self.step / self.steps) / max(self.batch_count, 1)
        return min(1.0, (self.stage + within) / max(self.stages, 1))


class JobTracker:
    """Keeps the logs of the jobs the server submitted and the running job's progress."""

    def __init__(self, service: EngineService) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._logs: OrderedDict[int, JobLog] = OrderedDict()
        self._progress = Progress()
        self._interrupted: set[int] = set()
        service.subscribe(self._on_event)

    def track(self, job_id: int) -> JobLog:
        """The log for a job just submitted. The worker may have made its first events
        before this is called: the listener creates a log on a job's first event too."""
        with self._lock:
            return self._log_locked(job_id)

    def _log_locked(self, job_id: int) -> JobLog:
        log = self._logs.get(job_id)
        if log is None:
            log = self._logs[job_id] = JobLog(job_id)
            # Only logs of jobs that have ended go: a queued job's waiters must hear its end.
            ended = [key for key, kept in self._logs.items() if kept.ended]
            for key in ended[: max(0, len(self._logs) - LOGS_KEPT)]:
                del self._logs[key]
        return log

    def log(self, job_id: int) -> JobLog | None:
        with self._lock:
            return self._logs.get(job_id)

    def progress(self) -> Progress:
        with self._lock:
            return dataclasses.replace(self._progress)

    def mark_interrupted(self, job_id: int) -> None:
        with self._lock:
            self._interrupted.add(job_id)

    def interrupted(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._interrupted

    def _on_event(self, event: Event) -> None:
        job_id = getattr(event, "job_id", None)
        if job_id is None and isinstance(event, ModelLoading | ModelReady):
            # The model a job loads is news of that job: its log carries it (a loading
            # model's path named by its file name only; the server's folders stay its own).
            running = self._service.queue.running
            job_id = running.id if running is not None else None
            if isinstance(event, ModelLoading):
                event = dataclasses.replace(event, model=Path(event.model).name)
        if not isinstance(job_id, int):
            return
        with self._lock:
            log = self._log_locked(job_id)
            self._update_progress(event)
        log.append(event)

    def _update_progress(self, event: Event) -> None:
        p = self._progress
        if isinstance(event, JobStarted):
            self._progress = Progress(
                job_id=event.job_id,
                started=time.time(),
                batch_count=event.params.batch_count,
                steps=event.total_steps,
            )
        elif isinstance(event, StageStarted) and event.job_id == p.job_id:
            p.stage, p.stages, p.step, p.steps = event.index, event.count, 0, event.total_steps
            p.batch_index = 0
        elif isinstance(event, StepProgress) and event.job_id == p.job_id:
            p.stage, p.batch_index = event.stage, event.batch_index
            p.step, p.steps = event.step, event.total
            if event.preview is not None:
                p.preview = event.preview
        elif isinstance(event, FINAL_EVENTS) and event.job_id == p.job_id:
            self._progress = Progress()
            self._interrupted.discard(event.job_id)


def outcome_records(outcome: Outcome) -> tuple[ImageRecord, ...]:
    """The images a job saved: all of a finished one, the earlier rounds of a cancelled one."""
    if isinstance(outcome, JobFinished):
        return outcome.records
    if isinstance(outcome, JobCancelled):
        return outcome.saved
    return ()


def _without_preview(event: Event) -> Event:
    if isinstance(event, StepProgress) and event.preview is not None:
        return dataclasses.replace(event, preview=None)
    return event
