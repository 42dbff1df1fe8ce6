"""Opening or dropping an image on the window: read its parameters and offer to restore them.

`MetadataDropFilter` watches a widget (the main window) for dropped PNG/JPEG/WebP files;
`MetadataReader.open_file(path)` reads one with `ldstudio.core.readers.read_file` on a worker
thread and emits `read_finished(path, ReadResult)` or `read_failed(message)`.
`offer_restore()` shows what was found and asks; `merge_params()` turns a result into the
`GenerationParams` the panes show. GUI thread, except the reading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import ReadResult, UnreadableImage, read_file, unapplied_values
from ldstudio.qt import refcount_guard
from ldstudio.qt.params_pane import ParamsPane
from ldstudio.qt.prompt_pane import PromptPane

log = logging.getLogger(__name__)

OPENABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
OPEN_FILTER = "Images (*.png *.jpg *.jpeg *.webp)"


def image_paths(mime: QMimeData) -> list[Path]:
    """The local PNG/JPEG/WebP files among dropped URLs."""
    if not mime.hasUrls():
        return []
    paths = [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
    return [p for p in paths if p.suffix.lower() in OPENABLE_SUFFIXES]


def check_openable(path: Path) -> None:
    """ValueError naming the file when ldstudio cannot read parameters from its type."""
    if path.suffix.lower() not in OPENABLE_SUFFIXES:
        raise ValueError(
            f"{path.name}: cannot read parameters from {path.suffix or 'a file without suffix'}; "
            f"allowed: {', '.join(OPENABLE_SUFFIXES)}"
        )


def read_parameters(path: Path) -> ReadResult:
    """read_file with errors worded for the user; worker thread."""
    check_openable(path)
    try:
        return read_file(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except UnreadableImage as exc:
        raise ValueError(str(exc)) from None


ModelFinder = Callable[[str], str | None]  # a tool's model name -> a model value, or None


def merge_params(
    result: ReadResult, base: GenerationParams, find_model: ModelFinder | None = None
) -> tuple[GenerationParams, list[str]]:
    """The parameters to show: the image's exact ones, or its fields laid over `base`.

    Returns the params and notes for the user: each value that was not taken and why, and
    every value the tool wrote that ldstudio has no setting for. `find_model` turns another
    tool's model name into one of the models the picker lists (the bundled one included).
    """
    notes: list[str] = []
    unapplied = unapplied_values(result)
    if unapplied:
        notes.append("not applied: " + ", ".join(f"{key} {value}" for key, value in unapplied))

    def model_for(name: object) -> str | None:
        found = find_model(name) if find_model is not None and isinstance(name, str) else None
        if found is None:
            # Other tools name checkpoints ldstudio may not have.
            notes.insert(0, f"model {name!r}: not in the model list; choose it there yourself")
        return found

    if result.params is not None:
        params = result.params
        if result.source != "ldstudio" and params.model:
            found = model_for(params.model)  # "" is the bundled model: test for None
            params = params.replace(model=base.model if found is None else found)
        return params.replace(batch_size=1, batch_count=1), notes
    taken = base
    for name, value in result.fields.items():
        if name == "model":
            found = model_for(value)
            if found is not None:
                taken = taken.replace(model=found)
            continue
        candidate = taken.replace(**{name: value})
        try:
            candidate.validate()
        except (ValueError, TypeError) as exc:
            # One odd value (a sampler ldstudio lacks, an odd size) must not lose the rest.
            notes.append(f"{exc}; kept the current value")
            continue
        taken = candidate
    missing = [n for n in ("prompt", "seed", "steps", "scheduler") if n not in result.fields]
    if missing:
        notes.append(f"not in the image, kept as they were: {', '.join(missing)}")
    return taken, notes


def apply_to_panes(
    params: GenerationParams, prompt_pane: PromptPane, params_pane: ParamsPane
) -> None:
    """Show `params` in the prompt and parameter panes."""
    prompt_pane.set_prompts(params.prompt, params.negative_prompt)
    params_pane.set_params(params)


def describe(result: ReadResult) -> str:
    """A short, readable summary of what a reader found."""
    if not result.found:
        return result.message
    lines = [f"Found {result.message}."]
    fields = result.fields
    if fields.get("prompt"):
        prompt = str(fields["prompt"])
        lines.append(f"Prompt: {prompt if len(prompt) <= 200 else prompt[:199] + '…'}")
    facts = []
    for label, key in (("seed", "seed"), ("steps", "steps"), ("sampler", "scheduler")):
        if key in fields:
            facts.append(f"{label} {fields[key]}")
    if "guidance_scale" in fields:
        facts.append(f"guidance {fields['guidance_scale']}")
    if "width" in fields and "height" in fields:
        facts.append(f"{fields['width']}×{fields['height']}")
    if facts:
        lines.append(", ".join(facts))
    unapplied = unapplied_values(result)
    if unapplied:
        lines.append(
            "Not applied (ldstudio has no such setting): "
            + ", ".join(f"{key} {value}" for key, value in unapplied)
        )
    return "\n".join(lines)


class _Relay(QObject):
    finished = Signal(object, object)  # Path, ReadResult
    failed = Signal(str)


class MetadataReader(QObject):
    """Reads dropped or opened files off the GUI thread, one at a time, in order."""

    read_finished = Signal(object, object)  # Path, ReadResult
    read_failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        refcount_guard.install()  # one emit per file read: see refcount_guard
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ldstudio-metadata-read")
        self._relay = _Relay()
        self._relay.finished.connect(self.read_finished)
        self._relay.failed.connect(self.read_failed)
        self._closed = False

    def open_file(self, path: Path) -> None:
        if self._closed:
            return
        future = self._pool.submit(read_parameters, path)
        future.add_done_callback(lambda f: self._done(path, f))

    def _done(self, path: Path, future: Future[ReadResult]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self._relay.finished.emit(path, future.result())
        elif isinstance(exc, ValueError | OSError):
            self._relay.failed.emit(f"Cannot read parameters: {exc}")
        else:
            log.error("reading %s failed", path, exc_info=exc)
            self._relay.failed.emit(f"Cannot read parameters from {path.name}: {exc}")

    def open_dialog(self, parent: QWidget) -> Path | None:
        """File → Open image…: ask for a file and read it."""
        chosen, _ = QFileDialog.getOpenFileName(
            parent, "Open an image to read its parameters", "", OPEN_FILTER
        )
        if not chosen:
            return None
        path = Path(chosen)
        self.open_file(path)
        return path

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


class MetadataDropFilter(QObject):
    """Accepts image files dropped on the watched widget and hands them to a MetadataReader."""

    dropped = Signal(object)  # Path

    def __init__(self, target: QWidget, reader: MetadataReader) -> None:
        super().__init__(target)
        self.reader = reader
        self.target = target
        self._watched: set[int] = set()
        self._skipped: list[QWidget] = []
        target.setAcceptDrops(True)
        self.watch_children()

    def skip(self, widget: QWidget) -> None:
        """Leave drops on `widget` and its children to it (a canvas takes an image as its
        source, not as parameters to read)."""
        self._skipped.append(widget)
        for watched in [widget, *widget.findChildren(QWidget)]:
            if id(watched) in self._watched:
                self._watched.discard(id(watched))
                watched.removeEventFilter(self)

    def watch_children(self) -> None:
        """Also catch image drops on child widgets that take drops themselves (text edits would
        paste the file's URL); call again once the window's panes are in place."""
        for widget in [self.target, *self.target.findChildren(QWidget)]:
            if any(s is widget or s.isAncestorOf(widget) for s in self._skipped):
                continue
            if (widget is self.target or widget.acceptDrops()) and id(widget) not in self._watched:
                self._watched.add(id(widget))
                widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            assert isinstance(event, QDragEnterEvent | QDropEvent)
            if image_paths(event.mimeData()):
                event.acceptProposedAction()
                return True
            return False
        if kind == QEvent.Type.Drop:
            assert isinstance(event, QDropEvent)
            paths = image_paths(event.mimeData())
            if not paths:
                return False
            event.acceptProposedAction()
            # One image's parameters fill the panes: the first dropped file is the one read.
            self.dropped.emit(paths[0])
            self.reader.open_file(paths[0])
            return True
        return False


def offer_restore(parent: QWidget, path: Path, result: ReadResult) -> bool:
    """Show what `path` holds; True when the user wants its parameters restored."""
    details = describe(result)
    if result.warnings:
        details += "\n\nWarnings:\n" + "\n".join(f"• {w}" for w in result.warnings)
    if not result.found:
        QMessageBox.information(
            parent,
            "No parameters found",
            f"{path.name}: {details}.\n\nldstudio reads parameters written by ldstudio, "
            "AUTOMATIC1111/Forge/SD.Next/Krita, ComfyUI, InvokeAI, Fooocus and NovelAI; "
            "this image carries none of them (many sites strip them on upload).",
        )
        return False
    answer = QMessageBox.question(
        parent,
        "Restore parameters",
        f"{path.name}\n\n{details}\n\nRestore these parameters into the parameter pane?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes,
    )
    return answer == QMessageBox.StandardButton.Yes
