"""BackgroundRunner: work off the GUI thread, results and errors back on it, nothing after close."""

from __future__ import annotations

import asyncio
import threading

import pytest
from gui_support import qt_loop

from ldstudio.qt.background import BackgroundRunner

pytestmark = pytest.mark.gui

__all__ = ["qt_loop"]  # the fixture, used by name

GUI_THREAD = threading.get_ident()


def where() -> int:
    return threading.get_ident()


def boom() -> None:
    raise OSError("disk on fire")


@pytest.fixture
def errors() -> list[BaseException]:
    return []


@pytest.fixture
def runner(qt_loop, errors: list[BaseException]) -> BackgroundRunner:
    return BackgroundRunner(on_error=errors.append)


def test_a_result_comes_back_on_the_gui_thread(qtbot, runner: BackgroundRunner) -> None:
    got: list[tuple[int, int]] = []
    runner.call(where, then=lambda worker: got.append((worker, where())))
    assert runner.pending() == 1
    qtbot.waitUntil(lambda: bool(got))
    worker, delivered = got[0]
    assert worker != GUI_THREAD and delivered == GUI_THREAD
    qtbot.waitUntil(lambda: runner.pending() == 0)


def test_an_awaited_result_and_exception_come_back_on_the_gui_thread(
    qtbot, runner: BackgroundRunner, errors: list[BaseException]
) -> None:
    seen: list[object] = []

    async def work() -> None:
        seen.append(await runner.run(where))
        seen.append(where())
        try:
            await runner.run(boom)
        except OSError as exc:
            seen.append((str(exc), where()))

    task = runner.spawn(work())
    qtbot.waitUntil(task.done)
    assert seen[0] != GUI_THREAD and seen[1] == GUI_THREAD
    assert seen[2] == ("disk on fire", GUI_THREAD)
    assert errors == []


def test_an_exception_goes_to_failed_or_else_to_on_error(
    qtbot, runner: BackgroundRunner, errors: list[BaseException]
) -> None:
    failed: list[tuple[str, int]] = []
    runner.call(
        boom,
        then=lambda _: failed.append(("then", 0)),
        failed=lambda exc: failed.append((str(exc), where())),
    )
    qtbot.waitUntil(lambda: bool(failed))
    assert failed == [("disk on fire", GUI_THREAD)]
    runner.call(boom)
    qtbot.waitUntil(lambda: bool(errors))
    assert isinstance(errors[0], OSError)


def test_a_deferred_call_runs_later_from_a_plain_callback(
    qtbot, runner: BackgroundRunner, errors: list[BaseException]
) -> None:
    ran: list[asyncio.Task[object] | None] = []
    runner.later(lambda: ran.append(asyncio.current_task()))
    assert ran == [] and runner.pending() == 1  # not at once
    qtbot.waitUntil(lambda: bool(ran))
    assert ran == [None]  # not inside a task: a modal dialog there would stall the others
    runner.later(boom)
    qtbot.waitUntil(lambda: bool(errors))
    assert runner.pending() == 0


def test_nothing_is_delivered_after_close(
    qtbot, runner: BackgroundRunner, errors: list[BaseException]
) -> None:
    release = threading.Event()
    got: list[object] = []

    def slow() -> str:
        release.wait(5)
        return "late"

    async def awaiting() -> None:
        got.append(await runner.run(slow))

    runner.call(slow, then=got.append, failed=got.append)
    task = runner.spawn(awaiting())
    runner.later(lambda: got.append("deferred"))
    runner.call(boom)  # its error is not reported either
    assert runner.pending() == 4
    runner.close()
    release.set()
    qtbot.waitUntil(lambda: runner.pending() == 0)
    qtbot.wait(100)  # the executor threads have finished by now
    assert got == [] and errors == []
    assert task.cancelled()
    late = runner.spawn(awaiting())  # started after close: cancelled at once
    qtbot.waitUntil(late.done)
    assert late.cancelled()
    runner.later(lambda: got.append("after"))
    qtbot.wait(20)
    assert got == [] and runner.pending() == 0
