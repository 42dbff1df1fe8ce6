"""SeedOptionsBox: the parameter pane's "More seed & prompt options" group; GUI thread.

Clip skip, the emphasis mode, A1111's variation seed and "Seed resize from". Collapsed by
default (the pane keeps its height at 1280×800); its header then says which of them are not
the defaults, so a variation or a clip skip is never on unseen. The values are GenerationParams'
own: `apply` puts them into a request, `set_params` shows a request's. A value typed out of
range stays as typed and is refused with the CLI's message (`problems`), never clamped.
"""

from __future__ import annotations

import secrets

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.params import (
    CLIP_SKIP_RANGE,
    SEED_MAX,
    SIZE_MULTIPLE,
    SIZE_RANGE,
    VARIATION_STRENGTH_RANGE,
    GenerationParams,
    field_problem,
)
from ldstudio.qt.checked_spin import CheckedSpinBox

TITLE = "More seed && prompt options"
# (shown name, GenerationParams.emphasis) in the combo's order.
EMPHASIS_CHOICES: tuple[tuple[str, str], ...] = (
    ("Original", "original"),
    ("No norm", "no-norm"),
    ("ComfyUI", "comfy"),
)
EMPHASIS_TIPS = {
    "original": "Original: A1111's default — weights scale the embeddings, then the mean is "
    "restored",
    "no-norm": "No norm: weights scale the embeddings, the mean is not restored (stronger)",
    "comfy": "ComfyUI: weights move each token from the empty prompt's embedding (ComfyUI's "
    "meaning of (word:1.2))",
}
VARIATION_MODES = ("Random", "Fixed")
RANDOM, FIXED = range(2)
DEFAULT_STRENGTH = 0.1


def emphasis_name(value: str) -> str:
    """The shown name of an emphasis mode ("comfy" → "ComfyUI")."""
    return dict((v, name) for name, v in EMPHASIS_CHOICES).get(value, value)


class SeedOptionsBox(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setObjectName("seed_options_toggle")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setText(TITLE)
        self.toggle.setToolTip("Clip skip, emphasis, variation seed, seed resize from")
        self.summary_label = QLabel()
        self.summary_label.setObjectName("seed_options_summary")
        self.summary_label.setStyleSheet("color: palette(link);")
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.toggle)
        header.addWidget(self.summary_label, 1)
        header.addStretch(0)  # the toggle stays left while the summary is hidden

        self.clip_skip_spin = CheckedSpinBox("clip_skip", CLIP_SKIP_RANGE)
        self.clip_skip_spin.setToolTip(
            f"Clip skip, {CLIP_SKIP_RANGE[0]} to {CLIP_SKIP_RANGE[1]}: take the text encoder's "
            "output this many layers from the end (1 = the last layer, no skip; 2 suits many "
            "anime models)"
        )
        clip_row = QHBoxLayout()
        clip_row.addWidget(self.clip_skip_spin, 1)
        clip_row.addWidget(_range_label(f"{CLIP_SKIP_RANGE[0]}–{CLIP_SKIP_RANGE[1]}, 1 = none"))

        self.emphasis_combo = QComboBox()
        for at, (name, value) in enumerate(EMPHASIS_CHOICES):
            self.emphasis_combo.addItem(name, value)
            self.emphasis_combo.setItemData(at, EMPHASIS_TIPS[value], Qt.ItemDataRole.ToolTipRole)
        self.emphasis_combo.setToolTip(
            "How (word:1.2) weights change the prompt: " + "; ".join(EMPHASIS_TIPS.values())
        )

        self.variation_check = QCheckBox("Variation")
        self.variation_check.setToolTip(
            "A1111's variation seed: mix a second seed's noise into the seed's, by the strength "
            "(0 = the seed's image, 1 = the variation seed's)"
        )
        self.variation_mode = QComboBox()
        self.variation_mode.addItems(VARIATION_MODES)
        self.variation_mode.setToolTip(
            "Random: a new variation seed each job. Fixed: the variation seed beside"
        )
        self.variation_seed_spin = QDoubleSpinBox()
        self.variation_seed_spin.setDecimals(0)
        self.variation_seed_spin.setRange(0, SEED_MAX)
        self.variation_seed_spin.setToolTip(f"Variation seed 0–{SEED_MAX}")
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(*VARIATION_STRENGTH_RANGE)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setValue(DEFAULT_STRENGTH)
        self.strength_spin.setPrefix("strength ")
        self.strength_spin.setToolTip(
            "How much of the variation seed's noise, 0 to 1 (0.1: a subtle variation, 0.5: a "
            "strong one)"
        )
        variation_row = QHBoxLayout()
        variation_row.addWidget(self.variation_check)
        variation_row.addWidget(self.variation_mode)
        variation_row.addWidget(self.variation_seed_spin, 1)
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength_spin, 1)

        self.resize_check = QCheckBox("From")
        self.resize_check.setToolTip(
            "A1111's Seed resize from: draw the seed's noise at this size (centred), so an "
            "image keeps its composition when the size changes"
        )
        self.resize_width_spin = CheckedSpinBox("width", SIZE_RANGE, SIZE_MULTIPLE)
        self.resize_height_spin = CheckedSpinBox("height", SIZE_RANGE, SIZE_MULTIPLE)
        for spin in (self.resize_width_spin, self.resize_height_spin):
            spin.setValue(512)
            spin.setSuffix(" px")
            spin.setToolTip(
                f"The size the seed's noise is drawn at: multiples of {SIZE_MULTIPLE} from "
                f"{SIZE_RANGE[0]} to {SIZE_RANGE[1]} px"
            )
        resize_row = QHBoxLayout()
        resize_row.addWidget(self.resize_check)
        resize_row.addWidget(self.resize_width_spin, 1)
        resize_row.addWidget(QLabel("×"))
        resize_row.addWidget(self.resize_height_spin, 1)

        self.body = QWidget()
        self.body.setObjectName("seed_options_body")
        form = QFormLayout(self.body)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for text, field, buddy in (
            ("Clip s&kip", clip_row, self.clip_skip_spin),
            ("Emp&hasis", self.emphasis_combo, self.emphasis_combo),
            ("Var&iation", variation_row, self.variation_check),
            ("", strength_row, self.strength_spin),
            ("Seed resi&ze", resize_row, self.resize_check),
        ):
            label = QLabel(text)
            label.setBuddy(buddy)
            form.addRow(label, field)
        self.body.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.body)

        self.toggle.toggled.connect(self.set_expanded)
        for signal in (
            self.clip_skip_spin.valueChanged,
            self.emphasis_combo.currentIndexChanged,
            self.variation_check.toggled,
            self.variation_mode.currentIndexChanged,
            self.variation_seed_spin.valueChanged,
            self.strength_spin.valueChanged,
            self.resize_check.toggled,
            self.resize_width_spin.valueChanged,
            self.resize_height_spin.valueChanged,
        ):
            signal.connect(self._edited)
        self._refresh()

    # -- showing -------------------------------------------------------------------------------

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.blockSignals(True)
        self.toggle.setChecked(expanded)
        self.toggle.blockSignals(False)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)
        self.summary_label.setVisible(not expanded)  # open, the fields say it themselves

    def expanded(self) -> bool:
        return self.toggle.isChecked()

    # -- values --------------------------------------------------------------------------------

    def emphasis(self) -> str:
        data = self.emphasis_combo.currentData()
        return data if isinstance(data, str) else EMPHASIS_CHOICES[0][1]

    def apply(self, params: GenerationParams, *, draw: bool = False) -> GenerationParams:
        """`params` with these options, not validated. `draw`: a Random variation seed is
        drawn now (a job's); otherwise the seed shown stands for it (what is remembered)."""
        variation_seed: int | None = None
        strength = 0.0
        if self.variation_check.isChecked():
            variation_seed = int(self.variation_seed_spin.value())
            if draw and self.variation_mode.currentIndex() == RANDOM:
                variation_seed = secrets.randbelow(SEED_MAX + 1)
            strength = round(self.strength_spin.value(), 2)
        return params.replace(
            clip_skip=self.clip_skip_spin.value(),
            emphasis=self.emphasis(),
            variation_seed=variation_seed,
            variation_strength=strength,
            seed_resize_from=self._resize_from(),
        )

    def set_params(self, params: GenerationParams) -> None:
        """Show the options of `params` (reuse, drop, the last session's settings). A concrete
        variation seed selects Fixed, unless it is the one shown (a Random one stays Random)."""
        widgets = self.findChildren(QWidget)
        for widget in widgets:
            widget.blockSignals(True)
        try:
            self.clip_skip_spin.setValue(params.clip_skip)
            at = self.emphasis_combo.findData(params.emphasis)
            self.emphasis_combo.setCurrentIndex(max(at, 0))
            on = params.variation_seed is not None
            self.variation_check.setChecked(on)
            if params.variation_seed is not None:
                if params.variation_seed != int(self.variation_seed_spin.value()):
                    self.variation_mode.setCurrentIndex(FIXED)
                self.variation_seed_spin.setValue(params.variation_seed)
                self.strength_spin.setValue(params.variation_strength)
            resize = params.seed_resize_from
            self.resize_check.setChecked(resize is not None)
            if resize is not None:
                self.resize_width_spin.setValue(resize[0])
                self.resize_height_spin.setValue(resize[1])
        finally:
            for widget in widgets:
                widget.blockSignals(False)
        self._refresh()
        self.changed.emit()

    def problems(self) -> list[str]:
        """The CLI's message for each option whose value is not allowed."""
        found = [self.clip_skip_spin.problem()]
        resize = self._resize_from()
        if resize is not None:
            found.append(field_problem("seed_resize_from", resize))
        return [problem for problem in found if problem]

    def summary(self) -> str:
        """The options that are not the defaults, in a few words ("" when all are)."""
        parts = []
        if self.clip_skip_spin.value() != 1:
            parts.append(f"clip skip {self.clip_skip_spin.value()}")
        if self.emphasis() != "original":
            parts.append(f"{emphasis_name(self.emphasis())} emphasis")
        if self.variation_check.isChecked():
            parts.append(f"variation {self.strength_spin.value():g}")
        resize = self._resize_from()
        if resize is not None:
            parts.append(f"seed from {resize[0]}×{resize[1]}")
        return ", ".join(parts)

    def _resize_from(self) -> tuple[int, int] | None:
        if not self.resize_check.isChecked():
            return None
        return self.resize_width_spin.value(), self.resize_height_spin.value()

    def _edited(self) -> None:
        self._refresh()
        self.changed.emit()

    def _refresh(self) -> None:
        varied = self.variation_check.isChecked()
        self.variation_mode.setEnabled(varied)
        self.variation_seed_spin.setEnabled(varied and self.variation_mode.currentIndex() == FIXED)
        self.strength_spin.setEnabled(varied)
        resized = self.resize_check.isChecked()
        self.resize_width_spin.setEnabled(resized)
        self.resize_height_spin.setEnabled(resized)
        summary = self.summary()
        self.summary_label.setText(summary)
        self.summary_label.setToolTip(f"Not the defaults: {summary}" if summary else "")
        self.emphasis_combo.setToolTip(EMPHASIS_TIPS[self.emphasis()])


def _range_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("allowed_range")
    label.setToolTip(f"Allowed: {text}")
    return label
