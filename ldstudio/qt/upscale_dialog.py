"""UpscaleDialog: how to enlarge one image ×2/×4 — upscaler, refine strength, tiles, prompt —
and the size it makes, refused (with the reason) where UpscaleSettings refuses; GUI thread.

The dialog only edits values: the window's UpscaleController opens it with what it read off the
GUI thread (the source's size, the upscaler models found) and submits the job when accepted.
Nothing is clamped: a tile, overlap or size the settings do not allow shows their message and
disables Upscale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.models import ModelEntry
from ldstudio.core.params import SIZE_MULTIPLE
from ldstudio.core.upscale import (
    REFINE_STRENGTH_RANGE,
    TILE_RANGE,
    UPSCALE_SCALES,
    UpscaleSettings,
    model_label,
)

BUNDLED_TEXT = "Bundled (ldstudio-compact-x2/x4)"  # BUNDLED_UPSCALERS, for the scale chosen
RESAMPLER_TEXTS = {"lanczos": "Lanczos", "bicubic": "Bicubic"}
STRENGTH_HINT = "0: upscaler only, no diffusion model"
SOURCE_WIDTH = 340  # px of the source's name and size, beside its label


@dataclass(frozen=True)
class UpscaleSource:
    """The image to enlarge, as the dialog names it: "photo.png", "the canvas's image"."""

    label: str
    width: int
    height: int


class UpscaleDialog(QDialog):
    def __init__(
        self,
        source: UpscaleSource,
        settings: UpscaleSettings,
        *,
        prompt: str = "",
        negative_prompt: str = "",
        refine_text: str = "",
        upscalers: Sequence[ModelEntry] = (),
        missing_bundled: Mapping[int, str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """`settings` are shown as they are (the last ones used); `refine_text` says which
        model and parameters the refine takes; `upscalers` are the upscaler models found (the
        unusable ones are not offered); `missing_bundled` maps a scale to why its bundled
        upscaler cannot be used (not installed)."""
        super().__init__(parent)
        self.setWindowTitle("Upscale")
        self.setObjectName("upscale_dialog")
        self.source = source
        self._missing_bundled = dict(missing_bundled or {})
        self._refine_text = refine_text

        # One line, the name elided in the middle (a library file name is long): the size and
        # the name's end stay readable; the whole name is the tooltip.
        self.source_label = QLabel()
        self.source_label.setObjectName("upscale_source")
        self.source_label.setToolTip(source.label)
        size = f" · {source.width}×{source.height}"
        name = self.source_label.fontMetrics().elidedText(
            source.label,
            Qt.TextElideMode.ElideMiddle,
            SOURCE_WIDTH - self.source_label.fontMetrics().horizontalAdvance(size),
        )
        self.source_label.setText(name + size)

        self.scale_combo = QComboBox()
        for scale in UPSCALE_SCALES:
            self.scale_combo.addItem(f"×{scale}", scale)
        self.scale_combo.setToolTip("Output pixels per source pixel, per side")

        self.upscaler_combo = QComboBox()
        self.upscaler_combo.addItem(BUNDLED_TEXT, "")
        self.upscaler_combo.setItemData(
            0,
            "The upscaler shipped with ldstudio, for the chosen scale",
            Qt.ItemDataRole.ToolTipRole,
        )
        for name, text in RESAMPLER_TEXTS.items():
            self.upscaler_combo.addItem(text, name)
            self.upscaler_combo.setItemData(
                self.upscaler_combo.count() - 1,
                f"Pillow's {text} resampling: no model file",
                Qt.ItemDataRole.ToolTipRole,
            )
        self._model_scales: dict[str, int] = {}
        self._not_found: set[str] = set()
        for entry in upscalers:
            if not entry.usable_upscaler:
                continue
            self.upscaler_combo.addItem(f"{entry.name} — {entry.upscaler_text}", str(entry.path))
            self.upscaler_combo.setItemData(
                self.upscaler_combo.count() - 1, str(entry.path), Qt.ItemDataRole.ToolTipRole
            )
            self._model_scales[str(entry.path)] = entry.scale
        self.upscaler_combo.setToolTip(
            "What enlarges the pixels: an upscaler model from your model folders, or a resampler"
        )
        self.upscaler_note = QLabel()
        self.upscaler_note.setObjectName("upscaler_note")
        self.upscaler_note.setWordWrap(True)

        low, high = REFINE_STRENGTH_RANGE
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(low, high)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setToolTip(
            "img2img strength of the tiled refine with the diffusion model; "
            f"{low:g}: upscaler only, no diffusion model is loaded"
        )
        self.strength_hint = QLabel(STRENGTH_HINT)
        self.strength_hint.setObjectName("strength_hint")
        self._hint_style(self.strength_hint)

        t_low, t_high = TILE_RANGE
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(t_low, t_high)
        self.tile_spin.setSingleStep(SIZE_MULTIPLE)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip(
            f"Refine tile size, multiples of {SIZE_MULTIPLE} from {t_low} to {t_high} px: "
            "memory follows the tile, not the output"
        )
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, UpscaleSettings(tile=t_high).max_overlap)
        self.overlap_spin.setSingleStep(SIZE_MULTIPLE)
        self.overlap_spin.setSuffix(" px")
        self.overlap_spin.setToolTip(
            f"Overlap of neighbouring refine tiles, multiples of {SIZE_MULTIPLE} up to a quarter "
            "of the tile"
        )

        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setObjectName("upscale_prompt")
        self.prompt_edit.setPlaceholderText("What the image shows (guides the refine)")
        self.negative_edit = QPlainTextEdit()
        self.negative_edit.setObjectName("upscale_negative")
        self.negative_edit.setPlaceholderText("What to avoid")
        for edit, lines in ((self.prompt_edit, 3), (self.negative_edit, 2)):
            edit.setTabChangesFocus(True)
            line = edit.fontMetrics().lineSpacing()
            edit.setFixedHeight(line * lines + 14)
        self.prompt_edit.setPlainText(prompt)
        self.negative_edit.setPlainText(negative_prompt)

        self.refine_label = QLabel()
        self.refine_label.setObjectName("refine_model")
        self.refine_label.setWordWrap(True)
        self._hint_style(self.refine_label)

        self.size_label = QLabel()
        self.size_label.setObjectName("upscale_size")
        self.error_label = QLabel()
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.error_label.setStyleSheet(
            "QLabel#error { background: #b3261e; color: white; padding: 6px; border-radius: 4px; }"
        )
        self.error_label.hide()

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button: QPushButton = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("&Upscale")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        # The lists, texts and notes take the width; the spin boxes keep their own.
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        for widget in (
            self.source_label,
            self.upscaler_combo,
            self.upscaler_note,
            self.strength_hint,
            self.refine_label,
            self.size_label,
        ):
            widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        form.addRow("Source", self.source_label)
        form.addRow("&Scale", self.scale_combo)
        form.addRow("U&pscaler", self.upscaler_combo)
        form.addRow("", self.upscaler_note)
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength_spin)
        strength_row.addWidget(self.strength_hint, 1)
        strength_label = QLabel("&Refine strength")
        strength_label.setBuddy(self.strength_spin)
        form.addRow(strength_label, strength_row)
        form.addRow("&Tile", self.tile_spin)
        form.addRow("&Overlap", self.overlap_spin)
        form.addRow("Pro&mpt", self.prompt_edit)
        form.addRow("&Negative", self.negative_edit)
        form.addRow("Refine with", self.refine_label)
        form.addRow("Output", self.size_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(480)

        self.set_settings(settings)
        for signal in (
            self.scale_combo.currentIndexChanged,
            self.upscaler_combo.currentIndexChanged,
            self.strength_spin.valueChanged,
            self.tile_spin.valueChanged,
            self.overlap_spin.valueChanged,
        ):
            signal.connect(self._refresh)
        self._refresh()

    @staticmethod
    def _hint_style(label: QLabel) -> None:
        label.setWordWrap(True)
        label.setStyleSheet("QLabel { color: palette(placeholder-text); }")

    # -- values ----------------------------------------------------------------------------

    def set_settings(self, settings: UpscaleSettings) -> None:
        """Show `settings` as they are; an upscaler model no longer found stays chosen, marked
        "(not found)", and is refused (never silently swapped for another)."""
        self.scale_combo.setCurrentIndex(max(self.scale_combo.findData(settings.scale), 0))
        index = self.upscaler_combo.findData(settings.upscaler)
        if index < 0:
            self.upscaler_combo.addItem(
                f"⚠ {model_label(settings.upscaler)} (not found)", settings.upscaler
            )
            index = self.upscaler_combo.count() - 1
            self._not_found.add(settings.upscaler)
        self.upscaler_combo.setCurrentIndex(index)
        self.strength_spin.setValue(settings.refine_strength)
        self.tile_spin.setValue(settings.tile)
        # Widened first: a remembered overlap above this tile's quarter is shown (and refused),
        # not cut down to fit.
        self.overlap_spin.setMaximum(max(self.overlap_spin.maximum(), settings.overlap))
        self.overlap_spin.setValue(settings.overlap)
        self._refresh()

    def settings(self) -> UpscaleSettings:
        """The settings shown, not validated (see `problem`)."""
        return UpscaleSettings(
            scale=int(self.scale_combo.currentData()),
            upscaler=str(self.upscaler_combo.currentData()),
            refine_strength=round(self.strength_spin.value(), 2),
            tile=self.tile_spin.value(),
            overlap=self.overlap_spin.value(),
        )

    def prompt(self) -> str:
        return self.prompt_edit.toPlainText().strip()

    def negative_prompt(self) -> str:
        return self.negative_edit.toPlainText().strip()

    def problem(self) -> str | None:
        """Why these settings cannot upscale this source (UpscaleSettings' words), or None."""
        settings = self.settings()
        try:
            settings.validate()
        except ValueError as exc:
            return str(exc)
        if not settings.upscaler and settings.scale in self._missing_bundled:
            return self._missing_bundled[settings.scale]
        if settings.upscaler in self._not_found:
            return (
                f"upscaler: {model_label(settings.upscaler)} is not among the upscaler models in "
                "your model folders; choose another, or add its folder in the model manager"
            )
        return settings.size_problem(self.source.width, self.source.height)

    def error_text(self) -> str:
        return self.error_label.text() if not self.error_label.isHidden() else ""

    # -- what it says ----------------------------------------------------------------------

    def _refresh(self) -> None:
        settings = self.settings()
        # The overlap's maximum follows the tile, but never below the value shown: a smaller
        # tile makes that value wrong (said below), it does not silently change it.
        self.overlap_spin.setMaximum(max(settings.max_overlap, self.overlap_spin.value()))
        width, height = self.source.width, self.source.height
        out_w, out_h = settings.output_size(width, height)
        self.size_label.setText(f"{width}×{height} → {out_w}×{out_h}")
        self.upscaler_note.setText(self._upscaler_note(settings))
        self.upscaler_note.setVisible(bool(self.upscaler_note.text()))
        if settings.refines:
            self.refine_label.setText(self._refine_text)
        else:
            self.refine_label.setText("no refine: the upscaler alone, no diffusion model is loaded")
        problem = self.problem()
        self.error_label.setText(problem or "")
        self.error_label.setVisible(problem is not None)
        self.ok_button.setEnabled(problem is None)
        self.ok_button.setToolTip(problem or f"Queue the upscale to {out_w}×{out_h}")

    def _upscaler_note(self, settings: UpscaleSettings) -> str:
        model_scale = self._model_scales.get(settings.upscaler)
        if not model_scale or model_scale == settings.scale:
            return ""
        if model_scale < settings.scale:
            return f"A ×{model_scale} model: it runs more than once to reach ×{settings.scale}"
        return f"A ×{model_scale} model: its output is resized down to ×{settings.scale}"
