"""MainWindow: puts the panes and the window's parts together, and starts and closes them; GUI
thread.

The request being edited is one `Draft` the prompt and parameter panes share. Each concern has
its part in `ldstudio.qt.window`: the layout and menus, jobs and engine events
(`JobsController`), the canvas's jobs and sources (`CanvasController`), the model list
(`ModelsController`), the images shown and exported (`ImagesController`), Upscale… on a library
or canvas image (`UpscaleController`), the X/Y/Z plot (`GridController`), the kept queue, and
settings with the engine options.
Background work (disk reads and writes, deferred dialogs) goes through one `BackgroundRunner`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import QDialog, QMainWindow, QMessageBox, QVBoxLayout, QWidget

from ldstudio.core.draft import Draft
from ldstudio.core.events import JobCancelled, JobFailed, JobFinished
from ldstudio.core.library import LibraryEntry, LibraryStore
from ldstudio.core.options import EngineOptions
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.core.settings import Settings
from ldstudio.qt.background import BackgroundRunner
from ldstudio.qt.canvas.pane import CanvasPane
from ldstudio.qt.controller import GenerationController
from ldstudio.qt.engine_options import EngineEnvironment, EngineOptionsDialog
from ldstudio.qt.library_controller import LibraryController
from ldstudio.qt.model_manager import Converter, ModelManager
from ldstudio.qt.params_pane import ParamsPane
from ldstudio.qt.preview_view import PreviewPane
from ldstudio.qt.prompt_pane import PromptPane
from ldstudio.qt.queue_pane import QueuePane
from ldstudio.qt.timeline import TimelineStore
from ldstudio.qt.window import layout
from ldstudio.qt.window.canvas_controller import CanvasController
from ldstudio.qt.window.grid_controller import GridController
from ldstudio.qt.window.images_controller import ImagesController
from ldstudio.qt.window.jobs_controller import JobsController
from ldstudio.qt.window.kept_queue_controller import KeptQueueController
from ldstudio.qt.window.menus import build_menus
from ldstudio.qt.window.models_controller import ModelsController
from ldstudio.qt.window.settings_controller import SettingsController
from ldstudio.qt.window.shortcuts_dialog import ShortcutsDialog, shortcut_rows
from ldstudio.qt.window.upscale_controller import UpscaleController

log = logging.getLogger(__name__)
T = TypeVar("T")

APP_TITLE = "ldstudio"


class MainWindow(QMainWindow):
    def __init__(
        self,
        controller: GenerationController,
        settings: Settings,
        bundled_model: Path,
        store: LibraryStore,
    ) -> None:
        super().__init__()
        self.controller = controller
        self.settings = settings
        self.bundled_model = bundled_model
        self.store = store
        self.draft = Draft()
        self.background = BackgroundRunner(on_error=self._on_background_error)
        self._closing = False
        # Set by app.py (the composition root): the engine's side of models and options.
        self.engine_environment: Callable[[], EngineEnvironment | None] = lambda: None
        self.apply_engine_options: Callable[[EngineOptions], None] | None = None
        self.convert_checkpoint: Converter | None = None
        # Dialogs that say something once, kept while they are open.
        self.shortcuts_dialog: QDialog | None = None
        self.settings_notice: QMessageBox | None = None
        self.engine_options_notice: QMessageBox | None = None
        self.setWindowTitle(APP_TITLE)
        self.setObjectName("main_window")

        self.prompt_pane = PromptPane(draft=self.draft)
        self.params_pane = ParamsPane(draft=self.draft)
        self.params_pane.bundled_name = bundled_model.name
        options = self.params_pane.options_box
        options.changed.connect(
            lambda: self.prompt_pane.set_emphasis(options.emphasis_combo.currentText())
        )
        self.preview_pane = PreviewPane()
        self.canvas_pane = CanvasPane()
        self.library = LibraryController(store, self.prompt_pane, self.params_pane, self)
        self.library_model = self.library.model
        self.library_pane = self.library.pane
        self.details_view = self.library.details
        self.queue_pane = QueuePane()

        columns = layout.build_columns(
            self.prompt_pane,
            self.params_pane,
            self.details_view,
            self.preview_pane,
            self.canvas_pane,
            self.library_pane,
            self.queue_pane,
        )
        self.left_tabs = columns.left_tabs
        self.center_tabs = columns.center_tabs
        self.left_splitter = columns.left_splitter
        self.right_splitter = columns.right_splitter
        self.main_splitter = columns.main_splitter
        self.splitters = columns.splitters()
        self.generate_tab, self.details_tab = layout.GENERATE_TAB, layout.DETAILS_TAB
        self.preview_tab, self.canvas_tab = layout.PREVIEW_TAB, layout.CANVAS_TAB
        # An image dropped on the canvas is its source, not parameters to read.
        self.library.drop_filter.skip(self.canvas_pane)
        self._columns_fitted = False
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(8, 8, 8, 4)
        central_layout.addWidget(self.main_splitter)
        self.setCentralWidget(central)
        status = layout.build_status(self.statusBar())
        self.busy_bar = status.busy_bar
        self.device_label = status.device_label
        self.latent_label = status.latent_label

        self.preferences = SettingsController(self)
        self.models = ModelsController(self)
        self.images = ImagesController(self)
        self.kept_queue = KeptQueueController(self)
        self.canvas = CanvasController(self)
        self.upscale = UpscaleController(self)
        self.grid = GridController(self)
        actions = build_menus(self)
        self.generate_action = actions.generate
        self.cancel_action = actions.cancel
        self.export_action = actions.export
        self.jobs = JobsController(self)
        self.canvas.update_generate()  # the menu's Generate too, now that it exists
        lib = self.library
        lib.pane.entry_activated.connect(lambda _e: self.show_details())
        # Parameters put back into the panes are shown there.
        for restored in (lib.actions.restore_requested, lib.actions.seed_requested):
            restored.connect(lambda _v: self.left_tabs.setCurrentIndex(self.generate_tab))

        self.models.show_entries()
        self.preferences.restore()
        if not settings.window_geometry:
            self.resize(1280, 800)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine and the library (it checks itself against the disk on a worker)."""
        self.controller.start()
        self.busy_bar.show()
        self.library.start()
        self.models.on_model_selected()
        self.spawn(self.refresh_models(select_default=True))
        if self.settings.load_problems:
            # What load_settings kept aside or dropped, said once, in a dialog for the same
            # reason as the engine options notice.
            notice = QMessageBox(
                QMessageBox.Icon.Warning,
                "Settings",
                "\n\n".join(self.settings.load_problems),
                parent=self,
            )
            notice.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            notice.open()
            self.settings_notice = notice
            self.settings.load_problems = []
        self.spawn(self.kept_queue.offer_saved_queue())

    @property
    def closing(self) -> bool:
        return self._closing

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closing:
            event.accept()
            return
        if not self.kept_queue.keep_at_quit():
            event.ignore()
            return
        self._closing = True
        self.canvas.give_room_back()
        self.preferences.collect()
        self.preferences.save_now()
        # Cancels the running job (it stops at its next step) and joins the engine thread.
        self.controller.shutdown()
        self.background.close()
        # The engine thread is joined: nothing saves into the library any more.
        self.library.close()
        self.store.close()
        event.accept()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._columns_fitted:
            self._columns_fitted = True
            self.fit_columns(use_defaults="main" not in self.settings.splitters)

    def fit_columns(self, use_defaults: bool = False) -> None:
        """Size the three columns for this window (see `layout.fit_columns`)."""
        layout.fit_columns(self.main_splitter, self.width(), use_defaults)

    # -- background work -----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        return self.background.spawn(coro)

    async def off_thread(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking disk work on an executor thread; the GUI keeps painting."""
        return await self.background.run(func, *args)

    def pending_tasks(self) -> int:
        return self.background.pending()

    def _on_background_error(self, exc: BaseException) -> None:
        if self._closing:
            return
        log.error("background task failed", exc_info=exc)
        self.preview_pane.show_error(f"{type(exc).__name__}: {exc}")

    # -- what the parts do, for the menus, app.py and tests -----------------------------------

    def current_params(self) -> GenerationParams:
        """What Generate submits now: the draft and the pane's options (a Random variation
        seed drawn). ValueError naming the field when a value is not allowed."""
        return self.params_pane.current(draw=True)

    def generate(self) -> None:
        self.jobs.generate()

    async def run_job(
        self, request: Request | GenerationParams
    ) -> JobFinished | JobFailed | JobCancelled | None:
        return await self.jobs.run_job(request)

    @property
    def timelines(self) -> TimelineStore:
        return self.jobs.timelines

    @property
    def session_images(self) -> dict[Path, tuple[int, int]]:
        return self.jobs.session_images

    async def show_entry(self, entry: LibraryEntry | None) -> None:
        await self.images.show_entry(entry)

    async def show_file(self, path: Path) -> None:
        await self.images.show_file(path)

    def export_animation_dialog(self) -> None:
        self.images.export_animation_dialog()

    async def export_animation(self, entry: LibraryEntry, target: Path) -> Path | None:
        return await self.images.export_animation(entry, target)

    def add_model_folder(self, path: Path | None = None) -> bool:
        return self.models.add_model_folder(path)

    async def refresh_models(self, select_default: bool = False) -> None:
        await self.models.refresh_models(select_default)

    def open_model_manager(self) -> ModelManager:
        return self.models.open_model_manager()

    def open_engine_options(self) -> EngineOptionsDialog:
        return self.preferences.open_engine_options()

    def choose_library_folder(self, folder: Path | None = None) -> None:
        self.preferences.choose_library_folder(folder)

    def focus_prompt(self) -> None:
        self.left_tabs.setCurrentIndex(self.generate_tab)
        self.prompt_pane.prompt_edit.setFocus()

    def show_details(self) -> None:
        self.left_tabs.setCurrentIndex(self.details_tab)

    def show_preview(self) -> None:
        self.center_tabs.setCurrentIndex(self.preview_tab)

    def show_canvas(self) -> None:
        self.center_tabs.setCurrentIndex(self.canvas_tab)

    def shortcut_rows(self) -> list[tuple[str, str, str]]:
        """(keys, what they do, where they work) for every shortcut of the window."""
        scopes: list[tuple[QWidget, str]] = [
            (self.library_pane, "In the library"),
            (self.prompt_pane, "In the prompt"),
            (self.queue_pane, "In the queue"),
            (self.canvas_pane, "On the canvas"),
        ]
        return shortcut_rows(self, scopes)

    def show_shortcuts(self) -> QDialog:
        dialog = ShortcutsDialog(self.shortcut_rows(), self)
        self.shortcuts_dialog = dialog
        dialog.open()
        return dialog
