"""SettingsController: what the window remembers — the parameters (through the draft), the
geometry and splitters, the library folder — saved off the GUI thread, newest first; and the
engine (this computer with its options, or an ldstudio server), edited in its dialog and
checked against the machine; GUI thread."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QObject, Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ldstudio.core.options import EngineOptions
from ldstudio.core.params import GenerationParams
from ldstudio.core.settings import ServerTarget, Settings, save_settings
from ldstudio.qt.engine_options import (
    EngineOptionsDialog,
    load_engine_options,
    reset_impossible_options,
)

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow

log = logging.getLogger(__name__)


class SettingsController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.settings = window.settings
        self._generation = 0
        self._written = 0
        self._write_lock = threading.Lock()
        # Set by app.py: switch where the next job runs (a server, or None: this computer).
        self.apply_engine_choice: Callable[[ServerTarget | None], None] | None = None

    # -- restoring and collecting --------------------------------------------------------------

    def restore(self) -> None:
        """Show what the settings hold: the last parameters, recent prompts, the layout."""
        w, s = self.window, self.settings
        params = s.params()
        if params is not None:
            w.draft.load(params)
            w.params_pane.options_box.set_params(params)
        w.draft.update(preview_method=s.preview_method, preview_interval=s.preview_interval)
        w.params_pane.hires_box.set_settings(s.hires())
        w.prompt_pane.set_recent(s.recent_prompts)
        if s.window_geometry:
            w.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode("ascii")))
        if s.window_state:
            w.restoreState(QByteArray.fromBase64(s.window_state.encode("ascii")))
        for name, splitter in w.splitters.items():
            if name in s.splitters:
                splitter.restoreState(QByteArray.fromBase64(s.splitters[name].encode("ascii")))

    def store_params(self, params: GenerationParams) -> None:
        self._keep_params(params)
        self.save()

    def _keep_params(self, params: GenerationParams) -> None:
        self.settings.last_params = params.to_dict()
        self._keep_hires()
        self.settings.preview_method = params.preview_method
        self.settings.preview_interval = params.preview_interval

    def collect(self) -> None:
        """Put the draft (when it is valid) and the layout into the settings."""
        w, s = self.window, self.settings
        try:
            params = w.params_pane.current()
        except ValueError:
            params = None
        if params is not None:
            self._keep_params(params)
        self._keep_hires()
        s.window_geometry = bytes(w.saveGeometry().toBase64().data()).decode("ascii")
        s.window_state = bytes(w.saveState().toBase64().data()).decode("ascii")
        s.splitters = {
            name: bytes(splitter.saveState().toBase64().data()).decode("ascii")
            for name, splitter in w.splitters.items()
        }

    def _keep_hires(self) -> None:
        try:
            hires = self.window.params_pane.hires_box.shown()
        except ValueError:  # not a valid hires fix as shown: the saved one stays
            return
        self.settings.last_hires = hires.to_dict() if hires is not None else {}

    # -- saving --------------------------------------------------------------------------------

    def save(self) -> None:
        """Save a snapshot off the GUI thread (fsync can stall the window)."""
        self._generation += 1
        snapshot, generation = copy.deepcopy(self.settings), self._generation

        async def save() -> None:
            try:
                await self.window.background.run(self._write, snapshot, generation)
            except OSError as exc:
                self.window.statusBar().showMessage(f"Settings not saved: {exc}", 8000)

        self.window.background.spawn(save())

    def _write(self, snapshot: Settings, generation: int) -> None:
        # Saves may finish out of order (executor threads, the final save on close): an older
        # snapshot never overwrites a newer one.
        with self._write_lock:
            if generation < self._written:
                return
            save_settings(snapshot)
            self._written = generation

    def save_now(self) -> None:
        """Save on this thread (at close: no later save is coming)."""
        self._generation += 1
        try:
            self._write(self.settings, self._generation)
        except OSError as exc:
            log.error("settings not saved: %s", exc)

    # -- the library folder and the engine options ---------------------------------------------

    def choose_library_folder(self, folder: Path | None = None) -> None:
        """Remember another library folder; the open library stays until the next start."""
        w = self.window
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(
                w, "Choose the library folder", str(self.settings.library_dir())
            )
            if not chosen:
                return
            folder = Path(chosen)
        self.settings.library_folder = str(folder.resolve())
        self.save()
        w.statusBar().showMessage(
            f"The library in {folder} will be used from the next start; "
            "this session keeps the current one.",
            10_000,
        )

    def open_engine_options(self) -> EngineOptionsDialog:
        # The source, not its value: opened while the engine starts, the dialog checks the
        # device-dependent choices once the engine knows its devices.
        w = self.window
        dialog = EngineOptionsDialog(self.settings, w.engine_environment, w)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.options_changed.connect(self._on_engine_options)
        dialog.engine_changed.connect(self._on_engine_choice)
        dialog.open()
        return dialog

    def _on_engine_choice(self, target: ServerTarget | None) -> None:
        w = self.window
        self.save()
        where = "this computer" if target is None else f"the server {target.url}"
        if self.apply_engine_choice is None:
            w.statusBar().showMessage(f"Jobs will run on {where} from the next start", 8000)
            return
        self.apply_engine_choice(target)
        w.statusBar().showMessage(f"Jobs run on {where} from the next job", 8000)

    def _on_engine_options(self, options: EngineOptions) -> None:
        w = self.window
        self.save()
        if w.apply_engine_options is None:
            w.statusBar().showMessage("Engine options saved; they apply at the next start", 8000)
            return
        w.apply_engine_options(options)
        w.statusBar().showMessage("Engine options saved; they apply from the next image", 8000)

    def check_saved_engine_options(self) -> None:
        """Saved options this machine cannot run (saved elsewhere, or before they could be
        checked) go back to auto, saying so: left alone they would be refused at every start."""
        w = self.window
        if self.settings.uses_server:
            return  # the server runs its own options; these are checked when used again
        environment = w.engine_environment()
        if environment is None:
            return
        message = reset_impossible_options(self.settings, environment)
        if not message:
            return
        self.save()
        if w.apply_engine_options is not None:
            # The engine fell back to all-auto at start: the user's other choices apply again.
            w.apply_engine_options(load_engine_options(self.settings))
        # A dialog, not the status bar: the next "Model … ready" would replace it in seconds.
        notice = QMessageBox(QMessageBox.Icon.Warning, "Engine options", message, parent=w)
        notice.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        notice.open()
        w.engine_options_notice = notice
