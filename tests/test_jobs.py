"""Jobs, cancel tokens and the queue feeding the single engine worker (no torch, no Qt)."""

from __future__ import annotations

import threading

import pytest

from ldstudio.core.jobs import Cancelled, CancelToken, Job, JobQueue, JobState
from ldstudio.core.params import GenerationParams


def test_job_create_validates_and_resolves_seed() -> None:
    job = Job.create(GenerationParams(prompt="x"))
    assert isinstance(job.params.seed, int)
    assert job.state is JobState.QUEUED
    with pytest.raises(ValueError, match="steps"):
        Job.create(GenerationParams(prompt="x", steps=0))
    assert Job.create(GenerationParams(prompt="x")).id != job.id


def test_cancel_token() -> None:
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.raise_if_cancelled()


def test_queue_is_fifo_and_tracks_running() -> None:
    queue = JobQueue()
    a, b = queue.submit(GenerationParams(prompt="a")), queue.submit(GenerationParams(prompt="b"))
    assert len(queue) == 2
    assert queue.take() is a and a.state is JobState.RUNNING
    assert queue.running is a and queue.pending() == [b]
    queue.finish(a, JobState.FINISHED)
    assert queue.running is None and a.state is JobState.FINISHED
    with pytest.raises(ValueError, match="final state"):
        queue.finish(b, JobState.RUNNING)


def test_cancel_pending_removes_it_and_cancel_running_sets_its_token() -> None:
    queue = JobQueue()
    jobs = [queue.submit(GenerationParams(prompt=str(i))) for i in range(3)]
    running = queue.take()
    assert queue.cancel(jobs[1].id) is jobs[1]
    assert jobs[1].state is JobState.CANCELLED and queue.pending() == [jobs[2]]
    assert queue.cancel(running.id) is running
    assert running.cancel_token.cancelled and running.state is JobState.RUNNING
    assert queue.cancel(9_999_999) is None


def test_cancel_all_and_close_wake_the_consumer() -> None:
    queue = JobQueue()
    got: list[Job | None] = []
    consumer = threading.Thread(target=lambda: got.append(queue.take()))
    consumer.start()
    queue.close()
    consumer.join(timeout=5)
    assert not consumer.is_alive() and got == [None]
    with pytest.raises(RuntimeError, match="closed"):
        queue.submit(GenerationParams(prompt="x"))


def test_take_times_out_when_empty() -> None:
    assert JobQueue().take(timeout=0.01) is None


def test_several_running_jobs_are_listed_cancelled_and_finished_each() -> None:
    queue = JobQueue()
    first, second, third = (queue.submit(GenerationParams(prompt=p)) for p in "abc")
    assert queue.take() is first and queue.take() is second
    assert queue.running is first
    assert queue.running_jobs() == [first, second]
    assert len(queue) == 3
    assert queue.cancel(second.id) is second and second.cancel_token.cancelled
    assert not first.cancel_token.cancelled
    queue.finish(first, JobState.FINISHED)
    assert queue.running_jobs() == [second] and queue.running is second
    assert [j.id for j in queue.cancel_all()] == [third.id, second.id]
    queue.finish(second, JobState.CANCELLED)
    assert queue.running is None and len(queue) == 0
