"""CanvasController: the window's side of the canvas — what Generate does while the canvas tab
is shown (an inpaint request on its image), its result in the canvas's compare, and images put
on the canvas from the library (Send to canvas, Reuse all); GUI thread, blob writes and image
reads through the window's BackgroundRunner.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PIL import Image
from PySide6.QtCore import QObject

from ldstudio.core.canvas import CanvasDocument
from ldstudio.core.events import JobCancelled, JobFailed, JobFinished
from ldstudio.core.inpaint import canvas_size_problem
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.qt.made_from import MadeFrom, open_source
from ldstudio.qt.window import layout

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow

log = logging.getLogger(__name__)

Outcome = JobFinished | JobFailed | JobCancelled
CANVAS_MARGIN = 4  # px around the canvas pane inside its tab
FACE_TEXT = {
    "img2img": "redraw the whole image",
    "inpaint": "repaint the masked area",
    "outpaint": "extend the image",
}
EMPTY_CANVAS = (
    "Cannot generate on the canvas: it has no image yet. Send one from the library "
    "(right-click → Send to canvas), open or paste one (Canvas menu), or drop a file on it; "
    "the Preview tab generates from the prompt alone."
)


class CanvasController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.pane = window.canvas_pane
        self.tabs = window.center_tabs
        self._sizes_before: list[int] | None = None  # the columns before the canvas took room
        self.tabs.currentChanged.connect(self._tab_changed)
        self.pane.changed.connect(self.update_generate)
        # Wherever a new source comes from (a drop, the menu, the library), it is shown.
        self.pane.source_changed.connect(self.show_canvas)
        actions = window.library.actions
        actions.canvas_source.connect(self.set_source)
        actions.canvas_requested.connect(self.restore)
        self.update_generate()

    # -- state -----------------------------------------------------------------------------

    def active(self) -> bool:
        """True while the canvas tab is shown: Generate works on its image."""
        return self.tabs.currentIndex() == layout.CANVAS_TAB

    def show_canvas(self) -> None:
        self.tabs.setCurrentIndex(layout.CANVAS_TAB)

    def _tab_changed(self, index: int) -> None:
        splitter = self.window.main_splitter
        if index == layout.CANVAS_TAB:
            # The canvas and its settings want more width than the preview: the side
            # columns give way while it is shown, and get it back after.
            need = self.pane.wanted_width() + CANVAS_MARGIN
            self._sizes_before = layout.make_room(splitter, need)
        else:
            self.give_room_back()
        self.update_generate()

    def give_room_back(self) -> None:
        """The columns as they were before the canvas tab widened the middle (the settings
        keep those)."""
        if self._sizes_before is not None:
            self.window.main_splitter.setSizes(self._sizes_before)
            self._sizes_before = None

    def face(self) -> str | None:
        """What Generate does to the canvas image now: img2img, inpaint or outpaint."""
        document = self.pane.document()
        if document is None:
            return None
        if any(document.outpaint):
            return "outpaint"
        return "inpaint" if document.has_mask() else "img2img"

    def update_generate(self) -> None:
        """The Generate button and menu item say what they will do, and the parameter pane's
        size fields say when the canvas decides the size instead."""
        button = self.window.prompt_pane.generate_button
        action = getattr(self.window, "generate_action", None)
        face = self.face() if self.active() else None
        document = self.pane.document()
        size_note: str | None = None
        if not self.active():
            text, tip = "&Generate", "Queue a generation with these settings (Ctrl+Enter)"
        elif face is None or document is None:
            text = "&Generate (canvas)"
            tip = "The canvas has no image yet: send, open, paste or drop one first"
            size_note = "the canvas's size (no image yet)"
        else:
            width, height = document.canvas_size
            text = f"&Generate ({face})"
            tip = (
                f"Queue a {face} job on the canvas image: {FACE_TEXT[face]} with this prompt, "
                f"at {width}×{height} (Ctrl+Enter)"
            )
            size_note = f"the canvas's size: {width}×{height}"
            if face != "img2img" and self.pane.area_combo.currentData() == "masked":
                size_note = "Only masked: the model's size around the mask"
        self.window.params_pane.set_canvas_size(size_note)
        self.window.params_pane.hires_box.set_available(
            not self.active(),
            "A hires fix is a second pass of a txt2img job: Generate on the Preview tab uses it"
            if self.active()
            else "",
        )
        button.setText(text)
        button.setToolTip(tip)
        if action is not None:
            action.setText(text)
            action.setStatusTip(tip)

    # -- generating ------------------------------------------------------------------------

    async def generate(self, params: GenerationParams) -> Outcome | None:
        """Queue an inpaint job on the canvas image with `params` (checked already) and show
        its image in the canvas's compare; None when refused (the reason is shown)."""
        w = self.window
        document = self.pane.document()
        request = await self.request(params, "Cannot generate on the canvas")
        if request is None or document is None:
            return None
        outcome = await w.jobs.run_job(request)
        if isinstance(outcome, JobFinished) and outcome.records and not w.closing:
            await self._show_result(document, outcome)
        return outcome

    async def request(self, params: GenerationParams, refused: str) -> Request | None:
        """The inpaint request Generate makes on the canvas image, its source and mask stored
        in the library's blob store; None when refused (shown as `refused: why`). The X/Y/Z
        plot builds its canvas cells from this too."""
        w = self.window
        document = self.pane.document()
        if document is None:
            w.preview_pane.show_error(EMPTY_CANVAS)
            return None
        try:
            settings = self.pane.settings().validate()
        except ValueError as exc:
            w.preview_pane.show_error(f"{refused}: {exc}")
            return None
        problem = canvas_size_problem(
            (document.width, document.height), settings, masked=document.has_mask(), sized=False
        )
        if problem is not None:
            # Refused here, not after the image was stored and the job queued.
            hint = (
                " Paint a mask and choose Area: Only masked to repaint part of it at the "
                "model's size."
                if "whole picture" in problem
                else ""
            )
            w.preview_pane.show_error(f"{refused}: the image {problem}.{hint}")
            return None
        mask = document.mask_png()  # here: strokes change the mask on this thread
        # The size follows the canvas (source + outpaint); the panes' size is txt2img's.
        params = params.replace(width=None, height=None)
        blobs = w.store.blobs

        def store_inputs() -> tuple[str, str | None]:
            # A document's source never changes (a new source is a new document), so its PNG
            # can be made here; a large one takes a second or more to encode and write.
            image = blobs.put(document.source_png())
            return image, blobs.put(mask) if mask is not None else None

        try:
            image_sha, mask_sha = await w.off_thread(store_inputs)
        except (OSError, ValueError) as exc:
            w.preview_pane.show_error(f"{refused}: {exc}")
            return None
        return Request.inpainting(params, settings, image_sha, mask_sha)

    async def _show_result(self, document: CanvasDocument, outcome: JobFinished) -> None:
        path = outcome.records[-1].path
        try:
            image = await self.window.off_thread(open_source, path)
        except OSError as exc:
            self.window.preview_pane.show_error(f"Cannot open {path}: {exc}")
            return
        if self.pane.document() is document:  # not over another image put there since
            self.pane.show_result(image)

    # -- sources from the library ------------------------------------------------------------

    def set_source(self, image: Image.Image, label: str) -> bool:
        """A new source for the canvas (shown); False and a message when it cannot be used."""
        try:
            self.pane.set_source(image, label)
        except ValueError as exc:
            self.window.preview_pane.show_error(str(exc))
            return False
        return True

    def restore(self, made: MadeFrom) -> None:
        """Reuse all of an image made from a source: its source, mask and settings on the canvas
        (the prompt and parameters went to the panes), so Generate makes the same job again."""
        assert made.image is not None
        if not self.set_source(made.image, f"source of {made.path.name}"):
            return
        document = self.pane.document()
        assert document is not None
        if made.mask is not None:
            document.load_mask(made.mask)
        elif made.problems:  # its mask is gone: the job cannot be made the same again
            self.window.preview_pane.show_error(
                f"The canvas has the source but not the mask: {'; '.join(made.problems)}"
            )
        self.pane.set_settings(made.settings)
        self.update_generate()

    # -- the menus' commands ----------------------------------------------------------------

    def open_dialog(self) -> None:
        self.pane.open_dialog()

    def paste(self) -> None:
        self.show_canvas()
        self.pane.paste()

    def load_mask_dialog(self) -> None:
        if self.pane.document() is None:
            self.window.preview_pane.show_error(
                "Load mask: the canvas has no image yet; open one first"
            )
            return
        self.show_canvas()
        self.pane.load_mask_dialog()
