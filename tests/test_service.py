"""EngineService: one queue, one worker, saving outside the backend, each job ended once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldstudio.core.backend import JobError, StageStarted, Step
from ldstudio.core.events import (
    EngineFailed,
    EngineReady,
    Event,
    JobCancelled,
    JobCancelling,
    JobFailed,
    JobFinished,
    JobStarted,
    StepProgress,
)
from ldstudio.core.imagefiles import FolderSink
from ldstudio.core.jobs import CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.core.service import EngineService
from ldstudio.engine.fake import FakeBackend

PARAMS = GenerationParams(prompt="a cat", steps=3, seed=7)


@pytest.fixture
def service_for(tmp_path: Path) -> Iterator:
    services: list[EngineService] = []

    def make(backend: object, sink: object | None = None) -> tuple[EngineService, list[Event]]:
        service = EngineService(lambda: backend, sink or FolderSink(tmp_path))  # type: ignore[arg-type, return-value]
        events: list[Event] = []
        service.subscribe(events.append)
        service.start()
        services.append(service)
        return service, events

    yield make
    for service in services:
        service.close(timeout=10)
        assert not service.running_thread


def test_a_job_runs_saves_then_reports(service_for, tmp_path: Path) -> None:
    service, events = service_for(FakeBackend())
    seen_on_disk: list[bool] = []
    heard = threading.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, JobFinished):
            seen_on_disk.extend(r.path.is_file() for r in event.records)
            heard.set()

    service.subscribe(on_event)
    outcome = service.run(PARAMS.replace(batch_count=2), timeout=10)
    assert heard.wait(10)  # `run` returns as the end is told, not after every listener
    assert isinstance(outcome, JobFinished)
    assert [r.seed for r in outcome.records] == [7, 8]
    assert seen_on_disk == [True, True]  # saved before reported
    kinds = [type(e) for e in events]
    assert kinds[0] is EngineReady
    assert kinds.index(JobStarted) < kinds.index(StepProgress) < kinds.index(JobFinished)
    assert [e.step for e in events if isinstance(e, StepProgress)] == [1, 2, 3, 1, 2, 3]
    assert kinds.count(JobFinished) == 1 and kinds[-1] is JobFinished
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        r.path.name for r in outcome.records
    )


def test_the_job_is_finished_before_its_end_is_reported(service_for) -> None:
    service, _events = service_for(FakeBackend())
    listed_at_end: list[list[int]] = []
    service.subscribe(
        lambda e: (
            listed_at_end.append([j.id for j in service.jobs()])
            if isinstance(e, JobFinished)
            else None
        )
    )
    service.run(PARAMS, timeout=10)
    service.close(timeout=10)  # every listener has been told by the time the worker is gone
    assert listed_at_end == [[]]


def test_pending_and_running_jobs_cancel_once_each(service_for) -> None:
    backend = FakeBackend()
    backend.hold_at_step = 2
    service, events = service_for(backend)
    running, waiting = service.submit(PARAMS), service.submit(PARAMS)
    while not any(isinstance(e, StepProgress) and e.step == 2 for e in events):
        threading.Event().wait(0.005)
    service.cancel_all()
    service.cancel(waiting.id)  # a second cancel of a job already over: nothing more
    first, second = service.wait(running, 10), service.wait(waiting, 10)
    service.close(timeout=10)  # and so every listener has heard both ends
    assert isinstance(first, JobCancelled) and first.step == 2
    assert isinstance(second, JobCancelled) and second.step == 0
    ends = [e for e in events if isinstance(e, JobCancelled)]
    assert sorted(e.job_id for e in ends) == sorted([running.id, waiting.id])
    assert [e.job_id for e in events if isinstance(e, JobCancelling)] == [running.id]
    assert backend.jobs_run == [running.id]  # the pending one never reached the backend


class _Raising:
    """A backend whose execute raises `error` after one step."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closed_early = False
        self.choice = FakeBackend().choice

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[object]:
        yield StageStarted(request.params.resolved().replace(width=64, height=64), 3, 1)
        yield Step(0, 1, 3, 0.1, 10.0)
        raise self.error

    def close(self) -> None:
        pass


def test_failures_are_worded_and_the_worker_stays_alive(service_for) -> None:
    service, _events = service_for(_Raising(RuntimeError("boom")))
    outcome = service.run(PARAMS, timeout=10)
    assert isinstance(outcome, JobFailed)
    assert outcome.message == "Generation failed: RuntimeError: boom"
    assert "RuntimeError" in outcome.detail
    again = service.run(PARAMS, timeout=10)  # the same worker takes the next job
    assert isinstance(again, JobFailed)


def test_a_job_error_is_shown_in_its_own_words(service_for) -> None:
    service, _events = service_for(_Raising(JobError("Out of memory on CUDA. Try less.", "oom")))
    outcome = service.run(PARAMS, timeout=10)
    assert isinstance(outcome, JobFailed)
    assert (outcome.message, outcome.detail) == ("Out of memory on CUDA. Try less.", "oom")


def test_a_failing_sink_fails_the_job_and_stops_the_backend(service_for) -> None:
    class FullDisk:
        def save(self, *_args: object, **_kwargs: object) -> object:
            raise OSError(28, "No space left on device")

    closed: list[bool] = []

    class Watched(FakeBackend):
        def execute(self, request: Request, cancel: CancelToken) -> Iterator[object]:
            try:
                yield from super().execute(request, cancel)
            finally:
                closed.append(True)

    service, _events = service_for(Watched(), FullDisk())
    outcome = service.run(PARAMS.replace(batch_count=3), timeout=10)
    assert isinstance(outcome, JobFailed)
    assert "No space left on device" in outcome.message
    assert closed == [True]


def test_a_listener_that_raises_harms_nobody(service_for) -> None:
    service, events = service_for(FakeBackend())

    def broken(_event: Event) -> None:
        raise ValueError("listener bug")

    service.subscribe(broken)
    assert isinstance(service.run(PARAMS, timeout=10), JobFinished)
    service.close(timeout=10)
    assert isinstance(events[-1], JobFinished)


def test_unsubscribed_listeners_hear_nothing_more(service_for) -> None:
    service, _events = service_for(FakeBackend())
    heard: list[Event] = []
    unsubscribe = service.subscribe(heard.append)
    first = service.run(PARAMS, timeout=10)
    while not heard or heard[-1] != first:  # until the first job's end reached this listener
        threading.Event().wait(0.005)
    count = len(heard)
    unsubscribe()
    service.run(PARAMS, timeout=10)
    service.close(timeout=10)
    assert len(heard) == count > 0


def test_an_engine_that_cannot_start_fails_every_job(tmp_path: Path) -> None:
    def factory() -> FakeBackend:
        raise RuntimeError("no GPU driver")

    service = EngineService(factory, FolderSink(tmp_path))
    events: list[Event] = []
    service.subscribe(events.append)
    service.start()
    outcome = service.run(PARAMS, timeout=10)
    service.close(timeout=10)
    assert isinstance(outcome, JobFailed)
    assert outcome.message == "The engine is not running: no GPU driver"
    assert isinstance(events[0], EngineFailed)
    assert events[0].message == "The engine could not start: RuntimeError: no GPU driver"


def test_close_ends_waiting_jobs_and_joins_the_worker(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.hold_at_step = 1
    service = EngineService(lambda: backend, FolderSink(tmp_path))
    service.start()
    running, waiting = service.submit(PARAMS), service.submit(PARAMS)
    service.close(timeout=10)
    assert not service.running_thread
    assert isinstance(service.wait(running, 1), JobCancelled)
    assert isinstance(service.wait(waiting, 1), JobCancelled)
    assert backend.closed
    with pytest.raises(RuntimeError, match="shutting down"):
        service.submit(PARAMS)


def test_invalid_requests_are_refused_at_submit(service_for) -> None:
    service, _events = service_for(FakeBackend())
    with pytest.raises(ValueError, match=r"steps: 0 is out of range"):
        service.submit(PARAMS.replace(steps=0))
    with pytest.raises(ValueError, match=r"kind: 'paint' is not supported; allowed: txt2img"):
        service.submit(Request(PARAMS, kind="paint"))


class _Meeting:
    """A backend whose jobs each wait (up to 10 s) until `expected` jobs are inside execute at
    once; records the most that ever were. `concurrent_jobs` is what it declares."""

    def __init__(self, concurrent_jobs: int | None, expected: int) -> None:
        if concurrent_jobs is not None:
            self.concurrent_jobs = concurrent_jobs
        self.choice = FakeBackend().choice
        self.barrier = threading.Barrier(expected, timeout=10)
        self.lock = threading.Lock()
        self.inside = self.most = 0
        self.closed = 0

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[object]:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            yield StageStarted(request.params.resolved().replace(width=64, height=64), 1, 1)
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                raise JobError("never met the other jobs") from None
        finally:
            with self.lock:
                self.inside -= 1

    def close(self) -> None:
        self.closed += 1


def test_a_backend_declaring_concurrent_jobs_gets_that_many_lanes(tmp_path: Path) -> None:
    backend = _Meeting(concurrent_jobs=3, expected=3)
    service = EngineService(lambda: backend, FolderSink(tmp_path))
    service.start()
    jobs = [service.submit(PARAMS) for _ in range(3)]
    outcomes = [service.wait(job, 30) for job in jobs]
    assert not any(isinstance(o, JobFailed) for o in outcomes), outcomes
    assert backend.most == 3
    service.close(timeout=10)
    assert backend.closed == 1  # closed once, after every lane has stopped
    assert not service.running_thread


def test_every_other_backend_runs_one_job_at_a_time(tmp_path: Path) -> None:
    backend = _Meeting(concurrent_jobs=None, expected=2)
    service = EngineService(lambda: backend, FolderSink(tmp_path))
    service.start()
    jobs = [service.submit(PARAMS) for _ in range(2)]
    # One lane: the first job waits alone for a second that never comes in beside it.
    first = service.wait(jobs[0], 30)
    assert isinstance(first, JobFailed) and first.message == "never met the other jobs"
    assert backend.most == 1
    service.close(timeout=30)
