"""The model manager: model folders, every model found in them, and what to use; GUI thread.

Scans run on an executor thread (`loop.run_in_executor`) and hand their entries back in batches
with `call_soon_threadsafe`, so a folder of hundreds of files fills the table progressively and
the window never waits on the disk. The manager never loads a model: it reads headers through
`ldstudio.core.models`, and converting a pickle goes through a callable that `app.py` injects
(the conversion needs torch, which `ldstudio.qt` must not import).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QCloseEvent, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.models import (
    KIND_CHECKPOINT,
    KIND_DIFFUSERS,
    KIND_EMBEDDING,
    KIND_LORA,
    KIND_UPSCALER,
    KIND_VAE,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSAFE,
    STATUS_UNSUPPORTED,
    VARIANT_LABELS,
    VARIANTS,
    ModelEntry,
    ModelFolderStore,
    ModelRegistry,
    hf_cache_dir,
    inspect_diffusers_folder,
    inspect_file,
    iter_library,
    library_roots,
)
from ldstudio.core.models.detection import FAMILY_LABELS
from ldstudio.qt.model_info import ModelInfo, read_model_info

# A batch goes to the GUI thread when it is this big or this old, whichever comes first: a few
# repaints per second keep the table live without flooding the event queue.
BATCH_SIZE = 64
BATCH_SECONDS = 0.1
MAX_LORAS = 8
LORA_STRENGTH_RANGE = (-4.0, 4.0)
# Folders are set up once and rarely change: this many rows show, more scroll, and the model
# table keeps the height.
FOLDER_ROWS = 4
LORA_ROWS = 3
# The Name column fits its longest name up to this many average characters; beyond, names are
# elided (the tooltip has the full path) so the Source folder column keeps some room.
NAME_COLUMN_CHARS = 48

COLUMNS = ("Name", "Kind", "Family / variant", "Size", "Precision", "Source folder", "Status")
COL_NAME, COL_KIND, COL_FAMILY, COL_SIZE, COL_PRECISION, COL_SOURCE, COL_STATUS = range(7)
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2

STATUS_TEXT = {
    STATUS_OK: "ok",
    STATUS_UNSUPPORTED: "unsupported",
    STATUS_UNSAFE: "unsafe (pickle)",
    STATUS_ERROR: "error",
}
STATUS_COLOURS = {
    STATUS_UNSUPPORTED: QColor(160, 110, 0),
    STATUS_UNSAFE: QColor(200, 90, 0),
    STATUS_ERROR: QColor(200, 30, 30),
}

Converter = Callable[[Path], Path]
LoraChoice = tuple[tuple[str, float], ...]


def human_size(size: int) -> str:
    """E.g. "2.0 GiB", "312 KiB"."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def display_name(entry: ModelEntry) -> str:
    """The Name column: a single file's name keeps its extension, so a converted
    "model.safetensors" and its original "model.ckpt" read as the two files they are."""
    suffix = entry.path.suffix
    if (
        entry.kind != KIND_DIFFUSERS
        and suffix.lower() in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
        and entry.name.endswith(entry.path.stem)
    ):
        return entry.name + suffix
    return entry.name


def family_text(entry: ModelEntry) -> str:
    """The Family / variant column: "SD 1.x", "SD 1.x · inpainting"; an upscaler's
    architecture and scale, "Compact ×4"; an embedding's "SD 1.x · 8 vectors"."""
    if entry.kind == KIND_UPSCALER:
        return entry.upscaler_text
    if entry.kind == KIND_EMBEDDING:
        family = FAMILY_LABELS.get(entry.family, "custom width")
        return f"{family} · {entry.vectors} vector{'s' if entry.vectors != 1 else ''}"
    family = VARIANT_LABELS.get(entry.variant, entry.variant) if entry.variant else entry.family
    # Visible, since canvas jobs treat these models differently (auto strength 1 when masked).
    return f"{family} · inpainting" if entry.inpainting else family


# Pixels per side each bundled single-file configuration was trained at.
NATIVE_SIZES = {
    "sd1": 512,
    "sd2": 512,
    "sd2-v": 768,
    "sd-turbo": 512,
    "sdxl": 1024,
    "sdxl-turbo": 512,
}


def read_any_model_info(path: Path, variant: str = "") -> ModelInfo:
    """ModelInfo for a diffusers folder or a single-file checkpoint (from its header only).

    `variant` overrides the detected one (the user's choice in the model manager). ValueError
    naming the file when it is not a loadable model. Disk work: call off the GUI thread.
    """
    if path.is_dir():
        return read_model_info(path)
    entry = inspect_file(path)
    if not entry.loadable:
        raise ValueError(entry.error or f"{path}: a {entry.kind} file, not a checkpoint")
    chosen = variant or entry.variant
    # Every supported family uses a VAE with 8 pixels per latent cell and 4 channels.
    return ModelInfo(path, path.stem, NATIVE_SIZES.get(chosen, 512), 8, 4)


def scan_in_batches(
    roots: list[Path],
    variants: dict[str, str],
    deliver: Callable[[list[ModelEntry]], None],
    stop: threading.Event,
) -> int:
    """Scan `roots` like `scan_library` (duplicates dropped, chosen variants applied), handing
    entries to `deliver` in batches; returns how many were found. Runs on an executor thread."""
    batch: list[ModelEntry] = []
    found = 0
    last = time.monotonic()
    for entry in iter_library(ModelFolderStore(variants=dict(variants)), roots):
        if stop.is_set():
            return found
        batch.append(entry)
        found += 1
        if len(batch) >= BATCH_SIZE or time.monotonic() - last >= BATCH_SECONDS:
            deliver(batch)
            batch, last = [], time.monotonic()
    if batch and not stop.is_set():
        deliver(batch)
    return found


class ModelTableModel(QAbstractTableModel):
    """The scanned entries, one row each; errors in the Status column and every tooltip."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entries: list[ModelEntry] = []
        self.default = ""
        self.bundled: Path | None = None  # the model that ships inside ldstudio, named so

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        entry = self.entries[index.row()]
        column = index.column()
        if role == ENTRY_ROLE:
            return entry
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(entry, column)
        if role == SORT_ROLE:
            return entry.size_bytes if column == COL_SIZE else self._text(entry, column).lower()
        if role == Qt.ItemDataRole.ToolTipRole:
            # The full message, not a shortened one: it names the file and what to do.
            return entry.error or str(entry.path)
        if role == Qt.ItemDataRole.ForegroundRole and column == COL_STATUS:
            colour = STATUS_COLOURS.get(entry.status)
            return QBrush(colour) if colour is not None else None
        if role == Qt.ItemDataRole.FontRole and column == COL_NAME and self._is_default(entry):
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and column == COL_SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _is_default(self, entry: ModelEntry) -> bool:
        return bool(self.default) and str(entry.path) == self.default

    def _text(self, entry: ModelEntry, column: int) -> str:
        if column == COL_NAME:
            bundled = "  (bundled)" if entry.path == self.bundled else ""
            return (
                display_name(entry) + bundled + ("  (default)" if self._is_default(entry) else "")
            )
        if column == COL_KIND:
            return entry.kind
        if column == COL_FAMILY:
            return family_text(entry)
        if column == COL_SIZE:
            return human_size(entry.size_bytes)
        if column == COL_PRECISION:
            return entry.precision
        if column == COL_SOURCE:
            return str(entry.source)
        return STATUS_TEXT.get(entry.status, entry.status)

    def clear(self) -> None:
        self.beginResetModel()
        self.entries = []
        self.endResetModel()

    def append(self, entries: Sequence[ModelEntry]) -> None:
        if not entries:
            return
        first = len(self.entries)
        self.beginInsertRows(QModelIndex(), first, first + len(entries) - 1)
        self.entries.extend(entries)
        self.endInsertRows()

    def replace_entry(self, old: ModelEntry, new: ModelEntry) -> None:
        row = self.entries.index(old)
        self.entries[row] = new
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def set_default(self, default: str) -> None:
        self.default = default
        if self.entries:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.entries) - 1, 0))


class ModelManager(QDialog):
    """Non-modal dialog: folders, the model table, details, and choices for the next image."""

    model_chosen = Signal(str)  # path of the model to generate with
    extras_changed = Signal(str, object)  # VAE path ("" = the model's own), LoraChoice
    default_changed = Signal(str)  # path of the new default model
    scan_finished = Signal(object)  # list[ModelEntry], every entry of the finished scan
    variant_changed = Signal(str, str)  # path of a single-file checkpoint, its chosen variant

    def __init__(
        self,
        converter: Converter | None = None,
        include_hf_cache: bool = True,
        parent: QWidget | None = None,
        bundled: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.bundled = bundled  # listed first: the model every image can be made with
        self.setWindowTitle("Model manager")
        self.setModal(False)
        self.resize(1100, 680)
        self.converter = converter
        self.include_hf_cache = include_hf_cache
        self.store_error = ""
        try:
            self.store = ModelFolderStore.load()
        except ValueError as exc:
            # Keep the broken file as it is (the user may have edited it) and refuse to save.
            self.store = ModelFolderStore()
            self.store_error = str(exc)
        self._stop = threading.Event()
        self._scan_task: asyncio.Task[None] | None = None
        self._convert_task: asyncio.Task[None] | None = None
        self.scanning = False
        self.batches = 0
        # Folders added since the last finished scan: its summary reports on each of them.
        self._added: list[tuple[Path, bool]] = []  # (folder, it was already listed)

        # -- folders --
        self.folder_list = QListWidget()
        self.folder_list.setToolTip(
            "Folders scanned in place (A1111, ComfyUI and plain folders alike); nothing is copied"
        )
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip(
            "Add a folder of checkpoints, VAEs, LoRAs, embeddings or upscalers to scan"
        )
        self.remove_folder_button = QPushButton("Remove folder")
        self.remove_folder_button.setToolTip(
            "Stop scanning the selected folder (its files stay on disk)"
        )
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip("Read every folder again (headers only, in the background)")
        row_height = self.folder_list.fontMetrics().lineSpacing() + 4
        self.folder_list.setMaximumHeight(
            FOLDER_ROWS * row_height + 2 * self.folder_list.frameWidth()
        )
        self.hf_label = QLabel()
        self.hf_label.setWordWrap(True)
        folder_buttons = QVBoxLayout()
        for button in (self.add_folder_button, self.remove_folder_button, self.rescan_button):
            folder_buttons.addWidget(button)
        folder_buttons.addStretch(1)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_list, 1)
        folder_row.addLayout(folder_buttons)
        folders_box = QGroupBox("Model folders")
        folders_layout = QVBoxLayout(folders_box)
        folders_layout.addLayout(folder_row)
        folders_layout.addWidget(self.hf_label)

        # -- table --
        self.table_model = ModelTableModel(self)
        self.table_model.default = self.store.default
        self.table_model.bundled = bundled
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # scan order until a click
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        # Short columns fit their longest value ("SD 2.x (v-prediction, 768 px)") and header;
        # the folder path takes what is left. Name is fitted after each scan but stays
        # resizable by hand (see _fit_name_column).
        for column in (COL_KIND, COL_FAMILY, COL_SIZE, COL_PRECISION, COL_STATUS):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_SOURCE, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        # One line per model: long names elide (full path in the tooltip) instead of wrapping,
        # so rows can be compact and many fit.
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(
            self.table.fontMetrics().lineSpacing() + 8
        )
        self.table.selectionModel().currentRowChanged.connect(self._on_selection)
        self.table.doubleClicked.connect(self.use_selected)

        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Select a model to see its details and any error in full")

        # -- actions on the selected model --
        self.use_button = QPushButton("Use this model")
        self.use_button.setToolTip("Put this model in the parameter pane for the next image")
        self.default_button = QPushButton("Set as default")
        self.default_button.setToolTip("Preselect this model when ldstudio starts")
        self.variant_combo = QComboBox()
        self.variant_combo.setToolTip(
            "Which configuration the checkpoint loads with. Turbo models have exactly the weights "
            "of their base model, so only you can tell; v-prediction is detected when possible."
        )
        self.variant_button = QPushButton("Set variant")
        self.vae_button = QPushButton("Use as VAE")
        self.vae_button.setToolTip("Decode the next images with this VAE instead of the model's")
        self.lora_button = QPushButton("Add LoRA")
        self.lora_button.setToolTip("Apply this LoRA to the next images (strength adjustable)")
        self.convert_button = QPushButton("Convert to safetensors…")
        self.convert_button.setToolTip(
            "Read this pickle once with torch's tensors-only loader and write a .safetensors "
            "copy beside it; a file that holds anything but tensors is refused"
        )
        self.use_button.clicked.connect(self.use_selected)
        self.default_button.clicked.connect(self.set_default_selected)
        self.variant_button.clicked.connect(self.set_variant_selected)
        self.vae_button.clicked.connect(self.use_selected_as_vae)
        self.lora_button.clicked.connect(self.add_selected_lora)
        self.convert_button.clicked.connect(self.convert_selected)
        actions = QHBoxLayout()
        for widget in (
            self.use_button,
            self.default_button,
            self.variant_combo,
            self.variant_button,
            self.vae_button,
            self.lora_button,
            self.convert_button,
        ):
            actions.addWidget(widget)
        actions.addStretch(1)

        # -- VAE and LoRAs for the next generation --
        self.vae_combo = QComboBox()
        self.vae_combo.setToolTip("The VAE that decodes the next images")
        self.vae_combo.addItem("the model's own VAE", "")
        self.vae_combo.currentIndexChanged.connect(self._emit_extras)
        self.lora_table = QTableWidget(0, 2)
        self.lora_table.setHorizontalHeaderLabels(["LoRA", "Strength"])
        self.lora_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.lora_table.verticalHeader().setVisible(False)
        self.lora_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Rows hold a spin box, so they are taller than a line of text.
        self.lora_table.setMaximumHeight(
            self.lora_table.horizontalHeader().sizeHint().height()
            + LORA_ROWS * QDoubleSpinBox().sizeHint().height()
            + 2 * self.lora_table.frameWidth()
        )
        self.remove_lora_button = QPushButton("Remove LoRA")
        self.remove_lora_button.clicked.connect(self.remove_selected_lora)
        extras_box = QGroupBox("For the next images")
        extras_layout = QVBoxLayout(extras_box)
        vae_row = QHBoxLayout()
        vae_row.addWidget(QLabel("VAE:"))
        vae_row.addWidget(self.vae_combo, 1)
        extras_layout.addLayout(vae_row)
        lora_row = QHBoxLayout()
        lora_row.addWidget(self.lora_table, 1)
        lora_row.addWidget(self.remove_lora_button, 0, Qt.AlignmentFlag.AlignTop)
        extras_layout.addLayout(lora_row)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QLabel()

        # The model table takes every pixel of height the rest does not need: folders above
        # are capped at a few rows, and the details sit beside the next images' choices
        # below a splitter that starts as low as those choices allow.
        table_part = QWidget()
        table_layout = QVBoxLayout(table_part)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addWidget(self.table, 1)
        table_layout.addLayout(actions)
        bottom = QWidget()
        bottom_layout = QHBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.detail, 3)
        bottom_layout.addWidget(extras_box, 2)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(table_part)
        splitter.addWidget(bottom)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([self.height(), extras_box.sizeHint().height()])
        layout = QVBoxLayout(self)
        layout.addWidget(folders_box)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.message)
        close_box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close_box.rejected.connect(self.close)
        self.close_button = close_box.button(QDialogButtonBox.StandardButton.Close)
        bottom_row = QHBoxLayout()
        bottom_row.addWidget(self.progress, 1)
        bottom_row.addWidget(close_box)
        layout.addLayout(bottom_row)

        self.add_folder_button.clicked.connect(self.choose_and_add_folder)
        self.remove_folder_button.clicked.connect(self.remove_selected_folder)
        self.rescan_button.clicked.connect(self.rescan)
        self._fill_folders()
        self._on_selection()
        if self.store_error:
            self.show_message(
                f"{self.store_error}. Folder, default and variant changes are disabled until "
                "the file is fixed.",
                error=True,
            )

    # -- messages ----------------------------------------------------------------------------

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color: #c81e1e;" if error else "")
        self.message.setText(text)

    # -- folders -----------------------------------------------------------------------------

    def _fill_folders(self) -> None:
        self.folder_list.clear()
        self.folder_list.addItems(self.store.folders)
        cache = hf_cache_dir()
        if not self.include_hf_cache:
            self.hf_label.setText("")
        elif cache.is_dir():
            self.hf_label.setText(f"Also scanned: the Hugging Face cache, {cache}")
        else:
            self.hf_label.setText(f"Hugging Face cache: {cache} (not present)")

    def _save_store(self) -> bool:
        if self.store_error:
            self.show_message(
                f"Not saved: {self.store_error}. Fix or delete the file, then reopen.", error=True
            )
            return False
        try:
            self.store.save()
        except OSError as exc:
            self.show_message(f"Could not save {ModelFolderStore.file()}: {exc}", error=True)
            return False
        return True

    def choose_folder(self) -> Path | None:
        """Ask for a folder; a separate method so tests can answer without a native dialog."""
        chosen = QFileDialog.getExistingDirectory(self, "Add a model folder")
        return Path(chosen) if chosen else None

    def choose_and_add_folder(self) -> None:
        folder = self.choose_folder()
        if folder is not None:
            self.add_folder(folder)

    def add_folder(self, folder: Path) -> bool:
        known = list(self.store.folders)
        try:
            added = self.store.add_folder(folder)
        except ValueError as exc:
            self.show_message(str(exc), error=True)
            return False
        listed = str(added) in known
        if not listed and not self._save_store():
            self.store.folders.remove(str(added))
            return False
        self._fill_folders()
        self._added.append((added, listed))
        self.show_message(
            f"{added} is already in the list; scanning…" if listed else f"Added {added}; scanning…"
        )
        self.rescan()
        return True

    def _added_summary(self, entries: Sequence[ModelEntry]) -> str:
        """What the finished scan found in each folder added since the last one, worded like
        `ldstudio models add-folder`."""
        parts = []
        for folder, listed in self._added:
            found = [e for e in entries if e.source == folder]
            usable = sum(e.status == STATUS_OK for e in found)
            start = f"{folder} is already in the list" if listed else f"Added {folder}"
            parts.append(f"{start}: {len(found)} model file(s), {usable} usable")
        return "; ".join(parts) + "."

    def remove_selected_folder(self) -> None:
        item = self.folder_list.currentItem()
        if item is None:
            self.show_message("Select a folder in the list to remove it.", error=True)
            return
        folder = item.text()
        try:
            self.store.remove_folder(Path(folder))
        except ValueError as exc:
            self.show_message(str(exc), error=True)
            return
        if not self._save_store():
            self.store.folders.append(folder)
            return
        self._fill_folders()
        self.show_message(f"Removed {folder} from the list (its files stay on disk).")
        self.rescan()

    # -- scanning ----------------------------------------------------------------------------

    def rescan(self) -> None:
        """Start a fresh scan in the background; an older one still running is abandoned."""
        ModelRegistry.shared().invalidate()  # what jobs resolve names against is stale too
        self._stop.set()
        self._stop = threading.Event()
        self.table_model.clear()
        self.batches = 0
        self.scanning = True
        self.rescan_button.setEnabled(False)
        self.progress.setText("Scanning…")
        self._scan_task = asyncio.get_event_loop().create_task(self._scan(self._stop))

    async def _scan(self, stop: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        roots = library_roots(self.store, include_hf_cache=self.include_hf_cache)

        def deliver(batch: list[ModelEntry]) -> None:  # executor thread
            loop.call_soon_threadsafe(self._receive, stop, batch)

        bundled = self.bundled

        def scan() -> int:  # executor thread
            if bundled is not None:
                deliver([inspect_diffusers_folder(bundled, bundled.parent, bundled.name)])
            return scan_in_batches(roots, dict(self.store.variants), deliver, stop)

        started = time.monotonic()
        try:
            await loop.run_in_executor(None, scan)
        except Exception as exc:  # an unexpected OS error must not take the app down
            if not stop.is_set():
                self._added = []
                self.progress.setText("")
                self.show_message(f"Scan failed: {type(exc).__name__}: {exc}", error=True)
                self._scan_done(stop)
            return
        if stop.is_set():
            return
        # Batches were queued with call_soon_threadsafe before the executor returned; let them
        # run first so the count below is complete.
        await asyncio.sleep(0)
        entries = self.table_model.entries
        problems = sum(1 for e in entries if e.status != STATUS_OK)
        found = [e for e in entries if e.path != self.bundled]
        self.progress.setText(
            ("The bundled model and " if len(found) < len(entries) else "")
            + f"{len(found)} model files in {len(roots)} folder(s), {problems} with problems "
            f"(scanned in {time.monotonic() - started:.1f} s)"
        )
        if self._added:
            # Replaces "Added …; scanning…", which would otherwise outlive the scan.
            self.show_message(self._added_summary(entries))
            self._added = []
        self._scan_done(stop)

    def _receive(self, stop: threading.Event, batch: list[ModelEntry]) -> None:
        if stop.is_set():
            return  # from an abandoned scan, or the dialog is closing
        self.batches += 1
        self.table_model.append(batch)
        self._fit_name_column()
        self._refresh_vae_choices()
        self.progress.setText(f"Scanning… {len(self.table_model.entries)} found")

    def _fit_name_column(self) -> None:
        self.table.resizeColumnToContents(COL_NAME)
        widest = self.table.fontMetrics().averageCharWidth() * NAME_COLUMN_CHARS
        if self.table.columnWidth(COL_NAME) > widest:
            self.table.setColumnWidth(COL_NAME, widest)

    def _scan_done(self, stop: threading.Event) -> None:
        self.scanning = False
        self.rescan_button.setEnabled(True)
        self._on_selection()
        self.scan_finished.emit(list(self.table_model.entries))

    def closeEvent(self, event: QCloseEvent) -> None:
        self._stop.set()  # the executor thread stops at the next file
        super().closeEvent(event)

    # -- the selection -----------------------------------------------------------------------

    def selected_entry(self) -> ModelEntry | None:
        index = self.table.currentIndex()
        if not index.isValid():
            return None
        entry = self.proxy.data(index, ENTRY_ROLE)
        return entry if isinstance(entry, ModelEntry) else None

    def select_path(self, path: Path) -> bool:
        """Select the row of `path`; False when it is not listed."""
        for row, entry in enumerate(self.table_model.entries):
            if entry.path == path:
                index = self.proxy.mapFromSource(self.table_model.index(row, 0))
                self.table.setCurrentIndex(index)
                return True
        return False

    def _on_selection(self, *_: object) -> None:
        entry = self.selected_entry()
        self.use_button.setEnabled(entry is not None and entry.loadable)
        self.default_button.setEnabled(entry is not None and entry.loadable)
        self.vae_button.setEnabled(
            entry is not None and entry.kind == KIND_VAE and entry.status == STATUS_OK
        )
        self.lora_button.setEnabled(
            entry is not None and entry.kind == KIND_LORA and entry.status == STATUS_OK
        )
        self.convert_button.setEnabled(
            entry is not None
            and entry.path.suffix.lower() in PICKLE_SUFFIXES
            and self.converter is not None
            and self._convert_task is None
        )
        self.variant_combo.clear()
        variants = VARIANTS.get(entry.family, ()) if entry and entry.kind == KIND_CHECKPOINT else ()
        for variant in variants:
            self.variant_combo.addItem(VARIANT_LABELS[variant], variant)
        if entry is not None and entry.variant:
            self.variant_combo.setCurrentIndex(max(self.variant_combo.findData(entry.variant), 0))
        self.variant_combo.setEnabled(len(variants) > 1)
        self.variant_button.setEnabled(len(variants) > 1)
        self.detail.setPlainText(self._detail_text(entry) if entry is not None else "")

    def _detail_text(self, entry: ModelEntry) -> str:
        lines = [
            f"{entry.name} — {entry.kind}, {STATUS_TEXT.get(entry.status, entry.status)}",
            f"File: {entry.path}",
            f"Size on disk: {human_size(entry.size_bytes)} ({entry.size_bytes} bytes)",
        ]
        if entry.family:
            lines.append(f"Family: {family_text(entry)}")
        if entry.kind == KIND_UPSCALER and entry.architecture:
            lines.append(f"Upscaler: {entry.upscaler_text}")
        if entry.kind == KIND_EMBEDDING:
            lines.append(
                f"Embedding: {entry.vectors} vector(s), each taking one of a chunk's 75 tokens"
            )
            word = entry.name.split("/")[-1]
            lines.append(f"Use: write {word} (or embedding:{word}) in a prompt")
        if entry.precision:
            lines.append(f"Precision: {entry.precision}")
        lines.append(f"Found in: {entry.source}")
        if entry.error:
            lines.append("")
            lines.append(entry.error)
        return "\n".join(lines)

    # -- actions -----------------------------------------------------------------------------

    def use_selected(self, *_: object) -> None:
        entry = self.selected_entry()
        if entry is None:
            return
        if not entry.loadable:
            if entry.kind == KIND_UPSCALER and entry.status == STATUS_OK:
                why = f"it is an upscaler ({entry.upscaler_text}), not a model to generate with"
            elif entry.kind == KIND_EMBEDDING and entry.status == STATUS_OK:
                word = entry.name.split("/")[-1]
                why = f"it is a textual-inversion embedding; write {word} in a prompt to use it"
            else:
                why = entry.error or f"it is a {entry.kind}, not a checkpoint or diffusers folder"
            self.show_message(f"{entry.name} cannot be used for generation: {why}", error=True)
            return
        self.model_chosen.emit(str(entry.path))
        self.show_message(f"Generating with {entry.name}.")

    def set_default_selected(self) -> None:
        entry = self.selected_entry()
        if entry is None or not entry.loadable:
            self.show_message("Only a loadable checkpoint or diffusers folder can be the default.")
            return
        previous = self.store.default
        self.store.default = str(entry.path)
        if not self._save_store():
            self.store.default = previous
            return
        self.table_model.set_default(self.store.default)
        self._fit_name_column()  # "  (default)" moved to another row
        self.default_changed.emit(self.store.default)
        self.show_message(f"{entry.name} is now the default model.")

    def set_variant_selected(self) -> None:
        entry = self.selected_entry()
        variant = self.variant_combo.currentData()
        if entry is None or not isinstance(variant, str):
            return
        previous = dict(self.store.variants)
        try:
            self.store.set_variant(entry.path, variant, entry.family)
        except ValueError as exc:
            self.show_message(str(exc), error=True)
            return
        if not self._save_store():
            self.store.variants = previous
            return
        updated = replace(entry, variant=variant)
        self.table_model.replace_entry(entry, updated)
        self.select_path(updated.path)
        self.variant_changed.emit(str(updated.path), variant)
        self.show_message(f"{entry.name} now loads as {VARIANT_LABELS[variant]}.")

    # -- VAE and LoRAs -----------------------------------------------------------------------

    def _refresh_vae_choices(self) -> None:
        current = self.vae_combo.currentData()
        listed = {self.vae_combo.itemData(i) for i in range(self.vae_combo.count())}
        self.vae_combo.blockSignals(True)
        for entry in self.table_model.entries:
            if (
                entry.kind == KIND_VAE
                and entry.status == STATUS_OK
                and str(entry.path) not in listed
            ):
                self.vae_combo.addItem(entry.name, str(entry.path))
                self.vae_combo.setItemData(
                    self.vae_combo.count() - 1, str(entry.path), Qt.ItemDataRole.ToolTipRole
                )
                listed.add(str(entry.path))
        self.vae_combo.setCurrentIndex(max(self.vae_combo.findData(current), 0))
        self.vae_combo.blockSignals(False)

    def use_selected_as_vae(self) -> None:
        entry = self.selected_entry()
        if entry is None or entry.kind != KIND_VAE:
            return
        self._refresh_vae_choices()
        self.vae_combo.setCurrentIndex(self.vae_combo.findData(str(entry.path)))

    def add_selected_lora(self) -> None:
        entry = self.selected_entry()
        if entry is None or entry.kind != KIND_LORA or entry.status != STATUS_OK:
            return
        if any(path == str(entry.path) for path, _ in self.loras()):
            self.show_message(f"{entry.name} is already applied; change its strength below.")
            return
        if self.lora_table.rowCount() >= MAX_LORAS:
            self.show_message(f"At most {MAX_LORAS} LoRAs at once.", error=True)
            return
        row = self.lora_table.rowCount()
        self.lora_table.insertRow(row)
        item = QTableWidgetItem(entry.name)
        item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
        item.setToolTip(str(entry.path))
        self.lora_table.setItem(row, 0, item)
        spin = QDoubleSpinBox()
        spin.setRange(*LORA_STRENGTH_RANGE)
        spin.setSingleStep(0.05)
        spin.setDecimals(2)
        spin.setValue(1.0)
        spin.setToolTip("How strongly the LoRA applies: 1 = as trained, 0 = not at all")
        spin.valueChanged.connect(self._emit_extras)
        self.lora_table.setCellWidget(row, 1, spin)
        self._emit_extras()

    def remove_selected_lora(self) -> None:
        row = self.lora_table.currentRow()
        if row < 0:
            self.show_message("Select a LoRA in the list below to remove it.", error=True)
            return
        self.lora_table.removeRow(row)
        self._emit_extras()

    def vae(self) -> str:
        value = self.vae_combo.currentData()
        return value if isinstance(value, str) else ""

    def loras(self) -> LoraChoice:
        chosen: list[tuple[str, float]] = []
        for row in range(self.lora_table.rowCount()):
            item = self.lora_table.item(row, 0)
            spin = self.lora_table.cellWidget(row, 1)
            if item is not None and isinstance(spin, QDoubleSpinBox):
                chosen.append((str(item.data(Qt.ItemDataRole.UserRole)), round(spin.value(), 4)))
        return tuple(chosen)

    def _emit_extras(self, *_: object) -> None:
        self.extras_changed.emit(self.vae(), self.loras())

    # -- convert -----------------------------------------------------------------------------

    def confirm(self, title: str, text: str) -> bool:
        """Ask yes/no; a separate method so tests can answer without a modal box."""
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def convert_selected(self) -> None:
        entry = self.selected_entry()
        if entry is None or self.converter is None or self._convert_task is not None:
            return
        target = entry.path.with_suffix(".safetensors")
        if not self.confirm(
            "Convert to safetensors",
            f"Read {entry.path} with torch's tensors-only loader and write {target}?\n\n"
            "Nothing in the file is executed: a file that holds anything but tensors is "
            "refused. The original file is kept.",
        ):
            return
        self._convert_task = asyncio.get_event_loop().create_task(self._convert(entry.path))
        self._on_selection()

    async def _convert(self, path: Path) -> None:
        assert self.converter is not None
        self.show_message(f"Converting {path}…")
        try:
            written = await asyncio.get_running_loop().run_in_executor(None, self.converter, path)
        except Exception as exc:  # the converter's refusal (CheckpointError) or an OS error
            # The engine words its refusals itself (never torch's "load with
            # weights_only=False" advice): shown as they come.
            self.show_message(f"Not converted: {exc}", error=True)
        else:
            self.show_message(f"Wrote {written}; the original {path.name} is unchanged.")
            self.rescan()
        finally:
            self._convert_task = None
            with contextlib.suppress(RuntimeError):  # the dialog may be gone by now
                self._on_selection()
