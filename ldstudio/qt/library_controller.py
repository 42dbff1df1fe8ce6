"""LibraryController: the library browser's parts wired together and to the parameter panes.

It owns the `LibraryModel`, `LibraryPane`, `ImageDetailsView`, `LibraryActions` and
`MetadataReader` for one `LibraryStore`, turns the pane's intents into actions, restores
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

from ldstudio.core.library import (
    ImportReport,
    LibraryEntry,
    LibraryFilter,
    LibraryStore,
    ReconcileReport,
)
from ldstudio.core.readers import ReadResult
from ldstudio.core.request import Request
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
from ldstudio.qt.vary import VARY_STRENGTHS

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
        store: LibraryStore,
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
        self._unindexed_told = len(store.unindexed)
        self._connect()

    def _connect(self) -> None:
        p, a = self.pane, self.actions
        p.entry_selected.connect(self.details.show_entry)
        self.details.made_from.image_requested.connect(self._select_image)
        p.reuse_params_requested.connect(a.reuse_all)
        p.reuse_seed_requested.connect(a.reuse_seed)
        p.vary_subtle_requested.connect(lambda e: a.vary(e, VARY_STRENGTHS["subtle"]))
        p.vary_strong_requested.connect(lambda e: a.vary(e, VARY_STRENGTHS["strong"]))
        p.favourite_requested.connect(a.set_favourite_rows)
        p.copy_requested.connect(a.copy)
        p.save_as_requested.connect(self.details.save_as_dialog)
        p.save_many_requested.connect(self.details.save_many_dialog)
        p.open_folder_requested.connect(a.open_folder)
        p.send_to_canvas_requested.connect(a.send_to_canvas)
        p.delete_requested.connect(a.trash_rows)
        p.restore_requested.connect(a.restore_rows)
        p.empty_trash_requested.connect(self.empty_trash)
        # The details' Delete/Restore take what the grid highlights, never another image.
        self.details.act_on_selection(p.delete_selected, p.restore_selected)
        p.view.selectionModel().selectionChanged.connect(
            lambda *_: self.details.set_selected_count(len(p.selected_rows()))
        )
        a.moved.connect(p.images_moved)
        a.failed.connect(lambda _message: p.forget_move())
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
        # Saved, but the index refused their rows (damaged): the grid cannot show them.
        unindexed = self.store.unindexed[self._unindexed_told :]
        if unindexed:
            self._unindexed_told += len(unindexed)
            path, why = unindexed[-1]
            self.error.emit(
                f"{len(unindexed)} image(s) saved (the newest: {path}) but not added to the "
                f"library: {why}"
            )

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
        count = self.store.count(LibraryFilter(trashed=True))
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
        params, notes = merge_params(result, base, self.params_pane.model_for_name)
        apply_to_panes(params, self.prompt_pane, self.params_pane)
        # Reuse rebuilds the job: a hires image's second pass, or none for a plain one.
        request = result.request
        self.params_pane.hires_box.set_settings(
            request.hires if request is not None and request.kind == "txt2img" else None
        )
        note = f"Parameters restored ({result.label})"
        self.params_pane.set_restore_note(f"{note}: " + "; ".join(notes) if notes else "")
        self.status_message.emit(note + (": " + "; ".join(notes) if notes else ""))

    def restore_refine(self, request: Request) -> None:
        """Reuse all of an upscale's image: the refine's sampler, steps, CFG and seed (and,
        when it refined, its model, VAE and LoRAs) into the parameter pane; its prompt and
        settings are the Upscale dialog's, so the prompt pane, the size, the batch and the hires
        fix stay as they are."""
        params = request.params
        changes = {
            "scheduler": params.scheduler,
            "steps": params.steps,
            "guidance_scale": params.guidance_scale,
            "guidance_cutoff": params.guidance_cutoff,
            "seed": params.seed,
        }
        refined = request.upscale is not None and request.upscale.refines
        if refined:  # without a refine no model ran: the request names none
            changes.update(model=params.model, vae=params.vae, loras=params.loras)
        self.params_pane.set_params(self.params_pane.unchecked().replace(**changes))
        self.params_pane.set_restore_note("")
        taken = "model, sampler, steps, CFG and seed" if refined else "sampler, steps, CFG and seed"
        self.status_message.emit(
            f"Upscale restored: the refine's {taken} in the parameters, its prompt and settings "
            "in the Upscale dialog"
        )

    def _reuse_seed(self, seed: int) -> None:
        self.params_pane.set_seed(seed)
        self.status_message.emit(f"Seed {seed} fixed")

    def _select_image(self, image_id: int) -> None:
        """A grid's cell or a cell's grid clicked in the details: highlight that image."""
        self.actions.run(  # the index is read on the worker, as every library read
            lambda: self.store.get(image_id).path,
            lambda path: self.select_images([path]),
            f"Cannot show image {image_id}",
        )

    def select_images(self, paths: list[Path]) -> None:
        """Highlight these images (a job's, by their ids), wherever the filter and order put
        them; images the filter hides are said so, and nothing else is highlighted instead."""

        shown_filter = self.model.filter  # read here, on the GUI thread

        def work() -> tuple[list[int], list[int], int]:
            wanted = [e.id for e in map(self.store.entry_for_path, paths) if e is not None]
            ids = self.store.ids(shown_filter)
            at = {image_id: row for row, image_id in enumerate(ids)}
            shown = [i for i in wanted if i in at]
            return shown, [at[i] for i in shown], len(wanted) - len(shown)

        def done(result: tuple[list[int], list[int], int]) -> None:
            shown, rows, hidden = result
            if self.model.filter != shown_filter:
                return  # another view by now: these rows would mean other images
            if shown:  # each row's id is checked again when its page arrives
                self.pane.select_ids(shown, rows)
            if hidden:
                self.status_message.emit(
                    f"{images_text(hidden)} made but not shown: the library's filter hides "
                    f"{'them' if hidden > 1 else 'it'}"
                )

        self.actions.run(work, done, "Could not find the new images in the library")

    def current_entry(self) -> LibraryEntry | None:
        return self.pane.current_entry()
