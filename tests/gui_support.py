"""Fixtures and helpers for the pytest-qt GUI tests: a qasync loop, windows on a fake backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from ldstudio.app import build_window
from ldstudio.core.request import Request, as_request
from ldstudio.core.service import BackendFactory
from ldstudio.core.settings import Settings
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.main_window import MainWindow

JOB_TIMEOUT_MS = 10_000


@pytest.fixture
def qt_loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """A qasync loop marked running, so tasks step while pytest-qt spins the Qt event loop."""
    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    # pytest-qt drives Qt's event loop itself; qasync's callbacks run inside it, and
    # asyncio APIs need to see the loop as the running one.
    asyncio.events._set_running_loop(loop)
    try:
        yield loop
    finally:
        asyncio.events._set_running_loop(None)
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


WindowMaker = Callable[..., MainWindow]


@pytest.fixture
def make_window(qtbot, qt_loop: asyncio.AbstractEventLoop) -> Iterator[WindowMaker]:
    """Build, show and start windows; at teardown close them and check no engine thread lives."""
    windows: list[MainWindow] = []

    def make(backend: FakeBackend | BackendFactory, settings: Settings | None = None) -> MainWindow:
        factory = backend if callable(backend) and not isinstance(backend, FakeBackend) else None
        window = build_window(factory or (lambda: backend), settings=settings)
        qtbot.addWidget(window)
        window.show()
        window.start()
        windows.append(window)
        return window

    yield make
    from ldstudio.qt import kept_queue

    # Jobs a test left waiting are dropped at teardown, not asked about in a modal dialog.
    asking = kept_queue.ask_keep_queue
    kept_queue.ask_keep_queue = lambda _parent, _count: kept_queue.DISCARD
    try:
        for window in windows:
            window.close()
    finally:
        kept_queue.ask_keep_queue = asking
    for window in windows:
        assert not window.controller.service.running_thread, "the engine thread outlived its window"


def generate(qtbot, window: MainWindow, prompt: str, timeout: int = JOB_TIMEOUT_MS) -> object:
    """Type `prompt`, press Generate, and return the job's final event."""
    set_prompt(window, prompt)
    with qtbot.waitSignal(window.controller.job_ended, timeout=timeout) as blocker:
        window.prompt_pane.generate_button.click()
    return blocker.args[0]


def set_prompt(window: MainWindow, prompt: str) -> None:
    window.prompt_pane.prompt_edit.setPlainText(prompt)


def output_pngs(home: Path) -> list[Path]:
    """The PNGs in the library (the engine saves there: images/YYYY-MM/)."""
    return sorted((home / "library" / "images").rglob("*.png"))


def spy_submissions(window: MainWindow) -> list[Request]:
    """The requests the window submits from now on, in order (each still submitted)."""
    submitted: list[Request] = []
    submit = window.controller.submit

    def spy(request):  # type: ignore[no-untyped-def]
        submitted.append(as_request(request))
        return submit(request)

    window.controller.submit = spy  # type: ignore[method-assign]
    return submitted
