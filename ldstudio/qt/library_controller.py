"""LibraryController: the library browser's parts wired together and to the parameter panes.

It owns the `LibraryModel`, `LibraryPane`, `ImageDetailsView`, `LibraryActions` and
`MetadataReader` for one `GalleryStore`, turns the pane's intents into actions, restores
parameters (from library images, dropped or opened files) into the prompt and parameter panes,
imports folders of existing images, and reports outcomes through `status_message` / `error`.
A window places `pane` and `details` and calls `start()`, `refresh()` after jobs, and `close()`
before `store.close()`. GUI thread; the disk work runs on the parts' worker threads.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from ldstudio.core.gallery import (
    GalleryEntry,
    GalleryFilter,
    GalleryStore,
    ImportReport,
    ReconcileReport,
)
from ldstudio.core.readers import ReadResult
from ldstudio.qt.image_details import (
    ImageDetailsView,
    LibraryActions,
    confirm_empty_trash,
    failures_text,
    images_text,
)
from ldstudio.qt.library_model import LibraryModel
from ldstudio.qt.library_pane import LibraryPane
from ldstudio.qt.metadata_drop import (
    MetadataDropFilter,
    MetadataReader,
    apply_to_panes,
    merge_params,
    offer_restore,
)
from ldstudio.qt.params_pane import ParamsPane
from ldstudio.qt.prompt_pane import PromptPane

log = logging.getLogger(__name__)

IMPORT_PROGRESS_S = 0.5  # how often a long import says how far it got


class LibraryController(QObject):
    status_message = Signal(str)  # a short note for the status bar
    error = Signal(str)  # something the user must see: what failed and why
    reconciled = Signal(object)  # ReconcileReport, after the start-up check
    import_progress = Signal(str)  # "Importing … 1,200 of 20,000 files", while an import runs
    file_opened = Signal(object)  # Path of an image opened or dropped, read before asking

    def __init__(
        self,
        store: GalleryStore,
        prompt_pane: PromptPane,
        params_pane: ParamsPane,
        window: QWidget,
        *,
        poll_revision: bool = True,
    ) -> None:
        super().__init__(window)
        self.store = store
        self.prompt_pane = prompt_pane
        self.params_pane = params_pane
        self.window = window
        self.model = LibraryModel(store, poll_revision=poll_revision)
        self.pane = LibraryPane(self.model)
        self.actions = LibraryActions(store, self.model)
        self.details = ImageDetailsView(self.actions)
        self.reader = MetadataReader()
        self.drop_filter = MetadataDropFilter(window, self.reader)
        self.auto_confirm = False  # tests and scripts restore without asking
        self._connect()

    def _connect(self) -> None:
        p, a = self.pane, self.actions
        p.entry_selected.connect(self.details.show_entry)
        p.reuse_params_requested.connect(a.reuse_all)
        p.reuse_seed_requested.connect(a.reuse_seed)
        p.favourite_requested.connect(a.set_favourite_rows)
        p.copy_requested.connect(a.copy)
        p.save_as_requested.connect(self.details.save_as_dialog)
        p.save_many_requested.connect(self.details.save_many_dialog)
        p.open_folder_requested.connect(a.open_folder)
        p.delete_requested.connect(a.trash_rows)
        p.restore_requested.connect(a.restore_rows)
        p.empty_trash_requested.connect(self.empty_trash)
        a.message.connect(self.status_message)
        a.failed.connect(self.error)
        a.restore_requested.connect(self.restore)
        a.seed_requested.connect(self._reuse_seed)
        a.changed.connect(self.model.load_choices)
        self.model.failed.connect(self.error)
        self.reader.read_finished.connect(self._file_read)
        self.reader.read_failed.connect(self.error)

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Show the library now, and check it against the disk on a worker (then refresh)."""
        self.drop_filter.watch_children()  # the window's panes exist by now
        self.model.refresh()
        self.model.load_choices()
        self.actions.run(self.store.reconcile, self._reconciled, "Could not check the library")

    def _reconciled(self, report: ReconcileReport) -> None:
        if report.changed:
            self.model.refresh()
            self.model.load_choices()
            found = len(report.adopted)
            missing = len(report.flagged_missing)
            self.status_message.emit(
                f"Library checked: {found} image{'s' if found != 1 else ''} found, "
                f"{missing} missing"
            )
        self.reconciled.emit(report)

    def refresh(self) -> None:
        """After a job saved images (or anything else changed the library)."""
        self.model.refresh()

    def close(self) -> None:
        """Stop every worker; call before `store.close()`."""
        self.model.close()
        self.actions.close()
        self.reader.close()

    # -- intents --------------------------------------------------------------------------------

    def open_image_dialog(self) -> Path | None:
        """File → Open image…"""
        return self.reader.open_dialog(self.window)

    def open_image(self, path: Path) -> None:
        self.reader.open_file(path)

    def import_folder_dialog(self) -> None:
        """File → Import images…: pick a folder, then index it in place or copy it in."""
        folder = QFileDialog.getExistingDirectory(
            self.window, "Import images into the library", str(Path.home())
        )
        if not folder:
            return
        box = QMessageBox(self.window)
        box.setWindowTitle("Import images")
        box.setText(f"Add the PNG, JPEG and WebP images in {folder} (and its sub-folders)?")
        box.setInformativeText(
            "Index in place: the files stay where they are and the library points at them.\n"
            "Copy: the library keeps its own copies; the originals are not touched either way."
        )
        in_place = box.addButton("&Index in place", QMessageBox.ButtonRole.AcceptRole)
        copy = box.addButton("&Copy into library", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(in_place)
        box.exec()
        if box.clickedButton() in (in_place, copy):
            self.import_folder(Path(folder), copy=box.clickedButton() is copy)

    def import_folder(self, folder: Path, *, copy: bool = False) -> None:
        """Add a folder of images (with whatever metadata other tools wrote) on the worker."""
        self.status_message.emit(f"Importing images from {folder}…")

        def progress(done: int, total: int) -> None:  # the worker thread: queued to the GUI
            if done < total:  # the end is the report's own message
                self.import_progress.emit(
                    f"Importing images from {folder}: {done:,} of {total:,} files looked at…"
                )

        def done(report: ImportReport) -> None:
            self.model.refresh()
            self.model.load_choices()
            how = "copied" if copy else "indexed in place"
            self.status_message.emit(
                f"Imported {images_text(len(report.added))} from {folder} ({how}); "
                f"{len(report.already_in_library):,} already in the library, "
                f"{len(report.skipped):,} skipped"
            )
            if report.skipped:
                self.error.emit(failures_text(report.skipped, "not imported"))

        self.actions.run(
            lambda: self.store.import_folder(
                folder, copy=copy, progress=progress, progress_every=IMPORT_PROGRESS_S
            ),
            done,
            f"Could not import {folder}",
        )

    def empty_trash(self) -> None:
        count = self.store.count(GalleryFilter(trashed=True))
        if self.auto_confirm or confirm_empty_trash(self.window, count):
            self.actions.empty_trash()

    def _file_read(self, path: Path, result: ReadResult) -> None:
        self.file_opened.emit(path)  # shown while the user decides what to restore
        for warning in result.warnings:
            log.info("%s: %s", path.name, warning)
        if not result.found:
            if self.auto_confirm:
                self.error.emit(f"{path.name}: {result.message}; nothing to restore")
            else:
                offer_restore(self.window, path, result)  # explains what ldstudio can read
            return
        if self.auto_confirm or offer_restore(self.window, path, result):
            self.restore(result)

    def restore(self, result: ReadResult) -> None:
        """Put a result's parameters into the prompt and parameter panes."""
        try:
            base = self.params_pane.params(
                self.prompt_pane.prompt(), self.prompt_pane.negative_prompt()
            )
        except ValueError:
            base = self.params_pane.params("", "")
        params, notes = merge_params(result, base)
        apply_to_panes(params, self.prompt_pane, self.params_pane)
        note = f"Parameters restored ({result.label})"
        self.status_message.emit(note + (": " + "; ".join(notes) if notes else ""))

    def _reuse_seed(self, seed: int) -> None:
        self.params_pane.set_seed(seed)
        self.status_message.emit(f"Seed {seed} fixed")

    def select_newest(self) -> None:
        """Select the first row once it is loaded (after a job: the image just made)."""
        if self.model.rowCount() and self.model.filter.newest_first:
            self.pane.select_row(0)

    def current_entry(self) -> GalleryEntry | None:
        return self.pane.current_entry()
