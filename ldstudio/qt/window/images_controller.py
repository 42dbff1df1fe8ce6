"""ImagesController: what the window shows of images — the library image highlighted, or a
file opened or dropped, large in the middle; the export of a denoising animation; and the
library's messages and errors; GUI thread, image loading through the window's BackgroundRunner.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QStandardPaths
from PySide6.QtWidgets import QFileDialog

from ldstudio.core.library import LibraryEntry
from ldstudio.qt.images import load_qimage
from ldstudio.qt.timeline import export_animation

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow


class ImagesController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._shown_request = 0  # show_entry calls so far: a slow load never lands late
        self._library_error = ""  # the library failure the red bar shows, if it still does
        lib = window.library
        spawn = window.background.spawn
        window.preview_pane.export_requested.connect(self.export_animation_dialog)
        lib.pane.entry_selected.connect(lambda e: spawn(self.show_entry(e)))
        lib.file_opened.connect(lambda path: spawn(self.show_file(path)))
        lib.status_message.connect(self._on_library_message)
        lib.import_progress.connect(self._on_import_progress)  # a method: queued to this thread
        lib.error.connect(self._on_library_error)

    # -- showing -------------------------------------------------------------------------------

    async def show_entry(self, entry: LibraryEntry | None) -> None:
        w = self.window
        self._shown_request += 1
        request = self._shown_request
        if entry is None:
            # Nothing highlighted: nothing shown either (a running job keeps its preview).
            if not w.controller.jobs():
                w.preview_pane.clear()
            return
        if entry.missing:
            w.preview_pane.show_error(f"{entry.path} is missing from disk")
            return
        try:
            image = await w.background.run(load_qimage, entry.path)
        except OSError as exc:
            w.preview_pane.show_error(f"Cannot open {entry.path}: {exc}")
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
        w.preview_pane.show_image(image, caption)
        made = w.session_images.get(entry.path)
        w.preview_pane.set_timeline(w.timelines.get(*made) if made else None)

    async def show_file(self, path: Path) -> None:
        """An image opened (File → Open image…) or dropped: shown large, with no timeline."""
        w = self.window
        try:
            image = await w.background.run(load_qimage, path)
        except OSError as exc:
            w.preview_pane.show_error(f"Cannot open {path}: {exc}")
            return
        w.preview_pane.show_image(
            image, f"{path.name} · {image.width()}×{image.height()} · opened from {path.parent}"
        )
        w.preview_pane.set_timeline(None)

    # -- timeline export -----------------------------------------------------------------------

    def export_animation_dialog(self) -> None:
        w = self.window
        timeline = w.preview_pane.timeline()
        entry = w.library_pane.current_entry()
        if timeline is None or entry is None:
            w.statusBar().showMessage("Select an image made in this session first", 4000)
            return
        # Not beside the image: a file in the library folder would be adopted as a picture.
        folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
        chosen, kind = QFileDialog.getSaveFileName(
            w,
            "Export denoising animation",
            str(Path(folder or Path.home()) / f"{entry.path.stem}.webp"),
            "Animated WebP (*.webp);;GIF (*.gif)",
        )
        if chosen:
            target = Path(chosen)
            if not target.suffix:  # a bare name: the type picked in the dialog decides
                target = target.with_suffix(".gif" if "gif" in kind.lower() else ".webp")
            w.background.spawn(self.export_animation(entry, target))

    async def export_animation(self, entry: LibraryEntry, target: Path) -> Path | None:
        w = self.window
        made = w.session_images.get(entry.path)
        timeline = w.timelines.get(*made) if made else None
        if timeline is None:
            w.preview_pane.show_error("This image's denoising previews are no longer kept")
            return None
        frames = [frame for _, frame in timeline.frames]
        try:
            await w.background.run(export_animation, frames, entry.path, target)
        except (OSError, ValueError) as exc:
            w.preview_pane.show_error(f"Could not export {target}: {exc}")
            return None
        w.statusBar().showMessage(f"Animation saved to {target}", 5000)
        return target

    # -- the library's messages ----------------------------------------------------------------

    def _on_library_message(self, text: str) -> None:
        preview = self.window.preview_pane
        self.window.statusBar().showMessage(text, 6000)
        # A library action that went through: its earlier failure is no longer news (a
        # generation failure shown since stays).
        if self._library_error and preview.error_label.text() == self._library_error:
            preview.clear_error()
        self._library_error = ""

    def _on_import_progress(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 3000)

    def _on_library_error(self, text: str) -> None:
        self.window.preview_pane.show_error(text)
        self._library_error = text
