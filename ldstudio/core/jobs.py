"""Jobs, their cancel tokens and the FIFO queue feeding the engine worker(s); thread-safe.

`save_queue` / `load_queue` keep the requests of jobs not yet run in the data folder, so a
quit with jobs waiting can offer them again at the next start.
"""

from __future__ import annotations

import enum
import itertools
import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ldstudio.core import paths
from ldstudio.core.atomic import atomic_file
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import KIND_TXT2IMG, Request, as_request

QUEUE_FORMAT = 1


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


class Cancelled(Exception):
    """Raised inside a backend when a job's cancel token is set; the service ends the job.

    `step` is the last step completed when the cancel was honoured, when the raiser knows it.
    """

    def __init__(self, step: int | None = None) -> None:
        super().__init__("cancelled" if step is None else f"cancelled after step {step}")
        self.step = step


class CancelToken:
    """A flag set from any thread (the GUI, a signal handler), polled by the engine every step.

    `job_id` names the job it cancels (for backends' logs and the fake backend's record).
    """

    def __init__(self, job_id: int | None = None) -> None:
        self.job_id = job_id
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self, step: int | None = None) -> None:
        if self._event.is_set():
            raise Cancelled(step)


_job_ids = itertools.count(1)


@dataclass
class Job:
    """One submitted request, resolved (concrete seed) when the job is created."""

    request: Request
    id: int = field(default_factory=lambda: next(_job_ids))
    cancel_token: CancelToken = field(init=False)
    state: JobState = JobState.QUEUED
    taken: bool = False  # set (for good) when the worker takes it from the queue

    def __post_init__(self) -> None:
        self.cancel_token = CancelToken(self.id)

    @classmethod
    def create(cls, request: Request | GenerationParams) -> Job:
        """Validate, resolve the seed, and wrap in a new job. Raises ValueError on bad input."""
        return cls(request=as_request(request).resolved())

    @property
    def params(self) -> GenerationParams:
        return self.request.params

    def cancel(self) -> None:
        self.cancel_token.cancel()


class JobQueue:
    """FIFO of pending jobs plus the running ones. All methods are thread-safe.

    The consumer (the engine worker; several for a backend that runs jobs side by side, as a
    cluster does) calls `take()` and later `finish()`; producers call `submit()` and the cancel
    methods from any thread. Jobs start in submission order.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []  # in the order they were taken
        self._closed = False

    def submit(self, request: Request | GenerationParams) -> Job:
        job = Job.create(request)
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue is closed; ldstudio is shutting down")
            self._pending.append(job)
            self._lock.notify()
        return job

    def take(self, timeout: float | None = None) -> Job | None:
        """Block until a job is pending, mark it running and return it; None when closed/timeout."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._pending or self._closed, timeout):
                return None
            if self._closed:
                return None
            job = self._pending.popleft()
            job.state = JobState.RUNNING
            job.taken = True
            self._running.append(job)
            return job

    def finish(self, job: Job, state: JobState) -> None:
        if not state.is_final:
            raise ValueError(f"finish() needs a final state, got {state.value}")
        with self._lock:
            job.state = state
            # By identity: Job is a dataclass, and == compares its fields.
            self._running = [j for j in self._running if j is not job]

    def cancel(self, job_id: int) -> Job | None:
        """Cancel a pending job (removed at once) or the running one (stops at the next step)."""
        with self._lock:
            for job in self._pending:
                if job.id == job_id:
                    self._pending.remove(job)
                    job.cancel()
                    job.state = JobState.CANCELLED
                    return job
            for job in self._running:
                if job.id == job_id:
                    job.cancel()
                    return job
        return None

    def cancel_all(self) -> list[Job]:
        with self._lock:
            cancelled = list(self._pending)
            self._pending.clear()
            for job in cancelled:
                job.cancel()
                job.state = JobState.CANCELLED
            for job in self._running:
                job.cancel()
                cancelled.append(job)
            return cancelled

    def close(self) -> None:
        """Cancel everything and wake the consumer so it can exit."""
        self.cancel_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    @property
    def running(self) -> Job | None:
        """The running job taken first (the only one on a one-lane engine), or None."""
        with self._lock:
            return self._running[0] if self._running else None

    def running_jobs(self) -> list[Job]:
        """Every running job, the earliest taken first."""
        with self._lock:
            return list(self._running)

    def pending(self) -> list[Job]:
        with self._lock:
            return list(self._pending)

    def __len__(self) -> int:
        """Jobs not yet final: pending plus running."""
        with self._lock:
            return len(self._pending) + len(self._running)


def saved_queue_file() -> Path:
    return paths.home_dir() / "queue.json"


def save_queue(jobs: Sequence[Request | GenerationParams], path: Path | None = None) -> None:
    """Keep these jobs' requests for the next start (written atomically); [] removes them.

    A txt2img job is kept as its bare params (as before requests had kinds, so an older
    ldstudio still reads it); any other kind as its whole request.
    """
    target = path or saved_queue_file()
    if not jobs:
        target.unlink(missing_ok=True)
        return
    requests = [as_request(job) for job in jobs]
    payload = {
        "format": QUEUE_FORMAT,
        "jobs": [r.params.to_dict() if r.kind == KIND_TXT2IMG else r.to_dict() for r in requests],
    }
    with atomic_file(target, private=True) as handle:
        handle.write(json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8"))


def load_queue(path: Path | None = None) -> list[Request]:
    """The jobs kept by `save_queue` ([] when none); ValueError naming the file and the fault."""
    source = path or saved_queue_file()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{source}: cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{source}: nested too deeply to be a kept queue") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise ValueError(f'{source}: expected an object with a "jobs" list')
    if data.get("format") != QUEUE_FORMAT:
        raise ValueError(
            f"{source}: format {data.get('format')!r} is not supported; allowed: {QUEUE_FORMAT}"
        )
    jobs = []
    for at, item in enumerate(data["jobs"]):
        try:
            jobs.append(Request.from_dict(item))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: job {at + 1}: {exc}") from None
    return jobs
