"""The torch thread and the event relay that lets a backend's generator stream from inside
diffusers' step callback; `TorchThread` runs the work, `Relay.stream()` runs on the consumer's.

A generator cannot yield from inside `callback_on_step_end`, so the torch work of a job runs on
the backend's own thread and sends its events through a `Relay`; `execute()` yields them on the
consumer's thread and re-raises how the job ended. The two sides stay in step: every cancel
check on the torch side first waits until the consumer has handled every event sent before it
(almost always long done: the consumer had a whole denoising step for it). So a listener that
cancels on seeing step k stops the job at step k + 1, exactly as when the hook called it
directly, and the denoising loop never waits on a slow preview consumer for more than a step.

The torch thread is a daemon, like the service's worker: a front end that must quit at once (a
second Ctrl+C) is not held by a denoising loop; everything saved before then is complete.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, TypeVar

from ldstudio.core.backend import BackendEvent
from ldstudio.core.jobs import Cancelled, CancelToken

log = logging.getLogger(__name__)

T = TypeVar("T")
_Call = tuple[Callable[[], Any], "Future[Any]"]


class TorchThread:
    """One daemon thread running submitted calls one at a time, in order; started on first use."""

    def __init__(self, name: str = "ldstudio-torch") -> None:
        self.name = name
        self._calls: SimpleQueue[_Call | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        # A backend dropped without close() must not leave its thread waiting forever.
        weakref.finalize(self, self._calls.put, None)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        if self._thread is None:
            self._thread = threading.Thread(
                target=_serve, args=(self._calls,), name=self.name, daemon=True
            )
            self._thread.start()
        future: Future[T] = Future()
        self._calls.put((fn, future))
        return future

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the torch thread and return its result (inline when already on it)."""
        if threading.current_thread() is self._thread:
            return fn()
        return self.submit(fn).result()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def close(self) -> None:
        """Let the thread finish what was submitted, then end it; a later submit starts anew."""
        thread = self._thread
        if thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError("the torch thread cannot close itself")
        self._thread = None
        self._calls.put(None)
        thread.join()


def _serve(calls: SimpleQueue[_Call | None]) -> None:
    while (item := calls.get()) is not None:
        fn, future = item
        if not future.set_running_or_notify_cancel():
            continue
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        del item, fn, future  # nothing of a finished call stays alive while the thread waits


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Relay:
    """Carries one job's events from the torch thread to the consumer of `stream()`.

    Torch side: `send(event)`, `check(step)` at every step boundary (raises `Cancelled`),
    `finish(error)` exactly once at the end. Consumer side: iterate `stream()`.
    """

    def __init__(self, cancel: CancelToken) -> None:
        self.cancel = cancel
        self._events: SimpleQueue[BackendEvent | _End] = SimpleQueue()
        self._handled: SimpleQueue[None] = SimpleQueue()  # one per event the consumer is done with
        self._unhandled = 0  # torch side only
        self._aborted = threading.Event()

    # -- torch side --------------------------------------------------------------------------

    def send(self, event: BackendEvent) -> None:
        self._unhandled += 1
        self._events.put(event)

    def check(self, step: int) -> None:
        """Raise `Cancelled(step)` if the job was cancelled, or its consumer went away, by now."""
        while self._unhandled and not self._aborted.is_set():
            self._handled.get()
            self._unhandled -= 1
        if self._aborted.is_set() or self.cancel.cancelled:
            raise Cancelled(step)

    def finish(self, error: BaseException | None) -> None:
        self._events.put(_End(error))

    # -- consumer side -----------------------------------------------------------------------

    def stream(self) -> Iterator[BackendEvent]:
        """Yield the events until the job's end; re-raise how it failed or was cancelled.

        Closed early (the consumer stopped: GeneratorExit), it tells the torch side to stop at
        its next step and waits until it has.
        """
        handed = ended = False
        try:
            while True:
                if handed:
                    self._handled.put(None)
                item = self._events.get()
                if isinstance(item, _End):
                    ended = True
                    if item.error is not None:
                        raise item.error
                    return
                handed = True
                yield item
        finally:
            if not ended:
                self._aborted.set()
                self._handled.put(None)  # wakes a torch side waiting in check()
                while not isinstance(end := self._events.get(), _End):
                    pass
                if end.error is not None and not isinstance(end.error, Cancelled):
                    log.warning("a job stopped early also failed: %r", end.error)
