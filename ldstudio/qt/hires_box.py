"""HiresBox: the parameter pane's "Hires fix" group (A1111's hires fix); GUI thread.

Checked off: txt2img as before. Checked: the job's second pass enlarges each image by the
scale with the chosen upscaler and denoises it again; the group says the size it will make
and warns where latent upscaling would blur. The values are HiresSettings' own; nothing is
clamped silently (the spin boxes refuse what their ranges do not hold, and say the ranges).

The upscalers are lanczos, latent and the usable upscaler models the window found in the model
folders (`set_upscalers`, after each scan). A model path shown that is not among them (a saved
or reused hires fix) stays chosen, marked "(not found)": Generate checks the file and says why
it cannot be used, as it does for the model picker's unusable models.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QWidget,
)

from ldstudio.core.hires import (
    DEFAULT_STRENGTH,
    HIRES_SCALE_RANGE,
    HIRES_STEPS_RANGE,
    HIRES_UPSCALERS,
    MODEL_STRENGTH,
    HiresSettings,
)
from ldstudio.core.models import ModelEntry
from ldstudio.core.models.upscalers import bundled_upscaler_path
from ldstudio.core.upscale import BUNDLED_UPSCALERS, model_label

DEFAULT_TEXT = "default"
SAME_STEPS_TEXT = "as Steps"
NOT_FOUND_TEXT = "(not found)"
UPSCALER_TIPS = {
    "lanczos": "Enlarge the pixels with Lanczos (keeps detail at strength 0.5)",
    "latent": "Enlarge the latents (needs strength 0.55 or more)",
}


class HiresBox(QGroupBox):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Hires fix", parent)
        self.setCheckable(True)
        self.setChecked(False)
        self.setToolTip(
            "Make the image, enlarge it, and denoise it again at the bigger size "
            "(A1111's hires fix)"
        )
        self._size: tuple[int, int] | None = None  # the first pass's, when known
        self._available = True
        # A target size from a reused image (A1111's "Hires resize"), until the scale is edited.
        self._resize: tuple[int, int] | None = None
        low, high = HIRES_SCALE_RANGE
        self.scale_spin = QDoubleSpinBox()
        self.scale_spin.setRange(low, high)
        self.scale_spin.setSingleStep(0.25)
        self.scale_spin.setDecimals(2)
        self.scale_spin.setValue(2.0)
        self.scale_spin.setPrefix("×")
        self.scale_spin.setToolTip(f"Enlarge the first pass by this factor, {low:g} to {high:g}")
        self.upscaler_combo = QComboBox()
        self._upscalers: tuple[ModelEntry, ...] = ()  # the usable upscaler models found
        self._fill_upscalers(HIRES_UPSCALERS[0])
        self.upscaler_combo.setToolTip(
            "lanczos: enlarge the pixels (keeps detail at strength 0.5); latent: enlarge the "
            "latents (needs strength 0.55 or more); an upscaler model from the model folders: "
            "enlarge the pixels with it (then Lanczos to the size)"
        )
        defaults = ", ".join(f"{name} {value:g}" for name, value in DEFAULT_STRENGTH.items())
        defaults += f", an upscaler model {MODEL_STRENGTH:g}"
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.0, 1.0)  # 0 shows as "default": a real strength is > 0
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setDecimals(2)
        self.strength_spin.setSpecialValueText(DEFAULT_TEXT)
        self.strength_spin.setToolTip(
            f"How much the second pass repaints, above 0 up to 1 ({DEFAULT_TEXT}: {defaults})"
        )
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(*HIRES_STEPS_RANGE)
        self.steps_spin.setSpecialValueText(SAME_STEPS_TEXT)
        self.steps_spin.setToolTip(
            f"Steps the second pass runs, up to {HIRES_STEPS_RANGE[1]} ({SAME_STEPS_TEXT}: "
            "as many as the first pass)"
        )
        self.target_label = QLabel()
        self.hint_label = QLabel()
        self.hint_label.setWordWrap(True)
        self.hint_label.setStyleSheet("color: #b3261e;")
        self.hint_label.hide()
        form = QFormLayout(self)
        form.addRow("Scale", self.scale_spin)
        form.addRow("Upscaler", self.upscaler_combo)
        form.addRow("Strength", self.strength_spin)
        form.addRow("Steps", self.steps_spin)
        form.addRow("", self.target_label)
        form.addRow(self.hint_label)
        for signal in (
            self.toggled,
            self.scale_spin.valueChanged,
            self.upscaler_combo.currentIndexChanged,
            self.strength_spin.valueChanged,
            self.steps_spin.valueChanged,
        ):
            signal.connect(self._edited)
        self.scale_spin.valueChanged.connect(self._scale_edited)
        self._refresh()

    # -- upscalers ---------------------------------------------------------------------------

    def set_upscalers(self, models: Sequence[ModelEntry]) -> None:
        """The upscaler models found in the model folders (the unusable ones are not offered);
        the upscaler chosen stays chosen, marked "(not found)" when it is not among them."""
        self._upscalers = tuple(entry for entry in models if entry.usable_upscaler)
        self._fill_upscalers(self.upscaler())
        self._refresh()

    def upscaler(self) -> str:
        """The upscaler chosen: "lanczos", "latent" or an upscaler model's path."""
        data = self.upscaler_combo.currentData()
        return data if isinstance(data, str) else HIRES_UPSCALERS[0]

    def _fill_upscalers(self, chosen: str) -> None:
        combo = self.upscaler_combo
        combo.blockSignals(True)
        try:
            combo.clear()
            for name in HIRES_UPSCALERS:
                combo.addItem(name, name)
                combo.setItemData(
                    combo.count() - 1, UPSCALER_TIPS[name], Qt.ItemDataRole.ToolTipRole
                )
            listed = set(HIRES_UPSCALERS)
            for scale, name in BUNDLED_UPSCALERS.items():  # shipped: offered even offline
                path = bundled_upscaler_path(scale)
                if path.is_file():
                    listed.add(str(path))
                    combo.addItem(f"{name} — bundled, Compact ×{scale}", str(path))
                    combo.setItemData(
                        combo.count() - 1,
                        f"The ×{scale} upscaler shipped with ldstudio",
                        Qt.ItemDataRole.ToolTipRole,
                    )
            for entry in self._upscalers:
                value = str(entry.path)
                if value in listed:
                    continue
                listed.add(value)
                combo.addItem(f"{entry.name} — {entry.upscaler_text}", value)
                combo.setItemData(combo.count() - 1, value, Qt.ItemDataRole.ToolTipRole)
            if chosen not in listed:
                # Kept, not silently lanczos: Generate says why it cannot be used, if it cannot.
                combo.addItem(f"⚠ {model_label(chosen)} {NOT_FOUND_TEXT}", chosen)
                at = combo.count() - 1
                combo.setItemData(
                    at,
                    f"Not among the upscaler models found in the model folders: {chosen}",
                    Qt.ItemDataRole.ToolTipRole,
                )
                items = combo.model()
                if isinstance(items, QStandardItemModel):  # greyed: not offered once left
                    item = items.item(at)
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            combo.setCurrentIndex(combo.findData(chosen))
        finally:
            combo.blockSignals(False)

    # -- values ------------------------------------------------------------------------------

    def settings(self) -> HiresSettings | None:
        """The hires fix a job gets: as shown, or None when off (or not available)."""
        return self.shown() if self._available else None

    def shown(self) -> HiresSettings | None:
        """The hires fix as the group shows it (None: off), available now or not: what the
        window remembers. ValueError when the values do not form one."""
        return self._values().validate() if self.isChecked() else None

    def _values(self) -> HiresSettings:
        """The widgets' values as settings, not yet validated."""
        strength = self.strength_spin.value()
        width, height = self._resize if self._resize is not None else (None, None)
        return HiresSettings(
            scale=round(self.scale_spin.value(), 2),
            width=width,
            height=height,
            upscaler=self.upscaler(),
            strength=round(strength, 2) if strength > 0 else None,
            steps=self.steps_spin.value(),
        )

    def set_settings(self, settings: HiresSettings | None) -> None:
        """Show `settings` (reuse parameters); None turns the hires fix off. A target size
        (A1111's "Hires resize") is kept as it is until the scale is edited."""
        self.blockSignals(True)
        self.scale_spin.blockSignals(True)
        try:
            self.setChecked(settings is not None)
            self._resize = None
            if settings is not None:
                if settings.width is not None and settings.height is not None:
                    self._resize = (settings.width, settings.height)
                self.scale_spin.setValue(settings.scale)
                self._fill_upscalers(settings.upscaler)
                self.strength_spin.setValue(settings.strength or 0.0)
                self.steps_spin.setValue(settings.steps)
        finally:
            self.scale_spin.blockSignals(False)
            self.blockSignals(False)
        self._refresh()
        self.changed.emit()

    def set_first_pass_size(self, size: tuple[int, int] | None) -> None:
        self._size = size
        self._refresh()

    def set_available(self, available: bool, why: str = "") -> None:
        """Off for canvas jobs (a hires fix is a txt2img job's second pass): greyed with why."""
        self._available = available
        self.setEnabled(available)
        self.setToolTip(
            why
            or "Make the image, enlarge it, and denoise it again at the bigger size "
            "(A1111's hires fix)"
        )
        self._refresh()
        self.changed.emit()

    def _scale_edited(self) -> None:
        self._resize = None  # the scale decides the size again
        self._refresh()

    def _edited(self) -> None:
        self._refresh()
        self.changed.emit()

    def _refresh(self) -> None:
        on = self.isChecked() and self._available
        settings = self._values()
        # "default" says the strength it stands for, which follows the upscaler.
        default = settings.replace(strength=None).resolved_strength()
        self.strength_spin.setSpecialValueText(f"{DEFAULT_TEXT} ({default:g})")
        if not on:
            self.target_label.setText("")
        elif self._size is None:
            self.target_label.setText(
                f"→ {settings.width}×{settings.height}"
                if settings.resized
                else f"×{settings.scale:g} of the first pass"
            )
        else:
            width, height = settings.target_size(*self._size)
            problem = settings.size_problem(*self._size)
            self.target_label.setText(
                problem if problem else f"{self._size[0]}×{self._size[1]} → {width}×{height}"
            )
        hint = settings.hint() if on else None
        self.hint_label.setText(hint or "")
        self.hint_label.setVisible(hint is not None)

    def problem(self) -> str | None:
        """Why Generate must refuse the shown hires fix, or None."""
        if not self.isChecked() or not self._available or self._size is None:
            return None
        try:
            settings = self.settings()
        except ValueError as exc:
            return str(exc)
        return settings.size_problem(*self._size) if settings else None
