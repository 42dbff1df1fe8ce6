"""Running jobs on a real backend the way every front end does: through an EngineService.

`run_job` submits one job to a fresh service over a backend the test owns (the service never
closes it: a session fixture's backend outlives the job) and returns the job, its final state
and the job's events, in order, as the old `backend.run(job, emit, sink)` returned them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ldstudio.core.backend import Backend, BackendEvent, DeviceInfo
from ldstudio.core.events import EngineReady, Event, JobCancelled, JobFailed, JobFinished
from ldstudio.core.imagefiles import ImageSink
from ldstudio.core.jobs import CancelToken, Job, JobState
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.core.service import EngineService

TIMEOUT = 600.0
STATES = {
    JobFinished: JobState.FINISHED,
    JobFailed: JobState.FAILED,
    JobCancelled: JobState.CANCELLED,
}


class Borrowed:
    """A backend the service may run jobs on but not close: the test closes it (or not)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.concurrent_jobs = getattr(backend, "concurrent_jobs", 1)

    @property
    def choice(self) -> DeviceInfo:
        return self.backend.choice

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]:
        return self.backend.execute(request, cancel)

    def close(self) -> None:
        pass


@contextmanager
def service_for(
    backend: Backend, sink: ImageSink, on_event: Callable[[Event], None] | None = None
) -> Iterator[tuple[EngineService, list[Event]]]:
    """A service over `backend` (not started) and the list its events go to, without the
    EngineReady it announces (about the service, not a job); `on_event` sees each event after
    it is listed, on the worker thread. Closed on exit: the worker is joined, so every event of
    a job that ended is in the list."""
    service = EngineService(lambda: Borrowed(backend), sink)
    events: list[Event] = []

    def listen(event: Event) -> None:
        if isinstance(event, EngineReady):
            return
        events.append(event)
        if on_event is not None:
            on_event(event)

    service.subscribe(listen)
    try:
        yield service, events
    finally:
        service.close(TIMEOUT)


def run_job(
    backend: Backend,
    params: GenerationParams | Request,
    sink: ImageSink,
    on_event: Callable[[Job, Event], None] | None = None,
    *,
    cancelled: bool = False,
) -> tuple[Job, JobState, list[Event]]:
    """Run one job to its end and return (job, final state, events). `on_event(job, event)`
    is called for each event; `cancelled` cancels the job before the worker takes it."""
    holder: list[Job] = []

    def listen(event: Event) -> None:
        if on_event is not None:
            on_event(holder[0], event)

    with service_for(backend, sink, listen) as (service, events):
        # Submitted before start(): the listener knows the job from its first event.
        holder.append(service.submit(params))
        if cancelled:
            holder[0].cancel()
        service.start()
        service.wait(holder[0], TIMEOUT)
    return holder[0], state_of(events), events


def state_of(events: list[Any]) -> JobState:
    """The final state the job's last event says."""
    return STATES[type(events[-1])]
