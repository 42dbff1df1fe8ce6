"""MainWindow: lays out the panes, handles user intents and job outcomes; GUI thread.

Orchestration is async (qasync): `await controller.wait(job)`, and disk work (thumbnails, folder
scans, save as, delete to trash, animation export) goes through `loop.run_in_executor`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QByteArray, QObject, QStandardPaths, Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QGuiApplication,
    QKeySequence,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.events import (
    EngineNotice,
    ImageRecord,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StepProgress,
)
from ldstudio.core.jobs import load_queue, save_queue, saved_queue_file
from ldstudio.core.library import GalleryEntry, GalleryStore
from ldstudio.core.models import ModelEntry, ModelFolderStore, ModelRegistry
from ldstudio.core.options import EngineOptions
from ldstudio.core.params import GenerationParams
from ldstudio.core.settings import Settings, save_settings
from ldstudio.qt import kept_queue
from ldstudio.qt.controller import GenerationController
from ldstudio.qt.engine_options import (
    EngineEnvironment,
    EngineOptionsDialog,
    load_engine_options,
    reset_impossible_options,
)
from ldstudio.qt.images import load_qimage
from ldstudio.qt.library_controller import LibraryController
from ldstudio.qt.model_info import ModelInfo, model_problem
from ldstudio.qt.model_manager import Converter, ModelManager, read_any_model_info
from ldstudio.qt.params_pane import ParamsPane
from ldstudio.qt.preview_view import PreviewPane
from ldstudio.qt.prompt_pane import PromptPane
from ldstudio.qt.queue_pane import QueuePane
from ldstudio.qt.timeline import TimelineStore, export_animation

log = logging.getLogger(__name__)
T = TypeVar("T")

APP_TITLE = "ldstudio"
# Side columns (prompt and parameters | library) at 1280 px and wider, and on a narrower window;
# the image in the middle takes the rest.
SIDE_WIDTHS = (370, 300)
NARROW_SIDE_WIDTHS = (330, 250)
NARROW_WINDOW = 1280
PREVIEW_MIN_WIDTH = 500  # side columns wider than SIDE_WIDTHS give way to the image up to this


class MainWindow(QMainWindow):
    def __init__(
        self,
        controller: GenerationController,
        settings: Settings,
        bundled_model: Path,
        store: GalleryStore,
    ) -> None:
        super().__init__()
        self.controller = controller
        self.settings = settings
        self.bundled_model = bundled_model
        self.timelines = TimelineStore()
        self.store = store
        # Images made in this session: path -> (job id, pass), to find their timelines.
        self.session_images: dict[Path, tuple[int, int]] = {}
        self._select_paths: list[Path] = []  # a finished job's images, highlighted once counted
        self._shown_request = 0  # show_entry calls so far: a slow load never lands late
        self._engine_cancelling: int | None = None  # the job whose cancel the bar announces
        self._tasks: set[asyncio.Task[Any]] = set()
        self._model_info: ModelInfo | None = None
        self._closing = False
        self._settings_generation = 0
        self._settings_written = 0
        self._settings_write_lock = threading.Lock()
        # Set by app.py (the composition root): the engine's side of models and options.
        self.engine_environment: Callable[[], EngineEnvironment | None] = lambda: None
        self.apply_engine_options: Callable[[EngineOptions], None] | None = None
        self._library_error = ""  # the library failure the red bar shows, if it still does
        self.convert_checkpoint: Converter | None = None
        self.model_manager: ModelManager | None = None
        self._scanned_models: list[ModelEntry] = []
        self._model_problems: dict[str, str] = {}  # models added by hand that cannot be used
        self.setWindowTitle(APP_TITLE)
        self.setObjectName("main_window")

        self.prompt_pane = PromptPane()
        self.params_pane = ParamsPane()
        self.params_pane.bundled_name = bundled_model.name
        self.preview_pane = PreviewPane()
        self.library = LibraryController(store, self.prompt_pane, self.params_pane, self)
        self.gallery_model = self.library.model
        self.gallery_pane = self.library.pane
        self.details_view = self.library.details
        self.queue_pane = QueuePane()

        params_scroll = QScrollArea()
        params_scroll.setWidget(self.params_pane)
        params_scroll.setWidgetResizable(True)
        params_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        # As needed, not off: a pane squeezed narrower than its form scrolls instead of
        # clipping fields at the edge (the default splitter width leaves room for the form).
        params_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.params_pane.setMinimumWidth(self.params_pane.minimumSizeHint().width())
        # The form never narrower than its fields (plus room for the vertical scroll bar): on
        # a small window the preview gives way, not the Add… button and the spin boxes. That
        # makes the window at least ~870 px wide; a screen narrower than 1024 px keeps the
        # horizontal scroll bar instead, so the window still fits on it.
        screen = QGuiApplication.primaryScreen()
        if screen is None or screen.availableGeometry().width() >= 1024:
            params_scroll.setMinimumWidth(
                self.params_pane.minimumWidth()
                + params_scroll.verticalScrollBar().sizeHint().width()
            )
        self.left_splitter = QSplitter(Qt.Orientation.Vertical)
        self.left_splitter.addWidget(self.prompt_pane)
        self.left_splitter.addWidget(params_scroll)
        self.left_splitter.setStretchFactor(0, 2)
        self.left_splitter.setStretchFactor(1, 3)
        self.left_splitter.setChildrenCollapsible(False)
        details_scroll = QScrollArea()
        details_scroll.setWidget(self.details_view)
        details_scroll.setWidgetResizable(True)
        details_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        # The image in the middle is the selected one, large: the details' own copy would only
        # take the height its parameters need to be read without scrolling.
        self.details_view.image_label.hide()
        # The image's parameters get the whole height of the side column, as a tab beside the
        # prompt and parameters (a fourth pane under the gallery left them one row at 800 px).
        self.left_tabs = QTabWidget()
        self.left_tabs.setObjectName("left_tabs")
        self.left_tabs.setDocumentMode(True)
        self.left_tabs.addTab(self.left_splitter, "Generate")
        self.left_tabs.addTab(details_scroll, "Image details")
        self.left_tabs.setTabToolTip(0, "Prompt and parameters of the next image (Ctrl+L)")
        self.left_tabs.setTabToolTip(
            1, "How the selected image was made, and what to do with it (Ctrl+Shift+I)"
        )
        self.generate_tab, self.details_tab = 0, 1
        self.right_splitter = QSplitter(Qt.Orientation.Vertical)
        self.right_splitter.addWidget(self.gallery_pane)
        self.right_splitter.addWidget(self.queue_pane)
        self.right_splitter.setStretchFactor(0, 1)
        self.right_splitter.setStretchFactor(1, 0)
        self.right_splitter.setChildrenCollapsible(False)
        self.right_splitter.setSizes([600, 130])
        self.main_splitter = QSplitter()
        for widget in (self.left_tabs, self.preview_pane, self.right_splitter):
            self.main_splitter.addWidget(widget)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setStretchFactor(2, 0)
        self.main_splitter.setSizes([SIDE_WIDTHS[0], 600, SIDE_WIDTHS[1]])
        self.main_splitter.setChildrenCollapsible(False)
        self._columns_fitted = False
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(8, 8, 8, 4)
        layout.addWidget(self.main_splitter)
        self.setCentralWidget(central)
        self.splitters = {
            "main": self.main_splitter,
            "left": self.left_splitter,
            # Not "right": that held three panes before the details became a tab.
            "side": self.right_splitter,
        }

        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.hide()
        self.device_label = QLabel("Starting engine…")
        self.device_label.setObjectName("device")
        self.device_label.setToolTip("The device and precision the engine runs on")
        self.latent_label = QLabel()
        self.latent_label.setObjectName("latent")
        self.latent_label.setToolTip("The latent the model denoises; the VAE turns it into pixels")
        status = self.statusBar()
        status.addPermanentWidget(self.busy_bar)
        status.addPermanentWidget(self.latent_label)
        status.addPermanentWidget(self.device_label)

        self._build_actions()
        self._connect()
        self._restore()
        if not settings.window_geometry:
            self.resize(1280, 800)

    # -- setup ---------------------------------------------------------------------------------

    def _build_actions(self) -> None:
        menu = self.menuBar()

        def add(
            menu_name: Any, text: str, slot: Callable[[], Any], *keys: Any, tip: str = ""
        ) -> QAction:
            action = QAction(text, self)
            if keys:
                action.setShortcuts([QKeySequence(k) for k in keys])
            action.setStatusTip(tip)
            action.triggered.connect(lambda _=False: slot())
            menu_name.addAction(action)
            return action

        file_menu = menu.addMenu("&File")
        add(
            file_menu,
            "&Open image…",
            self.library.open_image_dialog,
            QKeySequence.StandardKey.Open,
            tip="Read the generation parameters of a PNG, JPEG or WebP and restore them",
        )
        add(
            file_menu,
            "&Import images…",
            self.library.import_folder_dialog,
            "Ctrl+I",
            tip="Add a folder of PNG/JPEG/WebP images (from ldstudio, A1111, ComfyUI, …) "
            "to the library",
        )
        add(
            file_menu,
            "&Add model…",
            self.add_model_folder,
            tip="Add a .safetensors checkpoint or a diffusers model folder to the model list",
        )
        self.export_action = add(
            file_menu,
            "&Export animation…",
            self.export_animation_dialog,
            "Ctrl+E",
            tip="Save the selected image's denoising as animated WebP or GIF",
        )
        add(
            file_menu,
            "&Library folder…",
            self.choose_library_folder,
            tip="Choose the folder where the image library lives (used from the next start)",
        )
        add(
            file_menu,
            "E&mpty trash…",
            self.library.empty_trash,
            tip="Delete the images in the library's trash for good",
        )
        file_menu.addSeparator()
        # Ctrl+Q itself: the platform's standard Quit keys are none on some desktops.
        add(file_menu, "&Quit", self.close, "Ctrl+Q")

        gen_menu = menu.addMenu("&Generate")
        self.generate_action = add(
            gen_menu,
            "&Generate",
            self.generate,
            "Ctrl+Return",
            "Ctrl+Enter",
            tip="Queue a job with the current prompt and parameters",
        )
        self.cancel_action = add(
            gen_menu,
            "&Cancel running job",
            self.controller.cancel_running,
            "Escape",
            tip="Stop the running job at its next step",
        )
        add(
            gen_menu,
            "Cancel &all jobs",
            self.controller.cancel_all,
            "Shift+Escape",
            tip="Cancel the running job and every queued one",
        )

        view_menu = menu.addMenu("&View")
        add(view_menu, "&Fit to window", lambda: self.preview_pane.set_fit(True), "Ctrl+0")
        add(view_menu, "&Actual size (100 %)", lambda: self.preview_pane.set_fit(False), "Ctrl+1")
        view_menu.addSeparator()
        add(view_menu, "Focus &prompt", self.focus_prompt, "Ctrl+L")
        add(
            view_menu,
            "Image &details",
            self.show_details,
            "Ctrl+Shift+I",
            tip="How the selected image was made, and what to do with it",
        )
        add(view_menu, "Focus &gallery", self.gallery_pane.view.setFocus, "Ctrl+G")
        add(view_menu, "Focus &queue", self.queue_pane.list.setFocus, "Ctrl+K")

        models_menu = menu.addMenu("&Models")
        add(
            models_menu,
            "Model &manager…",
            self.open_model_manager,
            "Ctrl+Shift+M",
            tip="Model folders, every model found in them, VAE and LoRAs for the next images",
        )
        add(
            models_menu,
            "&Rescan model folders",
            lambda: self.spawn(self.refresh_models()),
            tip="Read the model folders again and refill the model list",
        )
        settings_menu = menu.addMenu("&Settings")
        add(
            settings_menu,
            "&Engine options…",
            self.open_engine_options,
            tip="Device, precision, memory and compilation options of the engine",
        )

        help_menu = menu.addMenu("&Help")
        add(help_menu, "&Keyboard shortcuts", self._show_shortcuts, "F1")

    def _connect(self) -> None:
        c = self.controller
        c.backend_ready.connect(self._on_backend_ready)
        c.backend_failed.connect(lambda message: self.preview_pane.show_error(message))
        c.model_loading.connect(self._on_model_loading)
        c.model_ready.connect(self._on_model_ready)
        c.job_started.connect(self._on_job_started)
        c.step_progressed.connect(self._on_step)
        c.job_finished.connect(self._on_job_finished)
        c.job_failed.connect(self._on_job_failed)
        c.job_cancelled.connect(self._on_job_cancelled)
        c.job_cancelling.connect(self._on_job_cancelling)
        c.queue_changed.connect(self._refresh_queue)
        c.notice.connect(self._on_notice)
        self.prompt_pane.generate_requested.connect(self.generate)
        self.prompt_pane.cancel_requested.connect(c.cancel_running)
        self.params_pane.changed.connect(self._update_latent_label)
        self.params_pane.model_combo.currentIndexChanged.connect(self._on_model_selected)
        self.params_pane.add_model_requested.connect(self.add_model_folder)
        self.queue_pane.cancel_requested.connect(c.cancel)
        self.queue_pane.cancel_all_requested.connect(c.cancel_all)
        self.preview_pane.export_requested.connect(self.export_animation_dialog)
        lib = self.library
        lib.pane.entry_selected.connect(lambda e: self.spawn(self.show_entry(e)))
        lib.pane.entry_activated.connect(lambda _e: self.show_details())
        lib.file_opened.connect(lambda path: self.spawn(self.show_file(path)))
        # Parameters put back into the panes are shown there.
        for restored in (lib.actions.restore_requested, lib.actions.seed_requested):
            restored.connect(lambda _v: self.left_tabs.setCurrentIndex(self.generate_tab))
        lib.status_message.connect(self._on_library_message)
        lib.import_progress.connect(self._on_import_progress)  # a method: queued to this thread
        lib.error.connect(self._on_library_error)
        lib.model.count_changed.connect(self._on_library_counted)

    def _restore(self) -> None:
        s = self.settings
        self.params_pane.set_models(self._model_entries(), self._model_problems)
        params = s.params()
        if params is not None:
            self.prompt_pane.set_prompts(params.prompt, params.negative_prompt)
            self.params_pane.set_params(params)
        self.params_pane.preview_combo.setCurrentText(s.preview_method)
        self.params_pane.preview_interval_spin.setValue(s.preview_interval)
        self.prompt_pane.set_recent(s.recent_prompts)
        if s.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode("ascii")))
        if s.window_state:
            self.restoreState(QByteArray.fromBase64(s.window_state.encode("ascii")))
        for name, splitter in self.splitters.items():
            if name in s.splitters:
                splitter.restoreState(QByteArray.fromBase64(s.splitters[name].encode("ascii")))

    def focus_prompt(self) -> None:
        self.left_tabs.setCurrentIndex(self.generate_tab)
        self.prompt_pane.prompt_edit.setFocus()

    def show_details(self) -> None:
        self.left_tabs.setCurrentIndex(self.details_tab)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._columns_fitted:
            self._columns_fitted = True
            self.fit_columns(use_defaults="main" not in self.settings.splitters)

    def fit_columns(self, use_defaults: bool = False) -> None:
        """Size the three columns for this window: the defaults for its width, or (restored
        from settings) side columns wider than the defaults give way until the image in the
        middle is PREVIEW_MIN_WIDTH wide, so a layout saved on a wider window or by an older
        version never leaves the image small."""
        sizes = self.main_splitter.sizes()
        total = sum(sizes)
        if use_defaults:
            narrow = self.width() < NARROW_WINDOW
            left, right = NARROW_SIDE_WIDTHS if narrow else SIDE_WIDTHS
            self.main_splitter.setSizes([left, max(total - left - right, 0), right])
            return
        need = PREVIEW_MIN_WIDTH - sizes[1]
        for side, default in ((2, SIDE_WIDTHS[1]), (0, SIDE_WIDTHS[0])):
            give = min(max(need, 0), max(sizes[side] - default, 0))
            sizes[side] -= give
            sizes[1] += give
            need -= give
        if sizes != self.main_splitter.sizes():
            self.main_splitter.setSizes(sizes)

    def start(self) -> None:
        """Start the engine and the library (it checks itself against the disk on a worker)."""
        self.controller.start()
        self.busy_bar.show()
        self.library.start()
        self._on_model_selected()
        self.spawn(self.refresh_models(select_default=True))
        if self.settings.load_problems:
            # What load_settings kept aside or dropped, said once, in a dialog for the same
            # reason as the engine options notice.
            self.settings_notice = QMessageBox(
                QMessageBox.Icon.Warning,
                "Settings",
                "\n\n".join(self.settings.load_problems),
                parent=self,
            )
            self.settings_notice.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            self.settings_notice.open()
            self.settings.load_problems = []
        self.spawn(self.offer_saved_queue())

    async def offer_saved_queue(self) -> None:
        """Jobs kept at the last quit: ask, then queue them again or drop them."""
        try:
            kept = await self.off_thread(load_queue)
        except ValueError as exc:  # the file stays as it is, for the user to look at
            self.preview_pane.show_error(f"The jobs kept at the last quit were not read: {exc}")
            return
        if not kept:
            return
        # Asked from a plain callback, not from this task: a modal loop inside a qasync task
        # stops every other task that wakes meanwhile (the model list, the model info).
        QTimer.singleShot(0, lambda: self._ask_restore_kept(kept))

    def _ask_restore_kept(self, kept: list[GenerationParams]) -> None:
        restore = kept_queue.ask_restore_queue(self, len(kept))
        self.spawn(self._restore_kept(kept, restore))

    async def _restore_kept(self, kept: list[GenerationParams], restore: bool) -> None:
        # Queued again, they are kept anew at the next quit if still waiting.
        await self.off_thread(save_queue, [])
        if not restore:
            self.statusBar().showMessage(f"{len(kept)} kept job(s) discarded", 6000)
            return
        for params in kept:
            self.spawn(self.run_job(params))
        self.statusBar().showMessage(f"{len(kept)} job(s) from the last session queued", 6000)

    # -- tasks -------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_event_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not self._closing:
            log.error("background task failed", exc_info=exc)
            self.preview_pane.show_error(f"{type(exc).__name__}: {exc}")

    async def off_thread(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking disk work on the default executor; the GUI keeps painting."""
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    def pending_tasks(self) -> int:
        return len(self._tasks)

    # -- generating -------------------------------------------------------------------------

    def current_params(self) -> GenerationParams:
        return self.params_pane.params(
            self.prompt_pane.prompt(), self.prompt_pane.negative_prompt()
        )

    def generate(self) -> None:
        self.params_pane.commit_typed()
        try:
            params = self.current_params()
        except ValueError as exc:
            self.preview_pane.show_error(f"Cannot generate: {exc}")
            return
        if self.params_pane.model_problem():
            self.preview_pane.show_error(f"Cannot generate: {self.params_pane.model_problem()}")
            return
        if not params.prompt:
            self.preview_pane.show_error("Cannot generate: the prompt is empty; describe a picture")
            self.prompt_pane.prompt_edit.setFocus()
            return
        self.preview_pane.clear_error()
        self.settings.remember_prompt(params.prompt)
        self.prompt_pane.set_recent(self.settings.recent_prompts)
        self._store_params(params)
        self.spawn(self.run_job(params))

    async def run_job(self, params: GenerationParams) -> JobFinished | JobFailed | JobCancelled:
        job = self.controller.submit(params)
        outcome = await self.controller.wait(job)
        if self._closing:
            return outcome
        records: tuple[ImageRecord, ...] = ()
        if isinstance(outcome, JobFinished):
            records = outcome.records
        elif isinstance(outcome, JobCancelled):
            records = outcome.saved
        if records:
            await self.add_records(records, job.id, params.batch_size)
        return outcome

    async def add_records(
        self, records: tuple[ImageRecord, ...], job_id: int, batch_size: int
    ) -> None:
        # Saved params carry batch_size 1 (each file is one image); the job's says which pass.
        for record in records:
            self.session_images[record.path] = (job_id, record.index // batch_size)
        # The job's own images, by id: not "row 0", which a filter, the oldest-first order or
        # another process writing into the library would make some other image.
        self._select_paths = [record.path for record in records]
        self.library.refresh()

    def _on_library_counted(self, _count: int) -> None:
        if self._select_paths:
            paths, self._select_paths = self._select_paths, []
            self.library.select_images(paths)

    # -- engine events ------------------------------------------------------------------------

    def _on_library_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 6000)
        # A library action that went through: its earlier failure is no longer news (a
        # generation failure shown since stays).
        if self._library_error and self.preview_pane.error_label.text() == self._library_error:
            self.preview_pane.clear_error()
        self._library_error = ""

    def _on_import_progress(self, text: str) -> None:
        self.statusBar().showMessage(text, 3000)

    def _on_library_error(self, text: str) -> None:
        self.preview_pane.show_error(text)
        self._library_error = text

    def _on_backend_ready(self, label: str) -> None:
        self.device_label.setText(label)
        self.busy_bar.hide()
        self.statusBar().showMessage("Engine ready", 4000)
        self._check_saved_engine_options()

    def _check_saved_engine_options(self) -> None:
        """Saved options this machine cannot run (saved elsewhere, or before they could be
        checked) go back to auto, saying so: left alone they would be refused at every start."""
        environment = self.engine_environment()
        if environment is None:
            return
        message = reset_impossible_options(self.settings, environment)
        if not message:
            return
        self._save_settings()
        if self.apply_engine_options is not None:
            # The engine fell back to all-auto at start: the user's other choices apply again.
            self.apply_engine_options(load_engine_options(self.settings))
        # A dialog, not the status bar: the next "Model … ready" would replace it in seconds.
        self.engine_options_notice = QMessageBox(
            QMessageBox.Icon.Warning, "Engine options", message, parent=self
        )
        self.engine_options_notice.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.engine_options_notice.open()

    def _on_model_loading(self, event: ModelLoading) -> None:
        self.busy_bar.show()
        self.statusBar().showMessage(f"Loading model {Path(event.model).name}…")

    def _on_model_ready(self, event: ModelReady) -> None:
        self.busy_bar.hide()
        if not event.cached:
            self.statusBar().showMessage(
                f"Model {event.model} ready ({event.family}, loaded in {event.seconds:.1f} s)", 5000
            )

    def _on_job_started(self, event: JobStarted) -> None:
        self._update_cancel()
        if isinstance(event.params.seed, int):
            self.params_pane.set_last_seed(event.params.seed)
        self.preview_pane.job_started(event)
        self.latent_label.setText(self._latent_text(event.params.width, event.params.height))

    def _on_step(self, event: StepProgress) -> None:
        self.preview_pane.offer(event)
        if event.preview is not None:
            self.timelines.add_frame(
                event.job_id, event.batch_index, event.step, event.preview, event.total
            )

    def _on_job_finished(self, event: JobFinished) -> None:
        count = len(event.records)
        self.preview_pane.job_ended(
            f"Done: {count} image{'s' if count != 1 else ''} in {event.seconds:.1f} s"
        )
        self._job_ended()

    def _on_job_failed(self, event: JobFailed) -> None:
        # Only the engine's job fails, and it is the newest (it may fail before it started).
        self.preview_pane.job_failed("Failed — see the message above")
        self.preview_pane.show_error(event.message, event.detail)
        self.statusBar().showMessage(f"Job {event.job_id} failed", 5000)
        self._job_ended()

    def _on_job_cancelled(self, event: JobCancelled) -> None:
        started = self.controller.last_started
        if self._is_shown_job(event.job_id):
            ours = started is not None and started.job_id == event.job_id
            total = f" of {started.total_steps}" if ours and started is not None else ""
            self.preview_pane.job_ended(
                f"Cancelled after step {event.step}{total}", made_images=bool(event.saved)
            )
        self.statusBar().showMessage(f"Job {event.job_id} cancelled", 4000)
        self._job_ended()

    def _is_shown_job(self, job_id: int) -> bool:
        """True for the job whose progress the preview pane shows: the last one started, or
        the engine's job cancelled while it was still loading its model."""
        started = self.controller.last_started
        return job_id == self._engine_cancelling or (
            started is not None and started.job_id == job_id
        )

    def _on_job_cancelling(self, job_id: int) -> None:
        # Only the engine's job (running, or loading its model) is ever "cancelling".
        self._engine_cancelling = job_id
        self.preview_pane.job_cancelling()
        self.statusBar().showMessage(
            f"Cancelling job {job_id}: it stops after the current step", 10_000
        )
        self._refresh_queue()

    def _job_ended(self) -> None:
        self.busy_bar.hide()
        self._update_cancel()

    def _update_cancel(self) -> None:
        can_cancel = self.controller.cancel_target() is not None
        self.prompt_pane.set_busy(can_cancel)
        self.cancel_action.setEnabled(can_cancel)

    def _refresh_queue(self) -> None:
        jobs = self.controller.jobs()
        cancelling = {job.id: "cancelling" for job in jobs if self.controller.cancelling(job.id)}
        self.queue_pane.set_jobs(jobs, cancelling)
        self._update_cancel()

    # -- models and sizes ----------------------------------------------------------------------

    def _model_entries(self) -> list[tuple[str, str]]:
        entries = [(f"{self.bundled_model.name} (bundled)", "")]
        listed = {""}
        for folder in self.settings.model_folders:
            path = Path(folder)
            entries.append((f"{path.name} — {path.parent}", folder))
            listed.add(folder)
        for entry in self._scanned_models:
            if str(entry.path) not in listed:
                entries.append((f"{entry.name} — {entry.source}", str(entry.path)))
                listed.add(str(entry.path))
        return entries

    async def refresh_models(self, select_default: bool = False) -> None:
        """Fill the model picker from the model folders (scanned off the GUI thread)."""
        try:
            store = await self.off_thread(ModelFolderStore.load)
        except ValueError as exc:
            self.statusBar().showMessage(f"Model folders not read: {exc}", 10000)
            store = ModelFolderStore()
        entries = await self.off_thread(ModelRegistry.shared().rescan, store)
        # Models added by hand may have broken since (or before a restart): marked, not hidden.
        added = list(self.settings.model_folders)
        found = await self.off_thread(lambda: {f: model_problem(Path(f)) for f in added})
        self._model_problems = {f: problem for f, problem in found.items() if problem}
        self._set_scanned_models(entries)
        if not select_default:
            return
        # At start: the default model; else the last one used, which the picker could not
        # show before the scan found it. A choice made meanwhile is kept.
        saved = self.settings.params()
        wanted = store.default or (saved.model if saved is not None else "")
        if wanted and (store.default or self.params_pane.model_value() == ""):
            self.params_pane.select_model(self._picker_value(wanted))

    def _set_scanned_models(self, entries: list[ModelEntry]) -> None:
        # The bundled model is the picker's first entry already (value "").
        self._scanned_models = [e for e in entries if e.loadable and e.path != self.bundled_model]
        self.params_pane.set_models(self._model_entries(), self._model_problems)

    def _picker_value(self, path: str) -> str:
        """The model picker's value for a model path: "" is the bundled model."""
        return "" if path and Path(path) == self.bundled_model else path

    def _variant_for(self, path: Path) -> str:
        for entry in self._scanned_models:
            if entry.path == path:
                return entry.variant
        return ""

    def open_model_manager(self) -> ModelManager:
        if self.model_manager is None:
            manager = ModelManager(
                converter=self.convert_checkpoint, parent=self, bundled=self.bundled_model
            )
            manager.model_chosen.connect(self._use_model)
            manager.extras_changed.connect(self._set_extras)
            manager.default_changed.connect(lambda _path: self.spawn(self.refresh_models()))
            manager.scan_finished.connect(self._set_scanned_models)
            manager.variant_changed.connect(self._on_variant_changed)
            self.model_manager = manager
            manager.rescan()
        self.model_manager.show()
        self.model_manager.raise_()
        self.model_manager.activateWindow()
        return self.model_manager

    def _on_variant_changed(self, path: str, variant: str) -> None:
        self._scanned_models = [
            replace(e, variant=variant) if str(e.path) == path else e for e in self._scanned_models
        ]
        if self.params_pane.model_value() == path:
            # Native size and size presets follow the variant (SD 2 768-v vs 512 base).
            self._on_model_selected()

    def _use_model(self, path: str) -> None:
        manager = self.model_manager
        value = self._picker_value(path)
        if self.params_pane.model_combo.findData(value) < 0 and manager is not None:
            # Chosen before the scan finished: list it now.
            chosen = [e for e in manager.table_model.entries if str(e.path) == value]
            self._set_scanned_models([*self._scanned_models, *chosen])
        self.params_pane.select_model(value)
        self.statusBar().showMessage(f"Model {Path(path).name} selected", 4000)

    def _set_extras(self, vae: str, loras: tuple[tuple[str, float], ...]) -> None:
        self.params_pane.set_extras(vae, loras)

    def open_engine_options(self) -> EngineOptionsDialog:
        # The source, not its value: opened while the engine starts, the dialog checks the
        # device-dependent choices once the engine knows its devices.
        dialog = EngineOptionsDialog(self.settings, self.engine_environment, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.options_changed.connect(self._on_engine_options)
        dialog.open()
        return dialog

    def _on_engine_options(self, options: EngineOptions) -> None:
        self._save_settings()
        if self.apply_engine_options is None:
            self.statusBar().showMessage("Engine options saved; they apply at the next start", 8000)
            return
        self.apply_engine_options(options)
        self.statusBar().showMessage("Engine options saved; they apply from the next image", 8000)

    def _on_notice(self, event: EngineNotice) -> None:
        log.info("engine: %s", event.message)
        self.statusBar().showMessage(event.message, 15000)

    def _on_model_selected(self) -> None:
        value = self.params_pane.model_value()
        path = Path(value) if value else self.bundled_model
        self.spawn(self._load_model_info(path))

    async def _load_model_info(self, path: Path) -> None:
        try:
            info: ModelInfo | None = await self.off_thread(
                read_any_model_info, path, self._variant_for(path)
            )
        except ValueError as exc:
            info = None
            self.statusBar().showMessage(str(exc), 8000)
        self._model_info = info
        self.params_pane.set_model_info(info)
        self._update_latent_label()

    def _latent_text(self, width: int | None, height: int | None) -> str:
        if self._model_info is None:
            return "latent size: shown once the model folder is readable"
        return self._model_info.latent_text(width, height)

    def _update_latent_label(self) -> None:
        self.latent_label.setText(self._latent_text(*self.params_pane.chosen_size()))

    def choose_library_folder(self, folder: Path | None = None) -> None:
        """Remember another library folder; the open library stays until the next start."""
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(
                self, "Choose the library folder", str(self.settings.library_dir())
            )
            if not chosen:
                return
            folder = Path(chosen)
        self.settings.library_folder = str(folder.resolve())
        self._save_settings()
        self.statusBar().showMessage(
            f"The library in {folder} will be used from the next start; "
            "this session keeps the current one.",
            10_000,
        )

    def add_model_folder(self, path: Path | None = None) -> bool:
        """Models → Add…: a .safetensors checkpoint or a diffusers folder; refused, saying why,
        when the model manager would report it unusable. True when it was added and chosen."""
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(
                self,
                "Add a model: a .safetensors checkpoint, or a diffusers folder's model_index.json",
                "",
                "Models (*.safetensors model_index.json);;All files (*)",
            )
            if not chosen:
                return False
            path = Path(chosen)
            if path.name == "model_index.json":
                path = path.parent  # the folder it describes
        # On the GUI thread, as before this check: a bounded header read, or a diffusers
        # folder's configs and size (a slow disk shows here; see the session note).
        problem = model_problem(path)
        if problem:
            QMessageBox.warning(
                self,
                "Model not added",
                f"{problem}\n\nThe model list is unchanged.",
            )
            return False
        value = str(path.resolve())
        if value not in self.settings.model_folders:
            self.settings.model_folders.append(value)
        self._model_problems.pop(value, None)
        self.params_pane.set_models(self._model_entries(), self._model_problems)
        self.params_pane.select_model(value)
        self._save_settings()
        return True

    # -- gallery -------------------------------------------------------------------------------

    async def show_entry(self, entry: GalleryEntry | None) -> None:
        self._shown_request += 1
        request = self._shown_request
        if entry is None:
            # Nothing highlighted: nothing shown either (a running job keeps its preview).
            if not self.controller.jobs():
                self.preview_pane.clear()
            return
        if entry.missing:
            self.preview_pane.show_error(f"{entry.path} is missing from disk")
            return
        try:
            image = await self.off_thread(load_qimage, entry.path)
        except OSError as exc:
            self.preview_pane.show_error(f"Cannot open {entry.path}: {exc}")
            return
        if request != self._shown_request:
            return  # another image was highlighted (or none) while this one loaded
        caption = entry.path.name
        if entry.prompt:
            prompt = entry.prompt.replace("\n", " ")
            prompt = prompt if len(prompt) <= 60 else prompt[:59] + "…"
            facts = [f"“{prompt}”", f"{entry.width}×{entry.height}"]
            if entry.seed is not None:
                facts.append(f"seed {entry.seed}")
            if entry.scheduler and entry.steps:
                facts.append(f"{entry.scheduler}, {entry.steps} steps")
            caption = " · ".join(facts)
        self.preview_pane.show_image(image, caption)
        made = self.session_images.get(entry.path)
        self.preview_pane.set_timeline(self.timelines.get(*made) if made else None)

    async def show_file(self, path: Path) -> None:
        """An image opened (File → Open image…) or dropped: shown large, with no timeline."""
        try:
            image = await self.off_thread(load_qimage, path)
        except OSError as exc:
            self.preview_pane.show_error(f"Cannot open {path}: {exc}")
            return
        self.preview_pane.show_image(
            image, f"{path.name} · {image.width()}×{image.height()} · opened from {path.parent}"
        )
        self.preview_pane.set_timeline(None)

    # -- timeline export --------------------------------------------------------------------

    def export_animation_dialog(self) -> None:
        timeline = self.preview_pane.timeline()
        entry = self.gallery_pane.current_entry()
        if timeline is None or entry is None:
            self.statusBar().showMessage("Select an image made in this session first", 4000)
            return
        # Not beside the image: a file in the library folder would be adopted as a picture.
        folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
        chosen, kind = QFileDialog.getSaveFileName(
            self,
            "Export denoising animation",
            str(Path(folder or Path.home()) / f"{entry.path.stem}.webp"),
            "Animated WebP (*.webp);;GIF (*.gif)",
        )
        if chosen:
            target = Path(chosen)
            if not target.suffix:  # a bare name: the type picked in the dialog decides
                target = target.with_suffix(".gif" if "gif" in kind.lower() else ".webp")
            self.spawn(self.export_animation(entry, target))

    async def export_animation(self, entry: GalleryEntry, target: Path) -> Path | None:
        made = self.session_images.get(entry.path)
        timeline = self.timelines.get(*made) if made else None
        if timeline is None:
            self.preview_pane.show_error("This image's denoising previews are no longer kept")
            return None
        frames = [frame for _, frame in timeline.frames]
        try:
            await self.off_thread(export_animation, frames, entry.path, target)
        except (OSError, ValueError) as exc:
            self.preview_pane.show_error(f"Could not export {target}: {exc}")
            return None
        self.statusBar().showMessage(f"Animation saved to {target}", 5000)
        return target

    # -- help ----------------------------------------------------------------------------------

    def shortcut_rows(self) -> list[tuple[str, str, str]]:
        """(keys, what they do, where they work) for every shortcut of the window, read from its
        actions and shortcut objects: the F1 list cannot drift from what the keys really do."""
        rows: list[tuple[str, str, str]] = []
        for action in self.findChildren(QAction):
            keys = [k for k in action.shortcuts() if not k.isEmpty()]
            if keys:
                where = self._shortcut_scope(action.shortcutContext(), action.associatedObjects())
                rows.append((_keys_text(keys), _plain_text(action.text()), where))
        for shortcut in self.findChildren(QShortcut):
            keys = [k for k in shortcut.keys() if not k.isEmpty()]  # noqa: SIM118 (not a dict)
            owner = shortcut.parent()
            if keys and owner is not None:
                where = self._shortcut_scope(shortcut.context(), [owner])
                rows.append((_keys_text(keys), shortcut.whatsThis(), where))
        rows.sort(key=lambda row: (row[2] != "Anywhere", row[2], row[1]))
        return rows

    def _shortcut_scope(self, context: Qt.ShortcutContext, owners: list[QObject]) -> str:
        if context in (Qt.ShortcutContext.WindowShortcut, Qt.ShortcutContext.ApplicationShortcut):
            return "Anywhere"
        scopes: list[tuple[QWidget, str]] = [
            (self.gallery_pane, "In the gallery"),
            (self.prompt_pane, "In the prompt"),
            (self.queue_pane, "In the queue"),
        ]
        for owner in owners:
            for pane, name in scopes:
                if isinstance(owner, QWidget) and (owner is pane or pane.isAncestorOf(owner)):
                    return name
        return "In its pane"

    def _show_shortcuts(self) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        rows = self.shortcut_rows()
        table = QTableWidget(len(rows), 3)
        table.setObjectName("shortcuts")
        table.setHorizontalHeaderLabels(["Keys", "Does", "Where"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setWordWrap(False)
        for row, cells in enumerate(rows):
            for column, text in enumerate(cells):
                table.setItem(row, column, QTableWidgetItem(text))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        mouse = QLabel(
            "Mouse: Ctrl/Shift-click selects many images in the gallery; right-click (or the "
            "Menu key) shows what can be done with them; double-click an image for its details, "
            "a tag to remove it."
        )
        mouse.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.close)
        layout = QVBoxLayout(dialog)
        layout.addWidget(table, 1)
        layout.addWidget(mouse)
        layout.addWidget(buttons)
        width = sum(table.columnWidth(c) for c in range(3)) + 4 * table.frameWidth() + 40
        dialog.resize(max(width, 560), min(720, 120 + 26 * len(rows)))
        self.shortcuts_dialog = dialog
        dialog.open()
        return dialog

    # -- settings and shutdown ------------------------------------------------------------------

    def _store_params(self, params: GenerationParams) -> None:
        self.settings.last_params = params.to_dict()
        self.settings.preview_method = params.preview_method
        self.settings.preview_interval = params.preview_interval
        self._save_settings()

    def _collect_settings(self) -> None:
        s = self.settings
        try:
            params = self.current_params()
        except ValueError:
            params = None
        if params is not None:
            s.last_params = params.to_dict()
            s.preview_method = params.preview_method
            s.preview_interval = params.preview_interval
        s.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        s.window_state = bytes(self.saveState().toBase64().data()).decode("ascii")
        s.splitters = {
            name: bytes(splitter.saveState().toBase64().data()).decode("ascii")
            for name, splitter in self.splitters.items()
        }

    def _save_settings(self) -> None:
        """Save a snapshot off the GUI thread (fsync can stall the window)."""
        self._settings_generation += 1
        snapshot, generation = copy.deepcopy(self.settings), self._settings_generation

        async def save() -> None:
            try:
                await self.off_thread(self._write_settings, snapshot, generation)
            except OSError as exc:
                self.statusBar().showMessage(f"Settings not saved: {exc}", 8000)

        self.spawn(save())

    def _write_settings(self, snapshot: Settings, generation: int) -> None:
        # Saves may finish out of order (executor threads, the final save on close): an older
        # snapshot never overwrites a newer one.
        with self._settings_write_lock:
            if generation < self._settings_written:
                return
            save_settings(snapshot)
            self._settings_written = generation

    def _save_settings_now(self) -> None:
        self._settings_generation += 1
        try:
            self._write_settings(self.settings, self._settings_generation)
        except OSError as exc:
            log.error("settings not saved: %s", exc)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closing:
            event.accept()
            return
        waiting = [job.params for job in self.controller.queue.pending()]
        if waiting:
            answer = kept_queue.ask_keep_queue(self, len(waiting))
            if answer == kept_queue.STAY:
                event.ignore()
                return
            try:
                save_queue(waiting if answer == kept_queue.KEEP else [])
            except OSError as exc:
                QMessageBox.critical(
                    self,
                    "Jobs not kept",
                    f"The waiting jobs could not be kept in {saved_queue_file()}: {exc}\n\n"
                    "ldstudio stays open with them.",
                )
                event.ignore()
                return
        self._closing = True
        self._collect_settings()
        self._save_settings_now()
        # Cancels the running job (it stops at its next step) and joins the engine thread.
        self.controller.shutdown()
        for task in list(self._tasks):
            task.cancel()
        # The engine thread is joined: nothing saves into the library any more.
        self.library.close()
        self.store.close()
        event.accept()


def _keys_text(keys: list[QKeySequence]) -> str:
    return ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in keys)


def _plain_text(text: str) -> str:
    """A menu text without its mnemonic marks: "&Open image…" → "Open image…"."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")
