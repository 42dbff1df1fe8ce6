"""The composition root: wires core, engine and the Qt window, and runs the qasync loop; GUI thread.

The only module that knows all three layers. The backend factory runs on the engine thread, so
`import torch` happens there and the window paints first. Jobs run on this computer's engine
or on an ldstudio server (ldstudio.remote): Settings → Engine switches between them between
jobs, and feeds the window's model picker from the server's model list.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSocketNotifier, Qt, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from ldstudio import __version__
from ldstudio.core import paths
from ldstudio.core.backend import Backend, BackendEvent, BlobSource, DeviceInfo
from ldstudio.core.events import EngineNotice, EngineReady
from ldstudio.core.jobs import CancelToken
from ldstudio.core.library import IndexDamaged, LibraryError, LibraryStore, rebuild_index
from ldstudio.core.options import EngineOptions
from ldstudio.core.request import Request
from ldstudio.core.service import BackendFactory, EngineService
from ldstudio.core.settings import ServerTarget, Settings, load_settings
from ldstudio.qt import refcount_guard
from ldstudio.qt.controller import GenerationController
from ldstudio.qt.engine_options import EngineEnvironment, load_engine_options
from ldstudio.qt.main_window import MainWindow

log = logging.getLogger(__name__)

ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what shells report for Ctrl+C


def diffusers_backend_factory(
    device: str | None = None,
    dtype: str | None = None,
    options: EngineOptions | None = None,
    server: ServerTarget | None = None,
) -> DiffusersEngine:
    """A factory that imports torch and builds the real backend when called (engine thread).

    `device`/`dtype` override the same fields of `options` (the saved EngineOptions);
    `server`: run jobs on that ldstudio server instead (torch is not imported then).
    """
    chosen = options or EngineOptions()
    chosen = dataclasses.replace(
        chosen, device=device or chosen.device, dtype=dtype or chosen.dtype
    )
    return DiffusersEngine(chosen.validate(), server=server)


@dataclass(frozen=True)
class EngineLabel:
    """The backend's `choice` as the window shows it: device, precision and what is on."""

    device: str
    dtype: str
    label: str  # e.g. "CUDA · fp16 · SDPA · attention slicing · VAE tiling auto"


class DiffusersEngine:
    """The real backend's factory, and the window's handle on its EngineOptions.

    The worker calls it once, on the engine thread. `reconfigure` (GUI thread) only leaves the
    new options behind a lock; the engine thread picks them up before its next job, closes the
    old pipeline and builds the new backend there, so no job is disturbed and torch state never
    crosses threads.
    """

    def __init__(
        self,
        options: EngineOptions,
        server: ServerTarget | None = None,
        build_local: LocalBuilder | None = None,
    ) -> None:
        self.options = options
        # Where jobs run: this server, or this computer (None). Changed by `use_server`.
        self.server = server
        # Builds this computer's backend (the diffusers one; tests give a fake).
        self.build_local: LocalBuilder = build_local or build_diffusers_backend
        # The library's blob store, where the backend reads a request's input images and
        # masks (set by build_window before the engine starts).
        self.blobs: BlobSource | None = None
        # Replaced whole (never mutated) on the engine thread; the GUI thread reads it.
        self.environment: EngineEnvironment | None = None
        self.announce_ready: Callable[[DeviceInfo], None] = lambda choice: None
        self._lock = threading.Lock()
        self._pending: EngineOptions | None = None
        self._switch: list[ServerTarget | None] = []  # a pending switch, when not empty
        self.startup_notice = ""  # said at the first job (a saved choice that cannot apply)

    def __call__(self) -> Backend:
        return SwitchingBackend(self)

    def reconfigure(self, options: EngineOptions) -> None:
        with self._lock:
            self._pending = options

    def take_pending(self) -> EngineOptions | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def use_server(self, target: ServerTarget | None) -> None:
        """Run the next jobs on `target` (None: this computer); GUI thread. The engine thread
        switches before its next job, so a running job finishes where it started."""
        with self._lock:
            self._switch = [target]

    def take_switch(self) -> list[ServerTarget | None]:
        """[target] when a switch is pending, else []."""
        with self._lock:
            switch, self._switch = self._switch, []
        return switch


# (backend, what the engine found on this machine, the status bar's label)
LocalBuilder = Callable[[EngineOptions, BlobSource | None], tuple[Any, EngineEnvironment, str]]


def build_diffusers_backend(
    options: EngineOptions, blobs: BlobSource | None
) -> tuple[Any, EngineEnvironment, str]:
    """This computer's backend; engine thread (imports torch). ValueError for options the
    machine cannot run."""
    import torch

    from ldstudio.engine.backend import DiffusersBackend
    from ldstudio.engine.device import mps_available

    backend = DiffusersBackend(options, blobs=blobs)
    found = (("cuda", torch.cuda.is_available()), ("mps", mps_available()))
    devices = (*(name for name, ok in found if ok), "cpu")
    summary = backend.resolved.summary().replace(", ", " · ")
    environment = EngineEnvironment(devices, f"{backend.choice.label} · {summary}")
    return backend, environment, engine_label(backend)


def server_model_entries(target: ServerTarget) -> Callable[[], tuple[list[tuple[str, str]], str]]:
    """The model picker's entries from the server's model list (label, the name a request
    sends), and "" or why the server could not be asked; the caller runs it off the GUI
    thread. The server's bundled model is the picker's own bundled entry (value "")."""

    def read() -> tuple[list[tuple[str, str]], str]:
        from ldstudio.remote.client import ServerClient, ServerError

        client = ServerClient(target.url, target.user, target.password)
        try:
            models = client.models()
        except ServerError as exc:
            return [], str(exc)
        entries = [
            (f"{model.name} — on the server", model.name)
            for model in models.checkpoints
            if not (model.name == paths.DEFAULT_MODEL_NAME and model.kind == "diffusers")
        ]
        return entries, ""

    return read


def engine_label(backend: Any) -> str:
    """The status bar's label: device, precision and the speed/memory options that are on
    beyond the defaults, e.g. "CUDA · fp16 · attention slicing"."""
    resolved = backend.resolved
    parts = [backend.choice.label]
    for name, on in (
        ("channels_last", resolved.channels_last),
        ("attention slicing", resolved.attention_slicing),
        ("CPU offload", resolved.cpu_offload),
        ("compiled UNet", resolved.compile_unet),
        ("VAE tiling", resolved.vae_tiling == "on"),
        ("classic attention", not resolved.sdpa),
    ):
        if on:
            parts.append(name)
    return " · ".join(parts)


class SwitchingBackend:
    """This computer's DiffusersBackend, rebuilt between jobs when the options change, or a
    RemoteBackend while jobs run on a server; switched between jobs; engine thread."""

    def __init__(self, engine: DiffusersEngine) -> None:
        self._engine = engine
        self._notice = engine.startup_notice
        self._label = ""
        self._backend: Any
        if engine.server is not None:
            self._backend = self._remote(engine.server)
        else:
            self._backend = self._local()

    def _local(self) -> Any:
        try:
            return self._build(self._engine.options)
        except ValueError as exc:
            # Options saved on another machine (or before a driver broke) must not keep the
            # app from starting: run on the automatic choices and say so at the first job.
            self._notice = " ".join(
                part
                for part in (
                    self._notice,
                    f"The saved engine options cannot run here ({exc}); running with automatic "
                    "choices. Change them in Settings → Engine options…",
                )
                if part
            )
            return self._build(EngineOptions())

    def _build(self, options: EngineOptions) -> Any:
        backend, environment, label = self._engine.build_local(options, self._engine.blobs)
        self._engine.environment = environment
        self._label = label
        return backend

    def _remote(self, target: ServerTarget) -> Any:
        from ldstudio.remote.backend import RemoteBackend
        from ldstudio.remote.client import ServerClient

        client = ServerClient(target.url, target.user, target.password)
        return RemoteBackend(client, blobs=self._engine.blobs, on_label=self._engine.announce_ready)

    @property
    def remote(self) -> bool:
        return self._engine.server is not None

    @property
    def choice(self) -> DeviceInfo:
        if self.remote:
            # Live: it follows the server's device at every job's connect.
            remote_choice: DeviceInfo = self._backend.choice
            return remote_choice
        choice = self._backend.choice
        return EngineLabel(choice.device, choice.dtype, self._label)

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]:
        if self._notice:
            yield EngineNotice(self._notice)
            self._notice = ""
        switch = self._engine.take_switch()
        if switch:
            yield self._switch(switch[0])
        pending = self._engine.take_pending()
        if pending is not None:
            yield self._apply(pending)
        yield from self._backend.execute(request, cancel)

    def _switch(self, target: ServerTarget | None) -> EngineNotice:
        # Free this computer's pipeline first: a server job needs none of it.
        self._backend.close()
        self._engine.server = target
        if target is None:
            self._backend = self._local()
        else:
            self._backend = self._remote(target)
        choice = self.choice
        self._engine.announce_ready(choice)
        where = "this computer" if target is None else f"the server {target.url}"
        return EngineNotice(f"Jobs run on {where} now: {choice.label}")

    def _apply(self, options: EngineOptions) -> EngineNotice:
        if self.remote:
            self._engine.options = options  # built when jobs run here again
            return EngineNotice(
                "Engine options saved; they apply when jobs run on this computer again"
            )
        previous, label = self._engine.environment, self._label
        # Free the old pipeline first: two copies of a model may not fit in memory.
        self._backend.close()
        try:
            self._backend = self._build(options)
        except ValueError as exc:
            self._engine.environment, self._label = previous, label
            return EngineNotice(f"Engine options not applied: {exc}")
        self._engine.options = options
        choice = self.choice
        self._engine.announce_ready(choice)
        return EngineNotice(f"Engine options applied: {choice.label}")

    def close(self) -> None:
        self._backend.close()


def convert_checkpoint(path: Path) -> Path:
    """The model manager's "convert to safetensors" (tensors only); runs on an executor thread."""
    from ldstudio.engine.checkpoints import convert_to_safetensors

    return convert_to_safetensors(path)


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
    store: LibraryStore | None = None,
) -> MainWindow:
    """The main window wired to a fresh engine service (not started: `window.start()`)."""
    settings = settings if settings is not None else load_settings()
    # The library opens in ~1 ms (no reconcile here: the window runs it on a worker) and is
    # the engine's sink, so every finished image is indexed as it is saved.
    refcount_guard.install()
    if store is None:
        store = LibraryStore(settings.library_dir(), reconcile=False)
    service = EngineService(backend_factory, store)
    controller = GenerationController(service)
    window = MainWindow(controller, settings, paths.bundled_model_dir(), store)
    window.convert_checkpoint = convert_checkpoint
    if isinstance(backend_factory, DiffusersEngine):
        real = backend_factory
        real.blobs = store.blobs
        real.announce_ready = lambda choice: service.announce(
            EngineReady(choice.label, choice.device, choice.dtype)
        )
        window.engine_environment = lambda: real.environment
        window.apply_engine_options = real.reconfigure
        window.preferences.apply_engine_choice = lambda target: choose_engine(window, real, target)
        if real.server is not None:
            window.models.server_models = server_model_entries(real.server)
    return window


def choose_engine(window: MainWindow, engine: DiffusersEngine, target: ServerTarget | None) -> None:
    """Settings → Engine chose where jobs run: the engine switches before its next job, and
    the model picker lists the models of where they run now."""
    engine.use_server(target)
    window.models.server_models = server_model_entries(target) if target is not None else None
    window.background.spawn(window.models.refresh_models())


def _ask_rebuild(message: str) -> bool:
    box = QMessageBox(QMessageBox.Icon.Critical, "ldstudio: the library index is damaged", message)
    box.setInformativeText(
        "Rebuild it now from the image files? The damaged file is kept aside, not deleted."
    )
    rebuild = box.addButton("Rebuild index", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
    box.exec()
    return box.clickedButton() is rebuild


def _show_error(message: str) -> None:
    QMessageBox.critical(None, "ldstudio", message)


def open_library(
    root: Path,
    ask: Callable[[str], bool] = _ask_rebuild,
    tell: Callable[[str], None] = _show_error,
) -> LibraryStore | None:
    """The library for the window; a damaged index is offered a rebuild (None: not opened)."""
    try:
        return LibraryStore(root, reconcile=False)
    except IndexDamaged as exc:
        if not ask(str(exc)):
            return None
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        rebuild_index(root)
        return LibraryStore(root, reconcile=False)
    except LibraryError as exc:  # another ldstudio has it open, or it is damaged again
        QApplication.restoreOverrideCursor()
        tell(f"The library index could not be rebuilt: {exc}")
        return None
    finally:
        if QApplication.overrideCursor() is not None:
            QApplication.restoreOverrideCursor()


def run(
    backend_factory: BackendFactory | None = None,
    argv: list[str] | None = None,
    interrupted: Callable[[], bool] = lambda: False,
) -> int:
    """Open the window and run until it closes; returns the process exit code.

    `interrupted` says whether Ctrl+C was pressed while starting (see ldstudio.__main__); then
    the loop does not run and the exit code is 130.
    """
    import qasync

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = ensure_application(argv)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    settings = load_settings()
    factory = backend_factory or diffusers_backend_factory(
        options=load_engine_options(settings), server=settings.server_target()
    )
    if isinstance(factory, DiffusersEngine) and settings.uses_server and factory.server is None:
        # A hand-edited URL that is not one: jobs run here meanwhile, and the first one says so.
        factory.startup_notice = (
            f"The saved server URL {settings.server_url!r} is not valid; jobs run on this "
            "computer. Choose the server again in Settings → Engine options…"
        )
    store = open_library(settings.library_dir())
    if store is None:
        return 1
    window = build_window(factory, settings=settings, store=store)
    window.show()
    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)
    if interrupted():
        return EXIT_INTERRUPTED
    with loop, CtrlCCloses(window) as ctrl_c:
        # Start the engine from inside the running loop, after the first paint is queued.
        loop.call_soon(window.start)
        loop.run_until_complete(closed.wait())
    return EXIT_INTERRUPTED if ctrl_c.pressed else 0


class CtrlCCloses:
    """While the window runs, Ctrl+C in the terminal closes it as its close button does (the
    running job is cancelled, settings are saved), and `run` exits 130. Closing waits for the
    engine thread (while it still imports torch, that takes seconds): a second Ctrl+C quits at
    once, by the signal's default action.

    Qt's event loop runs no Python code of its own, so Python's SIGINT handler would wait for the
    next Qt event; the signal's wakeup byte on a socket is that event.
    """

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.pressed = False
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read)
        self._notifier.activated.connect(self._drain)

    def __enter__(self) -> CtrlCCloses:
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno())
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)
        signal.set_wakeup_fd(self._previous_fd)
        self._notifier.setEnabled(False)
        self._reader.close()
        self._writer.close()

    def _on_sigint(self, _signum: int, _frame: Any) -> None:
        self.pressed = True
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sys.stderr.write(
            "ldstudio: interrupted (Ctrl+C); closing the window (Ctrl+C again quits at once)\n"
        )
        # Not from inside the handler: it may have interrupted any Python code.
        QTimer.singleShot(0, self.window.close)

    def _drain(self) -> None:
        try:
            while self._reader.recv(64):
                pass
        except BlockingIOError:
            pass
