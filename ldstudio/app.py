"""The composition root: wires core, engine and the Qt window, and runs the qasync loop; GUI thread.

The only module that knows all three layers. The backend factory runs on the engine thread, so
`import torch` happens there and the window paints first.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from ldstudio import __version__
from ldstudio.core import paths
from ldstudio.core.gallery import GalleryStore
from ldstudio.core.jobs import JobQueue
from ldstudio.core.settings import Settings, load_settings
from ldstudio.qt import refcount_guard
from ldstudio.qt.controller import GenerationController
from ldstudio.qt.main_window import MainWindow
from ldstudio.qt.worker import Backend, BackendFactory, EngineThread

log = logging.getLogger(__name__)

ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)


def diffusers_backend_factory(device: str = "auto", dtype: str = "auto") -> BackendFactory:
    """A factory that imports torch and builds the real backend when called (engine thread)."""

    def build() -> Backend:
        from ldstudio.engine.backend import DiffusersBackend

        return DiffusersBackend(device=device, dtype=dtype)

    return build


def app_icon() -> QIcon:
    icon = QIcon()
    for size in ICON_SIZES:
        path = paths.resource_path("icons", f"ldstudio-{size}.png")
        if path.is_file():
            icon.addFile(str(path))
    return icon


def ensure_application(argv: list[str] | None = None) -> QApplication:
    refcount_guard.install()  # before the first emit: see ldstudio.qt.refcount_guard
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("ldstudio")
    app.setApplicationDisplayName("ldstudio")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("ldstudio")
    app.setWindowIcon(app_icon())
    return app


def build_window(
    backend_factory: BackendFactory,
    settings: Settings | None = None,
    store: GalleryStore | None = None,
) -> MainWindow:
    """The main window wired to a fresh queue and engine thread (not started: `window.start()`)."""
    settings = settings if settings is not None else load_settings()
    # The library opens in ~1 ms (no reconcile here: the window runs it on a worker) and is
    # the engine's sink, so every finished image is indexed as it is saved.
    refcount_guard.install()
    if store is None:
        store = GalleryStore(settings.library_dir(), reconcile=False)
    engine = EngineThread(JobQueue(), backend_factory, store)
    controller = GenerationController(engine)
    return MainWindow(controller, settings, paths.bundled_model_dir(), store)


def run(backend_factory: BackendFactory | None = None, argv: list[str] | None = None) -> int:
    """Open the window and run until it closes; returns the process exit code."""
    import qasync

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = ensure_application(argv)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = build_window(backend_factory or diffusers_backend_factory())
    window.show()
    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)
    with loop:
        # Start the engine from inside the running loop, after the first paint is queued.
        loop.call_soon(window.start)
        loop.run_until_complete(closed.wait())
    return 0
