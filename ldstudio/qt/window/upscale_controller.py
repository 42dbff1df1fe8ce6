"""UpscaleController: "Upscale…" on a library image or the canvas's image, and Reuse all on an
upscale's image (the dialog again on its source blob, with its settings and prompt) — the dialog,
then an upscale request queued as every job is (the source into the library's blob store, the
window's `run_job`), its image a new library image linked to the source; the dialog's settings
remembered across restarts; GUI thread, file reads, blob writes and the upscaler list through the
window's BackgroundRunner.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError
from PySide6.QtCore import QObject

from ldstudio.core.events import JobCancelled, JobFailed, JobFinished
from ldstudio.core.library import LibraryEntry
from ldstudio.core.models import KIND_UPSCALER, ModelEntry, ModelFileError, ModelRegistry
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.core.upscale import UpscaleSettings
from ldstudio.qt.made_from import open_source
from ldstudio.qt.upscale_dialog import UpscaleDialog, UpscaleSource

if TYPE_CHECKING:
    from ldstudio.qt.main_window import MainWindow

log = logging.getLogger(__name__)

Outcome = JobFinished | JobFailed | JobCancelled
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EMPTY_CANVAS = (
    "Cannot upscale the canvas: it has no image yet. Send one from the library, open, paste "
    "or drop one first"
)


@dataclass(frozen=True)
class Upscalers:
    """What the dialog offers beyond the resamplers, read off the GUI thread."""

    models: tuple[ModelEntry, ...]  # the usable upscaler models in the model folders
    missing_bundled: dict[int, str]  # scale → why its bundled upscaler cannot be used


def find_upscalers() -> Upscalers:
    """The model folders' usable upscalers (the registry's cached scan) and the bundled ones'
    presence; worker thread."""
    from ldstudio.core.models.upscalers import bundled_upscaler_path
    from ldstudio.core.upscale import BUNDLED_UPSCALERS

    bundled = {scale: bundled_upscaler_path(scale) for scale in BUNDLED_UPSCALERS}
    try:
        entries = ModelRegistry.shared().entries()
    except ValueError as exc:  # a damaged models.json: the bundled and resamplers still work
        log.warning("upscalers not listed: %s", exc)
        entries = []
    models = tuple(
        e
        for e in entries
        if e.kind == KIND_UPSCALER and e.usable_upscaler and e.path not in bundled.values()
    )
    missing = {
        scale: (
            f"upscaler: the bundled {path.stem} is not installed ({path} is missing); choose "
            "Lanczos, Bicubic or an upscaler model"
        )
        for scale, path in bundled.items()
        if not path.is_file()
    }
    return Upscalers(models, missing)


def source_bytes(path: Path) -> tuple[bytes, tuple[int, int]]:
    """A library image as a source blob and its size: a PNG's own bytes, any other image
    (an imported JPEG or WebP) as PNG; worker thread. OSError when it cannot be read."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as opened:
            size = opened.size
    except (UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        raise OSError(f"not an image that can be opened ({exc.__class__.__name__})") from exc
    if data.startswith(PNG_SIGNATURE):
        return data, size
    buffer = io.BytesIO()
    open_source(path).save(buffer, format="PNG")
    return buffer.getvalue(), size


class UpscaleController(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        # The dialog's last settings, kept in the settings file (the prompt is each source's).
        self.last = window.settings.upscale()
        self.dialog: UpscaleDialog | None = None
        window.library_pane.upscale_requested.connect(self.upscale_entry)
        window.details_view.upscale_requested.connect(self.upscale_entry)
        window.library.actions.upscale_reused.connect(self.reuse_entry)
        window.canvas_pane.upscale_requested.connect(self.upscale_canvas)

    # -- the ways in -----------------------------------------------------------------------

    def upscale_entry(self, entry: LibraryEntry) -> None:
        """Upscale… on a library image: the dialog, prefilled with the image's own prompt."""
        self.window.spawn(self.open_for_entry(entry))

    def upscale_selected(self) -> None:
        """Generate → Upscale selected image…: the image highlighted in the library."""
        entry = self.window.library_pane.current_entry()
        if entry is None:
            self.window.preview_pane.show_error(
                "Upscale: no image is highlighted in the library; select one first (or "
                "right-click an image → Upscale…)"
            )
            return
        self.upscale_entry(entry)

    def upscale_canvas(self) -> None:
        """Upscale… on the canvas: its source image (not its mask or outpaint)."""
        self.window.spawn(self.open_for_canvas())

    def reuse_entry(self, entry: LibraryEntry) -> None:
        """Reuse all on an upscale's image: the refine's parameters into the parameter pane
        (shown), then the dialog on the source it was made from, with its settings and prompt."""
        w = self.window
        assert entry.request is not None
        w.library.restore_refine(entry.request)
        w.left_tabs.setCurrentIndex(w.generate_tab)
        w.spawn(self.open_reused(entry))

    async def open_for_entry(self, entry: LibraryEntry) -> UpscaleDialog | None:
        w = self.window
        name = entry.path.name
        if entry.missing:
            w.preview_pane.show_error(f"Cannot upscale {name}: the file is missing from disk")
            return None

        def read() -> tuple[bytes, tuple[int, int], Upscalers]:
            data, size = source_bytes(entry.path)
            return data, size, find_upscalers()

        try:
            data, (width, height), upscalers = await w.off_thread(read)
        except OSError as exc:
            w.preview_pane.show_error(f"Cannot upscale {name}: {exc}")
            return None
        request = entry.request
        if request is not None:
            prompt, negative = request.params.prompt, request.params.negative_prompt
        else:
            prompt, negative = w.prompt_pane.prompt(), w.prompt_pane.negative_prompt()
        source = UpscaleSource(name, width, height)
        return self._open(source, lambda: data, prompt, negative, upscalers)

    async def open_reused(self, entry: LibraryEntry) -> UpscaleDialog | None:
        """The dialog on the blob an upscale's request names, prefilled with its settings and
        prompt (the refine's parameters are the parameter pane's, see `reuse_entry`); a source
        no longer in the library's blob store is said, and nothing opens."""
        w = self.window
        request = entry.request
        assert request is not None and request.upscale is not None
        store = w.store

        def read() -> tuple[bytes, tuple[int, int], Upscalers] | str:
            inputs = store.inputs_of(entry)
            if inputs.image is None:
                return "; ".join(inputs.missing)
            data, size = source_bytes(inputs.image)
            return data, size, find_upscalers()

        what = f"Cannot upscale the source of {entry.path.name} again"
        try:
            found = await w.off_thread(read)
        except OSError as exc:
            w.preview_pane.show_error(f"{what}: source image: cannot be read ({exc})")
            return None
        if isinstance(found, str):
            w.preview_pane.show_error(f"{what}: {found}")
            return None
        data, (width, height), upscalers = found
        source = UpscaleSource(f"source of {entry.path.name}", width, height)
        params = request.params
        return self._open(
            source,
            lambda: data,
            params.prompt,
            params.negative_prompt,
            upscalers,
            settings=request.upscale,
        )

    async def open_for_canvas(self) -> UpscaleDialog | None:
        w = self.window
        document = w.canvas_pane.document()
        if document is None:
            w.preview_pane.show_error(EMPTY_CANVAS)
            return None
        upscalers = await w.off_thread(find_upscalers)
        if w.canvas_pane.document() is not document:
            return None  # another image was put there meanwhile: asked again for that one
        label = w.canvas_pane.label() or "canvas"
        source = UpscaleSource(f"{label} (the canvas's source)", document.width, document.height)
        # A document's source never changes: its PNG is made when the job is queued.
        return self._open(
            source,
            document.source_png,
            w.prompt_pane.prompt(),
            w.prompt_pane.negative_prompt(),
            upscalers,
        )

    # -- the dialog and the job ------------------------------------------------------------

    def _open(
        self,
        source: UpscaleSource,
        png: Callable[[], bytes],
        prompt: str,
        negative: str,
        upscalers: Upscalers,
        settings: UpscaleSettings | None = None,
    ) -> UpscaleDialog | None:
        """The dialog on `source`, showing `settings` (default: the last ones used)."""
        w = self.window
        # The refine takes the model, steps, CFG, sampler and seed from the parameter pane, as
        # canvas jobs do.
        w.params_pane.commit_typed()
        try:
            base = w.current_params()
        except ValueError as exc:
            w.preview_pane.show_error(f"Cannot upscale: {exc}")
            return None
        if self.dialog is not None:
            self.dialog.close()
        dialog = UpscaleDialog(
            source,
            settings if settings is not None else self.last,
            prompt=prompt,
            negative_prompt=negative,
            refine_text=self.refine_text(base),
            upscalers=upscalers.models,
            missing_bundled=upscalers.missing_bundled,
            parent=w,
        )
        dialog.accepted.connect(lambda: self._accepted(dialog, base, png))
        dialog.finished.connect(lambda _result: self._closed(dialog))
        self.dialog = dialog
        dialog.open()
        return dialog

    def _closed(self, dialog: UpscaleDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()

    def refine_text(self, params: GenerationParams) -> str:
        """Which model and parameters the refine takes, as the dialog says it."""
        model = Path(params.model).name if params.model else f"{self.window.bundled_model.name}"
        seed = "random seed" if params.seed == "random" else f"seed {params.seed}"
        return (
            f"{model} · {params.steps} steps · CFG {params.guidance_scale:g} · "
            f"{params.scheduler} · {seed} (from the Generate tab)"
        )

    def _accepted(
        self, dialog: UpscaleDialog, base: GenerationParams, png: Callable[[], bytes]
    ) -> None:
        settings = dialog.settings()
        self.last = settings
        self.window.settings.last_upscale = settings.to_dict()
        self.window.preferences.save()
        params = base.replace(prompt=dialog.prompt(), negative_prompt=dialog.negative_prompt())
        self.window.spawn(self.submit(settings, params, png, dialog.source.label))

    async def submit(
        self,
        settings: UpscaleSettings,
        params: GenerationParams,
        png: Callable[[], bytes],
        label: str,
    ) -> Outcome | None:
        """Store the source, queue the upscale and wait for its end; None when refused (the
        reason is shown, nothing is queued)."""
        w = self.window
        what = f"Cannot upscale {label}"
        if settings.refines:
            problem = w.params_pane.model_problem()
            if problem:
                w.preview_pane.show_error(f"{what}: {problem}")
                return None
        else:
            # No refine loads no diffusion model: its model and LoRAs are not the job's.
            params = params.replace(model="", vae="", loras=())
        blobs = w.store.blobs

        def store() -> str:
            if settings.upscaler and not settings.resampler:
                from ldstudio.core.models.preflight import checked_upscaler

                checked_upscaler(Path(settings.upscaler), "upscaler")
            return blobs.put(png())

        try:
            digest = await w.off_thread(store)
            request = Request.upscaling(params, settings, digest).validate()
        except (OSError, ValueError, ModelFileError) as exc:
            w.preview_pane.show_error(f"{what}: {exc}")
            return None
        w.preview_pane.clear_error()
        outcome = await w.jobs.run_job(request)
        if isinstance(outcome, JobFinished) and outcome.records and not w.closing:
            made = outcome.records[-1].path.name
            w.statusBar().showMessage(f"Upscaled {label} ×{settings.scale}: {made}", 6000)
        return outcome
