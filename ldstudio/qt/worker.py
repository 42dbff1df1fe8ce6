"""EngineWorker and EngineThread: the one Qt object that calls a backend; engine thread.

The backend is built by a factory on the engine thread, so heavy imports (torch) happen there
while the window paints. The worker loops `take → run → finish` on the job queue; it blocks in
`take()`, so shutdown is `queue.close()` (wakes it) then `thread.quit()` and `thread.wait()`.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ldstudio.core.events import Event, JobFailed
from ldstudio.core.imagefiles import ImageSink
from ldstudio.core.jobs import Job, JobQueue, JobState

log = logging.getLogger(__name__)


class DeviceInfo(Protocol):
    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def label(self) -> str: ...


class Backend(Protocol):
    """What the worker needs from DiffusersBackend (and the fake one used by UI tests)."""

    @property
    def choice(self) -> DeviceInfo: ...

    def run(self, job: Job, emit: Callable[[Event], None], sink: ImageSink) -> JobState: ...

    def close(self) -> None: ...


BackendFactory = Callable[[], Backend]


class EngineWorker(QObject):
    """Runs jobs from the queue one at a time; every outcome leaves as a signal."""

    backend_ready = Signal(str)  # the device label, e.g. "CPU · fp32"
    backend_failed = Signal(str)  # a readable message: no job can run
    event_emitted = Signal(object)  # a frozen ldstudio.core.events object
    stopped = Signal()

    def __init__(self, queue: JobQueue, factory: BackendFactory, sink: ImageSink) -> None:
        super().__init__()
        self._queue = queue
        self._factory = factory
        self._sink_lock = threading.Lock()
        self._sink = sink

    def set_sink(self, sink: ImageSink) -> None:
        """Called from the GUI thread; the next job saves through the new sink."""
        with self._sink_lock:
            self._sink = sink

    @Slot()
    def run(self) -> None:
        try:
            backend = self._factory()
        except Exception as exc:
            log.exception("the engine could not start")
            self.backend_failed.emit(f"The engine could not start: {type(exc).__name__}: {exc}")
            self._fail_everything(f"The engine is not running: {exc}")
            self.stopped.emit()
            return
        self.backend_ready.emit(backend.choice.label)
        try:
            while (job := self._queue.take()) is not None:
                with self._sink_lock:
                    sink = self._sink
                try:
                    state = backend.run(job, self.event_emitted.emit, sink)
                except Exception as exc:  # a backend must not raise; if one does, stay alive
                    detail = "".join(traceback.format_exception(exc)[-6:])
                    self.event_emitted.emit(
                        JobFailed(job.id, f"Generation failed: {type(exc).__name__}: {exc}", detail)
                    )
                    state = JobState.FAILED
                self._queue.finish(job, state)
        finally:
            backend.close()
            self.stopped.emit()

    def _fail_everything(self, message: str) -> None:
        # Without a backend, queued jobs must still end so nobody waits on them forever.
        while (job := self._queue.take(timeout=None)) is not None:
            self.event_emitted.emit(JobFailed(job.id, message, message))
            self._queue.finish(job, JobState.FAILED)


class EngineThread:
    """Owns the QThread and its worker; start once, stop once (from the GUI thread)."""

    def __init__(self, queue: JobQueue, factory: BackendFactory, sink: ImageSink) -> None:
        self.queue = queue
        self.thread = QThread()
        self.thread.setObjectName("ldstudio-engine")
        self.worker = EngineWorker(queue, factory, sink)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self._started = False

    def start(self) -> None:
        self._started = True
        self.thread.start()

    def stop(self) -> None:
        """Cancel everything, let the running job stop at its next step, join the thread."""
        self.queue.close()
        if self._started:
            self.thread.quit()
            self.thread.wait()
            self._started = False
