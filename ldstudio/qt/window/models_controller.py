"""ModelsController: the model picker's list (model folders, scans, models added by hand; or,
while jobs run on an ldstudio server, the server's models) and the hires fix's upscaler models
(the same scans), the chosen model's info and latent size, and the model manager's choices;
GUI thread, disk and network work through the window's BackgroundRunner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ldstudio.core.models import ModelEntry, ModelFolderStore, ModelRegistry
from ldstudio.qt.model_info import ModelInfo, model_problem
from ldstudio.qt.model_manager import ModelManager, read_any_model_info

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow

# The server's models as picker entries (label, value), and "" or why they could not be read;
# called off the GUI thread (it asks the server).
ServerModelSource = Callable[[], tuple[list[tuple[str, str]], str]]


class ModelsController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.bundled_model = window.bundled_model
        self.model_manager: ModelManager | None = None
        self._model_info: ModelInfo | None = None
        self._scanned_models: list[ModelEntry] = []
        self._model_problems: dict[str, str] = {}  # models added by hand that cannot be used
        # Set by app.py while jobs run on a server (None: this computer's models).
        self.server_models: ServerModelSource | None = None
        self._server_entries: list[tuple[str, str]] | None = None
        params_pane = window.params_pane
        params_pane.changed.connect(self.update_latent_label)
        params_pane.hires_box.changed.connect(self.update_latent_label)
        params_pane.model_combo.currentIndexChanged.connect(self.on_model_selected)
        params_pane.add_model_requested.connect(self.add_model_folder)

    # -- the picker ----------------------------------------------------------------------------

    def model_entries(self) -> list[tuple[str, str]]:
        if self._server_entries is not None:
            # The server's bundled model is "" too: every ldstudio bundles the same one.
            return [
                (f"{self.bundled_model.name} (bundled, on the server)", ""),
                *self._server_entries,
            ]
        entries = [(f"{self.bundled_model.name} (bundled)", "")]
        listed = {""}
        for folder in self.window.settings.model_folders:
            path = Path(folder)
            entries.append((f"{path.name} — {path.parent}", folder))
            listed.add(folder)
        for entry in self._scanned_models:
            if str(entry.path) not in listed:
                entries.append((f"{entry.name} — {entry.source}", str(entry.path)))
                listed.add(str(entry.path))
        return entries

    def show_entries(self) -> None:
        self.window.params_pane.set_models(self.model_entries(), self._model_problems)

    async def refresh_models(self, select_default: bool = False) -> None:
        """Fill the model picker from the model folders (scanned off the GUI thread), or from
        the server's model list while jobs run on a server."""
        w = self.window
        run = w.background.run
        source = self.server_models
        if source is not None:
            entries_here, problem = await run(source)
            if self.server_models is not source:
                return  # switched engines meanwhile: that switch refreshes again
            if problem:
                # The picker keeps the bundled model (and what it showed); the next refresh
                # or job tries the server again.
                w.statusBar().showMessage(f"The server's model list was not read: {problem}", 15000)
            self._server_entries = entries_here
            self.show_entries()
            saved = w.settings.params()
            wanted = saved.model if saved is not None else ""
            if select_default and any(value == wanted for _label, value in entries_here):
                w.params_pane.select_model(wanted)
            return
        self._server_entries = None
        try:
            store = await run(ModelFolderStore.load)
        except ValueError as exc:
            w.statusBar().showMessage(f"Model folders not read: {exc}", 10000)
            store = ModelFolderStore()
        entries = await run(ModelRegistry.shared().rescan, store)
        # Models added by hand may have broken since (or before a restart): marked, not hidden.
        added = list(w.settings.model_folders)
        found = await run(lambda: {f: model_problem(Path(f)) for f in added})
        self._model_problems = {f: problem for f, problem in found.items() if problem}
        self._scanned(entries)
        if not select_default:
            return
        # At start: the default model; else the last one used, which the picker could not
        # show before the scan found it. A choice made meanwhile is kept.
        saved = w.settings.params()
        wanted = store.default or (saved.model if saved is not None else "")
        if wanted and (store.default or w.params_pane.model_value() == ""):
            w.params_pane.select_model(self._picker_value(wanted))

    def _scanned(self, entries: list[ModelEntry]) -> None:
        """A scan's models: the loadable ones to the picker, the usable upscalers to the hires
        fix's upscaler list."""
        self._set_scanned_models(entries)
        upscalers = [e for e in entries if e.usable_upscaler]
        self.window.params_pane.hires_box.set_upscalers(upscalers)

    def _set_scanned_models(self, entries: list[ModelEntry]) -> None:
        # The bundled model is the picker's first entry already (value "").
        self._scanned_models = [e for e in entries if e.loadable and e.path != self.bundled_model]
        self.show_entries()

    def _picker_value(self, path: str) -> str:
        """The model picker's value for a model path: "" is the bundled model."""
        return "" if path and Path(path) == self.bundled_model else path

    def _variant_for(self, path: Path) -> str:
        for entry in self._scanned_models:
            if entry.path == path:
                return entry.variant
        return ""

    def add_model_folder(self, path: Path | None = None) -> bool:
        """Models → Add…: a .safetensors checkpoint or a diffusers folder; refused, saying why,
        when the model manager would report it unusable. True when it was added and chosen."""
        w = self.window
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(
                w,
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
                w,
                "Model not added",
                f"{problem}\n\nThe model list is unchanged.",
            )
            return False
        value = str(path.resolve())
        if value not in w.settings.model_folders:
            w.settings.model_folders.append(value)
        self._model_problems.pop(value, None)
        self.show_entries()
        w.params_pane.select_model(value)
        w.preferences.save()
        return True

    # -- the chosen model ----------------------------------------------------------------------

    def on_model_selected(self) -> None:
        value = self.window.params_pane.model_value()
        if value and self.is_server_model(value):
            # A name on the server: no file here to read its size and latent shape from.
            self._model_info = None
            self.window.params_pane.set_model_info(None)
            self.update_latent_label()
            return
        path = Path(value) if value else self.bundled_model
        self.window.background.spawn(self._load_model_info(path))

    async def _load_model_info(self, path: Path) -> None:
        w = self.window
        try:
            info: ModelInfo | None = await w.background.run(
                read_any_model_info, path, self._variant_for(path)
            )
        except ValueError as exc:
            info = None
            w.statusBar().showMessage(str(exc), 8000)
        self._model_info = info
        w.params_pane.set_model_info(info)
        self.update_latent_label()

    def is_server_model(self, value: str) -> bool:
        """Whether the picker's `value` names one of the server's models."""
        entries = self._server_entries or []
        return any(listed == value for _label, listed in entries)

    def latent_text(self, width: int | None, height: int | None) -> str:
        if self._model_info is None and self.is_server_model(self.window.params_pane.model_value()):
            return "latent size: known to the server (the model is there)"
        if self._model_info is None:
            return "latent size: shown once the model folder is readable"
        return self._model_info.latent_text(width, height)

    def update_latent_label(self) -> None:
        pane = self.window.params_pane
        width, height = pane.chosen_size()
        text = self.latent_text(width, height)
        try:
            hires = pane.hires_box.settings()
        except ValueError:
            hires = None
        if hires is not None:  # the image a job makes is the second pass's
            first = (width or pane.native_size, height or pane.native_size)
            target = hires.target_size(*first)
            text += f" · hires fix to {target[0]}×{target[1]}"
        self.window.latent_label.setText(text)

    # -- the model manager ---------------------------------------------------------------------

    def open_model_manager(self) -> ModelManager:
        w = self.window
        if self.model_manager is None:
            manager = ModelManager(
                converter=w.convert_checkpoint, parent=w, bundled=self.bundled_model
            )
            manager.model_chosen.connect(self._use_model)
            manager.extras_changed.connect(w.params_pane.set_extras)
            manager.default_changed.connect(lambda _path: w.background.spawn(self.refresh_models()))
            manager.scan_finished.connect(self._scanned)
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
        if self.window.params_pane.model_value() == path:
            # Native size and size presets follow the variant (SD 2 768-v vs 512 base).
            self.on_model_selected()

    def _use_model(self, path: str) -> None:
        manager = self.model_manager
        params_pane = self.window.params_pane
        value = self._picker_value(path)
        if params_pane.model_combo.findData(value) < 0 and manager is not None:
            # Chosen before the scan finished: list it now.
            chosen = [e for e in manager.table_model.entries if str(e.path) == value]
            self._set_scanned_models([*self._scanned_models, *chosen])
        params_pane.select_model(value)
        self.window.statusBar().showMessage(f"Model {Path(path).name} selected", 4000)
