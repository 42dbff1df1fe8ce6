"""StylePicker: A1111 styles picked for the prompt, shown as removable chips; GUI thread.

The styles come from `<data folder>/styles.csv` (`ldstudio styles import`, or the menu's
"Import styles.csv…", which checks the file and copies it there). Picked styles are the
draft's `picked_styles`, applied to the prompts when a job is submitted; a style an image names
that cannot be taken back out of its prompt (not in styles.csv, or its text there changed) is
the draft's `styles`: its chip says so, its text stays in the prompt as written and its name
stays in the request. Removing that chip only stops naming it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QToolButton, QWidget

from ldstudio.core import paths
from ldstudio.core.atomic import atomic_file
from ldstudio.core.draft import Draft
from ldstudio.core.prompts import MAX_STYLES_BYTES, Style, read_styles
from ldstudio.qt.flow_layout import FlowLayout

STYLE_FIELDS = frozenset({"styles", "picked_styles"})
MISSING_COLOUR = "#b26a00"


def styles_path() -> Path:
    """The imported styles.csv (the CLI's `ldstudio styles import` writes the same file)."""
    return paths.home_dir() / "styles.csv"


class StylePicker(QWidget):
    changed = Signal()  # the picked or kept styles changed (the counter counts them)

    def __init__(self, draft: Draft, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("style_picker")
        self.draft = draft
        self.library: tuple[Style, ...] = ()
        self.load_problem = ""  # why styles.csv could not be read ("" when it could)
        self.chips: dict[str, QToolButton] = {}
        self._read: tuple[int, int] | None = None  # styles.csv's (mtime, size) when read

        self.button = QToolButton()
        self.button.setObjectName("styles_button")
        self.button.setText("Styles")
        self.button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu = QMenu(self.button)
        self.button.setMenu(self.menu)
        self.menu.aboutToShow.connect(self._on_menu)
        self.import_action = QAction("Import styles.csv…", self)
        self.import_action.setToolTip("Use an A1111 styles.csv (it is checked, then copied)")
        self.import_action.triggered.connect(self.choose_file)

        self.flow = FlowLayout(self, spacing=4)
        self.flow.addWidget(self.button)
        self.reload()
        self._fill_menu()
        self._show_chips()
        unsubscribe = draft.subscribe(self._on_draft_changed)
        self.destroyed.connect(lambda *_: unsubscribe())

    # -- the library ---------------------------------------------------------------------------

    def reload(self) -> None:
        """Read styles.csv again; a damaged file leaves no styles and says why."""
        self.load_problem = ""
        self._read = _stamp(styles_path())
        try:
            self.library = tuple(read_styles(styles_path()))
        except FileNotFoundError:
            self.library = ()
        except (OSError, ValueError) as exc:
            self.library = ()
            self.load_problem = f"{exc}; import a good styles.csv again"
        self.draft.set_known_styles(self.library)
        by_name = {style.name: style for style in self.library}
        picked = self.draft.values.picked_styles
        # A picked style re-imported with new text is applied with the new text.
        self.draft.update(picked_styles=tuple(by_name.get(s.name, s) for s in picked))
        if self.load_problem:
            tip = self.load_problem
        elif self.library:
            tip = f"Pick styles from {styles_path()} ({len(self.library)})"
        else:
            tip = "No styles imported yet: import an A1111 styles.csv"
        self.button.setToolTip(tip)
        self._show_chips()

    def choose_file(self) -> None:
        chosen, _filter = QFileDialog.getOpenFileName(
            self, "Import styles.csv", str(Path.home()), "CSV files (*.csv);;All files (*)"
        )
        if not chosen:
            return
        problem = self.import_file(Path(chosen))
        if problem:
            QMessageBox.warning(self, "Styles not imported", problem)

    def import_file(self, source: Path) -> str:
        """Check `source` and make it the styles.csv; "" on success, else what was wrong (the
        styles in use stay as they were)."""
        try:
            read_styles(source)  # refuses a bad row by its line before anything is replaced
            data = source.read_bytes()
        except (OSError, ValueError) as exc:
            return f"{exc}"
        if len(data) > MAX_STYLES_BYTES:  # grown since it was checked
            return f"{source}: larger than {MAX_STYLES_BYTES // (1024 * 1024)} MiB"
        try:
            with atomic_file(styles_path()) as handle:
                handle.write(data)
        except OSError as exc:
            return f"Cannot write {styles_path()}: {exc}"
        self.reload()
        return ""

    # -- picking -------------------------------------------------------------------------------

    def picked_names(self) -> list[str]:
        return [style.name for style in self.draft.values.picked_styles]

    def toggle(self, name: str) -> None:
        """Pick the named style (after those picked) or unpick it."""
        picked = self.draft.values.picked_styles
        if any(style.name == name for style in picked):
            self.draft.update(picked_styles=tuple(s for s in picked if s.name != name))
            return
        style = next((s for s in self.library if s.name == name), None)
        if style is None:
            raise ValueError(f"style {name!r} is not in {styles_path()}")
        self.draft.update(picked_styles=(*picked, style))

    def remove(self, name: str) -> None:
        """Take the chip away: unpick it, or stop naming a style kept in the prompt's text."""
        values = self.draft.values
        if name in values.styles:
            self.draft.update(styles=tuple(n for n in values.styles if n != name))
        else:
            self.toggle(name)

    def chip_states(self) -> dict[str, str]:
        """Each chip's name and state: "picked", "missing" (not in styles.csv) or "in prompt"
        (kept in the prompt's text as written)."""
        known = {style.name for style in self.library}
        states = {
            name: "in prompt" if name in known else "missing" for name in self.draft.values.styles
        }
        for style in self.draft.values.picked_styles:
            states[style.name] = "picked" if style.name in known else "missing"
        return states

    def _on_menu(self) -> None:
        # `ldstudio styles import` may have replaced the file while the window was open.
        if _stamp(styles_path()) != self._read:
            self.reload()
        self._fill_menu()

    def _fill_menu(self) -> None:
        self.menu.clear()
        picked = set(self.picked_names())
        kept = set(self.draft.values.styles)
        if self.load_problem:
            problem = self.menu.addAction(f"⚠ {self.load_problem}")
            problem.setEnabled(False)
        elif not self.library:
            none = self.menu.addAction("No styles imported")
            none.setEnabled(False)
        for style in self.library:
            action = self.menu.addAction(style.name.replace("&", "&&"))
            action.setCheckable(True)
            action.setChecked(style.name in picked)
            action.setEnabled(style.name not in kept)  # already in the prompt's text
            action.setToolTip(_style_tip(style))
            action.triggered.connect(lambda _=False, n=style.name: self.toggle(n))
        self.menu.addSeparator()
        self.menu.addAction(self.import_action)
        self.menu.setToolTipsVisible(True)

    def _on_draft_changed(self, names: frozenset[str]) -> None:
        if names & STYLE_FIELDS:
            self._show_chips()
            self.changed.emit()

    def _show_chips(self) -> None:
        for chip in self.chips.values():
            self.flow.removeWidget(chip)
            chip.deleteLater()
        self.chips = {}
        by_name = {style.name: style for style in self.library}
        picked = {style.name: style for style in self.draft.values.picked_styles}
        for name, state in self.chip_states().items():
            chip = QToolButton()
            chip.setObjectName("style_chip")
            chip.setText(f"{name} ✕" if state == "picked" else f"⚠ {name} ({state}) ✕")
            if state != "picked":
                chip.setStyleSheet(f"color: {MISSING_COLOUR};")
            chip.setToolTip(_chip_tip(name, state, picked.get(name) or by_name.get(name)))
            chip.setCursor(Qt.CursorShape.PointingHandCursor)
            chip.clicked.connect(lambda _=False, n=name: self.remove(n))
            self.flow.addWidget(chip)
            self.chips[name] = chip
        self.button.setText(f"Styles ({len(picked)})" if picked else "Styles")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _style_tip(style: Style) -> str:
    lines = [f"Prompt: {style.prompt or '(none)'}"]
    if style.negative_prompt:
        lines.append(f"Negative: {style.negative_prompt}")
    return "\n".join(lines)


def _chip_tip(name: str, state: str, style: Style | None) -> str:
    if state == "picked" and style is not None:
        return f"{_style_tip(style)}\nApplied to the prompts on Generate. Click to remove."
    if state == "missing" and style is not None:  # picked, then gone from a new styles.csv
        return (
            f"{name!r} is no longer in styles.csv; it is applied with the text it had. "
            "Click to remove."
        )
    if state == "missing":
        return (
            f"The image names the style {name!r}, which is not in styles.csv: its text stays "
            "in the prompt as written and the name is recorded. Click to stop naming it."
        )
    return (
        f"The style {name!r}'s text in styles.csv is not what this prompt holds: its text stays "
        "in the prompt as written and the name is recorded. Click to stop naming it."
    )
