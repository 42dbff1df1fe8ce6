"""BackgroundRunner: a window's background work, with results back on the GUI thread.

One object per window for everything it does off the GUI thread or later on it (Anki's
`QueryOp`/`TaskManager` shape, on qasync): `run` awaits a blocking function on an executor
thread, `call` does the same with callbacks instead of `await`, `spawn` runs a GUI-thread
coroutine, and `later` runs a plain callback after the current event. Results and exceptions are
delivered on the GUI thread; after `close()` nothing is delivered any more and tasks are
cancelled. `pending()` counts what has not finished, for tests. The engine thread is not
background work: it is the engine (qt/worker.py). Created and used on the GUI thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar

from PySide6.QtCore import QTimer

log = logging.getLogger(__name__)
T = TypeVar("T")

ErrorHandler = Callable[[BaseException], None]


class BackgroundRunner:
    def __init__(self, on_error: ErrorHandler | None = None, executor: Executor | None = None):
        """`on_error` is told what a task, a callback or a deferred call raised and nobody
        caught (while open); `executor` None is the event loop's default one."""
        self._on_error = on_error
        self._executor = executor
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deferred = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> int:
        """Tasks and deferred calls not finished yet."""
        return len(self._tasks) + self._deferred

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` on an executor thread; its result or exception comes back here. After
        `close()` the awaiting task is cancelled instead (the thread itself runs to its end)."""
        result = await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        if self._closed:
            raise asyncio.CancelledError
        return result

    def call(
        self,
        func: Callable[..., T],
        *args: Any,
        then: Callable[[T], object] | None = None,
        failed: Callable[[Exception], object] | None = None,
    ) -> asyncio.Task[None]:
        """`func(*args)` on an executor thread, then `then(result)` or `failed(exception)` on
        the GUI thread; without `failed` an exception goes to `on_error`."""

        async def operation() -> None:
            try:
                result = await self.run(func, *args)
            except Exception as exc:
                if failed is None:
                    raise
                failed(exc)
                return
            if then is not None:
                then(result)

        return self.spawn(operation())

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run a coroutine on the GUI thread's event loop, cancelled at `close()`."""
        task = asyncio.get_event_loop().create_task(coro)
        if self._closed:
            task.cancel()
            return task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def later(self, func: Callable[[], object]) -> None:
        """`func()` on the GUI thread after the current event, from a plain callback: a modal
        dialog opened there lets the event loop's tasks run (inside a task it stalls them)."""
        if self._closed:
            return
        self._deferred += 1

        def fire() -> None:
            self._deferred -= 1
            if self._closed:
                return
            try:
                func()
            except Exception as exc:  # nothing escapes into Qt's event loop
                self._report(exc)

        QTimer.singleShot(0, fire)

    def close(self) -> None:
        """Cancel the tasks and forget the deferred calls: nothing is delivered from now on."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if self._closed:
            return
        if self._on_error is None:
            log.error("background work failed", exc_info=exc)
        else:
            self._on_error(exc)
