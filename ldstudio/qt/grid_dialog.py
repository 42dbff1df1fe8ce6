"""GridDialog: an X/Y/Z plot of the current request — up to three axes (X required, Y, Z), each a
type and its values as A1111 writes them, checked as they are typed; GUI thread.

Each row's values are read by `parse_axis`, so the dialog refuses exactly what `ldstudio grid`
refuses, with the same words, under the row. The count of cells is live, and the whole grid is
expanded over the request it was opened with while that stays cheap, so a Prompt S/R text
missing from the prompt or a strength axis on a txt2img job is said before anything is queued.
The dialog only edits: Run asks the window's GridController (`run_requested`), which expands
the grid with the model names resolved, checks the model files and queues the cells, or says
why not here (`show_problem`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.grid import (
    AXIS_TYPES,
    MAX_CELLS,
    Axis,
    AxisError,
    expand,
    parse_axis,
)
from ldstudio.core.params import SCHEDULERS
from ldstudio.core.request import Request

AXIS_NAMES = ("X", "Y", "Z")
NO_AXIS = "—"  # the Y and Z type combos' first entry: no such axis
# Expanding validates every cell's request: cheap up to a few hundred cells, so it runs on each
# edit up to here; a larger grid is expanded when Run is pressed (GridController).
LIVE_EXPAND_CELLS = 1000
PLACEHOLDERS = {
    "prompt": "the text to replace, then its replacements: cat, dog, fox",
    "seed": "1,2,3 or 1-10 or 100-200 (+25); -1 draws one",
    "steps": "10,20,30 or 10-40 (+10)",
    "cfg": "3,5,7 or 1-10 (+2) or 3-12 [4]",
    "sampler": "Euler a, DPM++ 2M",
    "model": "model names or paths: model-a, model-b",
    "size": "512x512, 768x512",
    "strength": "0.3,0.5,0.7 or 0.2-0.8 [4]",
    "lora": "0.2,0.6,1 or 0-1 (+0.25)",
    "clip_skip": "1,2",
}
TYPE_TIPS = {
    "prompt": "Prompt S/R: the first value is searched in the prompt and negative prompt and "
    "replaced by each value in turn (the first itself first)",
    "strength": "Denoising: needs a hires fix (Generate tab) or a canvas job",
    "lora": "The weight of the LoRA chosen in the model manager",
}
Z_LAYOUT_TEXTS = {
    "column": "One image: the Z values' grids in a column",
    "separate": "One image per Z value",
}
ERROR_STYLE = "QLabel { color: #b3261e; }"


@dataclass(frozen=True)
class AxisChoice:
    """One row as the user left it: the type's key ("" for none), LoRA target, values text."""

    key: str = ""
    text: str = ""
    target: str = ""


@dataclass(frozen=True)
class GridChoice:
    """The dialog's rows (X, Y, Z) and Z layout: what it opens with the next time."""

    axes: tuple[AxisChoice, ...] = field(
        default_factory=lambda: (AxisChoice("cfg"), AxisChoice(), AxisChoice())
    )
    z_layout: str = "column"


def join_values(values: Sequence[str]) -> str:
    """Values as one comma list that `parse_axis` reads back (a comma inside one is quoted)."""
    return ", ".join(
        '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"') else value
        for value in values
    )


class AxisRow:
    """One axis's widgets: type, LoRA (when the request has several), values, Fill in, error."""

    def __init__(self, name: str, optional: bool, lora_names: Sequence[str]) -> None:
        self.name = name
        self.label = QLabel(f"&{name}")
        self.type_combo = QComboBox()
        self.type_combo.setObjectName(f"grid_{name.lower()}_type")
        if optional:
            self.type_combo.addItem(NO_AXIS, "")
        for kind in AXIS_TYPES:
            self.type_combo.addItem(kind.label, kind.key)
            tip = TYPE_TIPS.get(kind.key)
            if tip:
                self.type_combo.setItemData(
                    self.type_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole
                )
        self.label.setBuddy(self.type_combo)
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("Which of the request's LoRAs this axis weighs")
        for lora in lora_names:
            self.target_combo.addItem(lora, lora)
        self._several_loras = len(lora_names) > 1
        self.values_edit = QLineEdit()
        self.values_edit.setObjectName(f"grid_{name.lower()}_values")
        self.values_edit.setClearButtonEnabled(True)
        self.fill_button = QPushButton("Fill in all")
        self.fill_button.setAutoDefault(False)
        self.error_label = QLabel()
        self.error_label.setObjectName(f"grid_{name.lower()}_error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.error_label.hide()

    def key(self) -> str:
        return str(self.type_combo.currentData() or "")

    def text(self) -> str:
        return self.values_edit.text().strip()

    def target(self) -> str:
        """The LoRA this axis sets ("" for the request's only one)."""
        if self.key() != "lora" or not self._several_loras:
            return ""
        return str(self.target_combo.currentData() or "")

    def spec(self) -> str:
        target = self.target()
        return f"{self.key()}{':' + target if target else ''}={self.text()}"

    def choice(self) -> AxisChoice:
        return AxisChoice(self.key(), self.values_edit.text(), self.target())

    def show(self, choice: AxisChoice) -> None:
        index = self.type_combo.findData(choice.key)
        self.type_combo.setCurrentIndex(max(index, 0))
        target = self.target_combo.findData(choice.target)
        if target >= 0:
            self.target_combo.setCurrentIndex(target)
        self.values_edit.setText(choice.text)

    def set_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setToolTip(message)
        self.error_label.setVisible(bool(message))

    def update_for_type(self, can_fill: bool) -> None:
        key = self.key()
        self.values_edit.setEnabled(bool(key))
        self.values_edit.setPlaceholderText(
            f"e.g. {PLACEHOLDERS[key]}" if key else "no axis: choose a type to vary"
        )
        self.values_edit.setToolTip(
            'A comma list ("double quotes" keep a comma in a value); numbers also as ranges: '
            "1-5, 1-10 (+2) a step, 1-10 [5] a count"
        )
        self.target_combo.setVisible(key == "lora" and self._several_loras)
        self.fill_button.setVisible(key in ("sampler", "model"))
        self.fill_button.setEnabled(can_fill)
        self.fill_button.setToolTip(
            "Every sampler ldstudio has"
            if key == "sampler"
            else "Every model in your model folders"
            if can_fill
            else "No model was found in your model folders (Models → Model manager…)"
        )


class GridDialog(QDialog):
    run_requested = Signal()  # Run pressed on a valid grid: the controller checks and queues it

    def __init__(
        self,
        base: Request,
        *,
        base_text: str = "",
        model_names: Sequence[str] = (),
        choice: GridChoice | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """`base`: the request every cell changes (what Generate would queue now);
        `base_text` says what it is; `model_names`: what Fill in all gives a model axis."""
        super().__init__(parent)
        self.setWindowTitle("X/Y/Z plot")
        self.setObjectName("grid_dialog")
        self.base = base
        self._model_names = tuple(model_names)
        self._checking = False
        loras = [_lora_name(path) for path, _weight in base.params.loras]

        intro = QLabel(
            "One image (a cell) for every combination of the values below, made from the "
            "current prompt and parameters; the labelled grid is saved in the library too, "
            "linked to its cells."
        )
        intro.setWordWrap(True)
        self.base_label = QLabel(base_text)
        self.base_label.setObjectName("grid_base")
        self.base_label.setWordWrap(True)
        self.base_label.setStyleSheet("QLabel { color: palette(placeholder-text); }")
        self.base_label.setVisible(bool(base_text))

        self.rows = [AxisRow(name, i > 0, loras) for i, name in enumerate(AXIS_NAMES)]
        grid = QGridLayout()
        grid.setColumnStretch(2, 1)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        for i, row in enumerate(self.rows):
            line = 2 * i
            grid.addWidget(row.label, line, 0)
            grid.addWidget(row.type_combo, line, 1)
            values = QHBoxLayout()
            values.addWidget(row.target_combo)
            values.addWidget(row.values_edit, 1)
            values.addWidget(row.fill_button)
            grid.addLayout(values, line, 2)
            grid.addWidget(row.error_label, line + 1, 2)
            row.type_combo.currentIndexChanged.connect(lambda _i, r=row: self._type_changed(r))
            row.target_combo.currentIndexChanged.connect(self._refresh)
            row.values_edit.textChanged.connect(self._refresh)
            row.fill_button.clicked.connect(lambda _c=False, r=row: self._fill(r))
        self.x_row, self.y_row, self.z_row = self.rows

        self.z_layout_combo = QComboBox()
        self.z_layout_combo.setObjectName("grid_z_layout")
        for key, text in Z_LAYOUT_TEXTS.items():
            self.z_layout_combo.addItem(text, key)
        self.z_layout_label = QLabel("Z &layout")
        self.z_layout_label.setBuddy(self.z_layout_combo)
        z_layout = QHBoxLayout()
        z_layout.addWidget(self.z_layout_label)
        z_layout.addWidget(self.z_layout_combo)
        z_layout.addStretch(1)

        self.count_label = QLabel()
        self.count_label.setObjectName("grid_count")
        self.error_label = QLabel()
        self.error_label.setObjectName("grid_error")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.error_label.setStyleSheet(
            "QLabel#grid_error { background: #b3261e; color: white; padding: 6px; "
            "border-radius: 4px; }"
        )
        self.error_label.hide()

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.run_button: QPushButton = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.run_button.setText("&Run")
        self.buttons.accepted.connect(self._run)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.base_label)
        layout.addSpacing(6)
        layout.addLayout(grid)
        layout.addLayout(z_layout)
        layout.addSpacing(4)
        layout.addWidget(self.count_label)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(640)

        self.show_choice(choice or GridChoice())
        # Typing starts in X's values: the type is preset, the values are what one changes.
        self.x_row.values_edit.setFocus()

    # -- values ----------------------------------------------------------------------------

    def show_choice(self, choice: GridChoice) -> None:
        for row, axis in zip(self.rows, choice.axes, strict=False):
            row.show(axis)
        index = self.z_layout_combo.findData(choice.z_layout)
        self.z_layout_combo.setCurrentIndex(max(index, 0))
        for row in self.rows:
            row.update_for_type(self._can_fill(row))
        self._refresh()

    def choice(self) -> GridChoice:
        return GridChoice(tuple(row.choice() for row in self.rows), self.z_layout())

    def z_layout(self) -> str:
        return str(self.z_layout_combo.currentData())

    def axes(self) -> list[Axis]:
        """The axes set (X, then Y and Z when chosen); AxisError for the first that is wrong
        (see `problem` for all of them)."""
        return [parse_axis(row.spec(), row.name) for row in self.rows if row.key()]

    def problem(self) -> str | None:
        """Why Run is refused now (the first row's error or the grid's), or None."""
        for row in self.rows:
            if row.error_label.text():
                return row.error_label.text()
        return self.error_label.text() or None

    def error_text(self) -> str:
        return self.error_label.text() if not self.error_label.isHidden() else ""

    # -- the controller's answers ----------------------------------------------------------

    def set_checking(self, checking: bool) -> None:
        """While the controller expands the grid and checks its models: Run waits."""
        self._checking = checking
        self.run_button.setText("Checking…" if checking else "&Run")
        self._refresh()

    def show_problem(self, message: str) -> None:
        """What the controller refused the grid for (a model not found, a cell's values
        together): under the row it names, else under the rows."""
        self._checking = False
        self.run_button.setText("&Run")
        if not self._show_at_row(message):
            self._set_error(message)
        self.run_button.setEnabled(False)

    # -- what it says ----------------------------------------------------------------------

    def _type_changed(self, row: AxisRow) -> None:
        row.update_for_type(self._can_fill(row))
        self._refresh()

    def _can_fill(self, row: AxisRow) -> bool:
        return row.key() == "sampler" or (row.key() == "model" and bool(self._model_names))

    def _fill(self, row: AxisRow) -> None:
        names = SCHEDULERS if row.key() == "sampler" else self._model_names
        row.values_edit.setText(join_values(names))
        row.values_edit.setFocus()

    def _refresh(self) -> None:
        for row in self.rows:
            row.set_error("")
        self._set_error("")
        axes: list[Axis] = []
        incomplete = ""
        for row in self.rows:
            if not row.key():
                continue
            if not row.text():
                incomplete = incomplete or f"{row.name}: type its values to vary"
                continue
            try:
                axes.append(parse_axis(row.spec(), row.name))
            except AxisError as exc:
                row.set_error(str(exc))
        if self.z_row.key() and not self.y_row.key():
            self.z_row.set_error(
                f"Z: only with a Y axis (the grid's rows) as well; choose a Y type, or {NO_AXIS} "
                "for no Z"
            )
        z_set = bool(self.z_row.key())
        self.z_layout_combo.setEnabled(z_set)
        self.z_layout_label.setEnabled(z_set)
        self.z_layout_combo.setToolTip(
            "How the grids of the Z values are saved" if z_set else "Only with a Z axis"
        )
        rows_ok = not any(row.error_label.text() for row in self.rows)
        sizes = [len(axis) for axis in axes] + [1] * (3 - len(axes))
        total = sizes[0] * sizes[1] * sizes[2]
        if rows_ok and not incomplete:
            self.count_label.setText(
                f"{total} cell{'s' if total != 1 else ''} ({' × '.join(map(str, sizes))})"
            )
            if total > MAX_CELLS:
                self._set_error(f"the grid has {total} cells; allowed: at most {MAX_CELLS}")
            elif total <= LIVE_EXPAND_CELLS:
                try:
                    expand(self.base, axes)  # model names are resolved at Run
                except AxisError as exc:
                    if not self._show_at_row(str(exc)):
                        self._set_error(str(exc))
        else:
            self.count_label.setText(incomplete or "—")
        ok = self.problem() is None and not incomplete and not self._checking
        self.run_button.setEnabled(ok)
        self.run_button.setToolTip(
            f"Queue the {total} cells, then save the grid" if ok else (self.problem() or "")
        )

    def _show_at_row(self, message: str) -> bool:
        # expand's messages start with the axis's option: "X cfg: ...", "Y sampler: ...".
        for row in self.rows:
            if row.key() and message.startswith(f"{row.name} "):
                row.set_error(message)
                return True
        return False

    def _set_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setToolTip(message)
        self.error_label.setVisible(bool(message))

    def _run(self) -> None:
        self._refresh()
        if self.run_button.isEnabled():
            self.run_requested.emit()


def _lora_name(path: str) -> str:
    """A LoRA as a LoRA weight axis names it (`lora:NAME=...`): its file's stem."""
    return PurePath(path).stem
