"""ParamsPane: model, scheduler, steps, guidance, size, seed, batch and preview widgets; GUI thread.

The pane edits a `Draft` (ldstudio.core.draft): each widget writes its value into the draft as
it is edited, and shows what the draft holds when it changes (`load`, "reuse last", the seed of
a job). The ranges come from ldstudio.core.params and are shown beside the fields. A value
typed out of range stays as typed and is refused under the form with the message the CLI gives
(Generate is refused too); nothing is clamped or snapped silently. Combinations that are
allowed but probably unwanted are explained in a line under the form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.draft import SEED_MODES as DRAFT_SEED_MODES
from ldstudio.core.draft import Draft
from ldstudio.core.params import (
    BATCH_COUNT_RANGE,
    BATCH_SIZE_RANGE,
    GUIDANCE_CUTOFF_RANGE,
    GUIDANCE_RANGE,
    PREVIEW_INTERVAL_RANGE,
    PREVIEW_METHODS,
    SCHEDULERS,
    SEED_MAX,
    SIZE_MULTIPLE,
    SIZE_RANGE,
    STEPS_RANGE,
    GenerationParams,
)
from ldstudio.core.paths import DEFAULT_MODEL_NAME
from ldstudio.qt.checked_spin import CheckedSpinBox
from ldstudio.qt.hires_box import HiresBox
from ldstudio.qt.model_info import ModelInfo
from ldstudio.qt.seed_options import SeedOptionsBox

ASPECTS: tuple[tuple[str, tuple[int, int] | None], ...] = (
    ("Native size", None),
    ("Square 1:1", (1, 1)),
    ("Landscape 4:3", (4, 3)),
    ("Portrait 3:4", (3, 4)),
    ("Landscape 3:2", (3, 2)),
    ("Portrait 2:3", (2, 3)),
    ("Wide 16:9", (16, 9)),
    ("Tall 9:16", (9, 16)),
    ("Custom", None),
)
NATIVE, CUSTOM = 0, len(ASPECTS) - 1
SEED_MODES = ("Random", "Fixed", "Reuse last")  # the draft's SEED_MODES, in the same order
RANDOM, FIXED, REUSE_LAST = range(3)
FALLBACK_NATIVE = 512
PREVIEW_TIPS = {
    "latent2rgb": "latent2rgb: a fast colour map of the latent (coarse, nearly free)",
    "taesd": "taesd: the tiny decoder (sharper; needs its weights in the data folder)",
    "vae": "vae: the full decoder (exact, slowest)",
    "none": "none: no live preview (fastest)",
}


# The draft's fields this pane shows and edits (the prompts are the prompt pane's).
FIELDS = frozenset(
    {
        "model",
        "scheduler",
        "steps",
        "guidance_scale",
        "guidance_cutoff",
        "width",
        "height",
        "seed_mode",
        "seed",
        "last_seed",
        "batch_size",
        "batch_count",
        "preview_method",
        "preview_interval",
        "vae",
        "loras",
    }
)
# The draft's fields the seed & prompt options box edits (written on each change, shown when
# the draft changes them: a load, the last session's settings).
OPTION_FIELDS = (
    "clip_skip",
    "emphasis",
    "variation_seed",
    "variation_strength",
    "seed_resize_from",
)


class ParamsPane(QWidget):
    changed = Signal()
    add_model_requested = Signal()

    def __init__(self, parent: QWidget | None = None, *, draft: Draft | None = None) -> None:
        super().__init__(parent)
        self.draft = draft if draft is not None else Draft()
        self._info: ModelInfo | None = None
        self.bundled_name = DEFAULT_MODEL_NAME  # the model listed with value ""
        self._unusable: dict[str, str] = {}
        # True while the widgets are being set from the draft (and until they first show it):
        # their signals then say nothing the draft does not know, and are not written back.
        self._showing = True

        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Which diffusion model draws the image")
        self.add_model_button = QToolButton()
        self.add_model_button.setText("Add…")
        self.add_model_button.setToolTip(
            "Add a model: a .safetensors checkpoint, or a diffusers folder (pick its "
            "model_index.json)"
        )
        self.add_model_button.clicked.connect(self.add_model_requested)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.add_model_button)

        self.scheduler_combo = QComboBox()
        self.scheduler_combo.addItems(SCHEDULERS)
        self.scheduler_combo.setToolTip(
            "The sampler that walks from noise to image; Euler a and DPM++ 2M Karras are good "
            "defaults"
        )
        self.steps_spin = CheckedSpinBox("steps", STEPS_RANGE)
        self.steps_spin.setToolTip(
            f"Denoising steps, {STEPS_RANGE[0]} to {STEPS_RANGE[1]}: more is slower and usually "
            "finer (20–30)"
        )
        steps_row = QHBoxLayout()
        steps_row.addWidget(self.steps_spin, 1)
        steps_row.addWidget(_range_label(f"{STEPS_RANGE[0]}–{STEPS_RANGE[1]}"))
        self.guidance_spin = QDoubleSpinBox()
        self.guidance_spin.setRange(*GUIDANCE_RANGE)
        self.guidance_spin.setSingleStep(0.5)
        self.guidance_spin.setDecimals(1)
        self.guidance_spin.setToolTip(
            "Guidance (CFG) scale: how strictly the image follows the prompt (5–9 is typical)"
        )

        self.cutoff_spin = QDoubleSpinBox()
        self.cutoff_spin.setRange(*GUIDANCE_CUTOFF_RANGE)
        self.cutoff_spin.setSingleStep(0.05)
        self.cutoff_spin.setDecimals(2)
        self.cutoff_spin.setToolTip(
            "Guidance cut-off: stop classifier-free guidance after this fraction of the steps; "
            "the remaining steps run one UNet pass instead of two (faster, usually the same "
            "image). 1 = guidance on every step (off)"
        )
        self.extras_label = QLabel()
        self.extras_label.setObjectName("extras")
        self.extras_label.setWordWrap(True)
        self.extras_label.setToolTip("VAE and LoRAs chosen in Models → Model manager")
        self.extras_label.hide()

        self.aspect_combo = QComboBox()
        for aspect_name, _ in ASPECTS:
            self.aspect_combo.addItem(aspect_name)
        self.aspect_combo.setToolTip("Size preset by aspect ratio, around the model's native size")
        size_allowed = f"multiples of {SIZE_MULTIPLE} from {SIZE_RANGE[0]} to {SIZE_RANGE[1]}"
        self.width_spin = CheckedSpinBox("width", SIZE_RANGE, SIZE_MULTIPLE)
        self.width_spin.setSuffix(" px")
        self.width_spin.setToolTip(f"Image width in pixels: {size_allowed}")
        self.height_spin = CheckedSpinBox("height", SIZE_RANGE, SIZE_MULTIPLE)
        self.height_spin.setSuffix(" px")
        self.height_spin.setToolTip(f"Image height in pixels: {size_allowed}")
        self._size_allowed_text = f"{size_allowed} px"
        self._canvas_size: str | None = None  # set while the canvas decides the size
        self.size_range_label = _range_label(self._size_allowed_text)
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_spin, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_spin, 1)

        self.seed_mode = QComboBox()
        self.seed_mode.addItems(SEED_MODES)
        self.seed_mode.setToolTip(
            "Random: a new seed each job. Fixed: the seed below. Reuse last: the previous job's"
        )
        self.seed_spin = QDoubleSpinBox()
        self.seed_spin.setDecimals(0)
        self.seed_spin.setRange(0, SEED_MAX)
        self.seed_spin.setToolTip(
            f"Seed 0–{SEED_MAX}: the same seed and settings give the same image; image i of a "
            "job uses seed+i"
        )
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_mode)
        seed_row.addWidget(self.seed_spin, 1)

        self.batch_size_spin = CheckedSpinBox("batch_size", BATCH_SIZE_RANGE)
        self.batch_size_spin.setToolTip(
            f"Images drawn together in one pass, {BATCH_SIZE_RANGE[0]} to "
            f"{BATCH_SIZE_RANGE[1]} (uses more memory)"
        )
        self.batch_count_spin = CheckedSpinBox("batch_count", BATCH_COUNT_RANGE)
        self.batch_count_spin.setToolTip(
            f"How many passes to run one after another, {BATCH_COUNT_RANGE[0]} to "
            f"{BATCH_COUNT_RANGE[1]:,}"
        )
        batch_row = QHBoxLayout()
        batch_row.addWidget(self.batch_size_spin, 1)
        batch_row.addWidget(QLabel("per pass ×"))
        batch_row.addWidget(self.batch_count_spin, 1)

        self.preview_combo = QComboBox()
        self.preview_combo.addItems(PREVIEW_METHODS)
        self.preview_combo.setToolTip(
            "How the live preview is drawn: " + "; ".join(PREVIEW_TIPS.values())
        )
        self.preview_interval_spin = QSpinBox()
        self.preview_interval_spin.setRange(*PREVIEW_INTERVAL_RANGE)
        self.preview_interval_spin.setPrefix("every ")
        self.preview_interval_spin.setSuffix(" step(s)")
        self.preview_interval_spin.setToolTip("Draw a preview every N steps (1 = every step)")
        preview_row = QHBoxLayout()
        preview_row.addWidget(self.preview_combo, 1)
        preview_row.addWidget(self.preview_interval_spin, 1)

        # Values the form cannot take, in the CLI's words; Generate is refused meanwhile.
        self.problem_label = QLabel()
        self.problem_label.setObjectName("params_problem")
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #c62828;")
        self.problem_label.hide()
        # What the last restore of parameters could not take, until the next restore: the
        # status bar would show it for seconds, and clip a long list.
        self.restore_note = QLabel()
        self.restore_note.setObjectName("restore_note")
        self.restore_note.setWordWrap(True)
        self.restore_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.restore_note.hide()
        self.hint_label = QLabel()
        self.hint_label.setObjectName("hint")
        self.hint_label.setWordWrap(True)
        self.hint_label.setStyleSheet("color: palette(link);")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        rows: tuple[tuple[str, QWidget | QHBoxLayout, QWidget], ...] = (
            ("&Model", model_row, self.model_combo),
            ("&Sampler", self.scheduler_combo, self.scheduler_combo),
            ("S&teps", steps_row, self.steps_spin),
            ("G&uidance", self.guidance_spin, self.guidance_spin),
            ("Guidance cut-o&ff", self.cutoff_spin, self.cutoff_spin),
            ("Si&ze", self.aspect_combo, self.aspect_combo),
            ("", size_row, self.width_spin),
            ("", self.size_range_label, self.width_spin),
            ("S&eed", seed_row, self.seed_mode),
            ("&Batch", batch_row, self.batch_size_spin),
            ("Pre&view", preview_row, self.preview_combo),
        )
        for text, field, buddy in rows:
            label = QLabel(text)
            label.setBuddy(buddy)
            form.addRow(label, field)
        # Clip skip, emphasis, variation seed, seed resize: collapsed unless wanted.
        self.options_box = SeedOptionsBox()
        self.options_box.changed.connect(self._options_edited)
        # A txt2img job's second pass (not part of the draft: the request's, not the params').
        self.hires_box = HiresBox()
        self.hires_box.changed.connect(self._show_first_pass_size)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.options_box)
        layout.addWidget(self.hires_box)
        layout.addWidget(self.extras_label)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.restore_note)
        layout.addWidget(self.hint_label)
        layout.addStretch(1)

        self.set_models([(f"{DEFAULT_MODEL_NAME} (bundled)", "")])
        self._show(FIELDS)
        for signal in (
            self.model_combo.currentIndexChanged,
            self.scheduler_combo.currentIndexChanged,
            self.steps_spin.valueChanged,
            self.guidance_spin.valueChanged,
            self.cutoff_spin.valueChanged,
            self.width_spin.valueChanged,
            self.height_spin.valueChanged,
            self.seed_spin.valueChanged,
            self.batch_size_spin.valueChanged,
            self.batch_count_spin.valueChanged,
            self.preview_combo.currentIndexChanged,
            self.preview_interval_spin.valueChanged,
            self.seed_mode.currentIndexChanged,
        ):
            signal.connect(self._edited)
        self.aspect_combo.currentIndexChanged.connect(self._on_aspect)
        unsubscribe = self.draft.subscribe(self._on_draft_changed)
        self.destroyed.connect(lambda *_: unsubscribe())
        self._edited()

    # -- models ------------------------------------------------------------------------------

    def set_models(
        self, models: list[tuple[str, str]], unusable: Mapping[str, str] | None = None
    ) -> None:
        """(label, model value) pairs; value "" is the bundled model. Keeps the selection.

        `unusable` maps values to why they cannot be used: those stay listed, marked and
        greyed out, so a saved choice is not lost without a word, and Generate refuses them.
        """
        current = self.model_value()
        self._unusable = dict(unusable or {})
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        items = self.model_combo.model()
        for label, value in models:
            problem = self._unusable.get(value, "")
            self.model_combo.addItem(f"⚠ {label} (unusable)" if problem else label, value)
            at = self.model_combo.count() - 1
            tip = value or "the model that ships with ldstudio"
            self.model_combo.setItemData(
                at, f"Unusable: {problem}" if problem else tip, Qt.ItemDataRole.ToolTipRole
            )
            if problem and isinstance(items, QStandardItemModel):
                item = items.item(at)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
        self.model_combo.blockSignals(False)
        self.select_model(current)
        # The same index may now hold another model, or the old one may be gone: no signal.
        self._edited()

    def model_problem(self) -> str:
        """Why the chosen model cannot be used ("" when it can)."""
        return self._unusable.get(self.model_value(), "")

    def model_value(self) -> str:
        data = self.model_combo.currentData()
        return data if isinstance(data, str) else ""

    def model_for_name(self, name: str) -> str | None:
        """The listed model another tool's name means (file or folder name, any case), or None.

        "ldstudio-shapes" is the bundled model (value ""), "v1-5-pruned" a listed
        v1-5-pruned.safetensors.
        """
        wanted = name.strip().lower()
        for index in range(self.model_combo.count()):
            value = self.model_combo.itemData(index)
            if not isinstance(value, str):
                continue
            names = {Path(value).name, Path(value).stem} if value else {self.bundled_name}
            if wanted in {n.lower() for n in names}:
                return value
        return None

    def select_model(self, value: str) -> None:
        index = self.model_combo.findData(value)
        self.model_combo.setCurrentIndex(max(index, 0))

    def set_model_info(self, info: ModelInfo | None) -> None:
        self._info = info
        self._on_aspect()

    @property
    def native_size(self) -> int:
        return self._info.native_size if self._info else FALLBACK_NATIVE

    # -- values ------------------------------------------------------------------------------

    def commit_typed(self) -> None:
        """Take the text still being typed in any field (Ctrl+Enter does not leave it), so a
        job never runs with other numbers than the form shows."""
        for spin in self.findChildren(QAbstractSpinBox):
            spin.interpretText()

    def params(self, prompt: str, negative_prompt: str) -> GenerationParams:
        """The parameters shown with these prompts as they are, validated: no styles (the
        draft's describe its own prompts). ValueError (naming the field) when invalid."""
        edited = self.unchecked()
        return edited.replace(prompt=prompt, negative_prompt=negative_prompt, styles=()).validate()

    def unchecked(self) -> GenerationParams:
        """The draft with the seed & prompt options shown, not validated (a Random variation
        seed stands as the one shown)."""
        return self.options_box.apply(self.draft.unchecked())

    def current(self, *, draw: bool = False) -> GenerationParams:
        """The draft (its prompts too) with the options shown, validated; `draw`: a job's, with
        a Random variation seed drawn now. ValueError (naming the field) when invalid."""
        return self.options_box.apply(self.draft.unchecked(), draw=draw).validate()

    def set_params(self, params: GenerationParams) -> None:
        """Show `params`. A concrete seed selects Fixed. The prompts are the prompt pane's:
        when it shows the ones of `params` (Reuse all put them there) they come with their
        styles; other prompts (a refine's) leave the draft's prompts and styles as they are."""
        values = self.draft.values
        shown = (params.prompt.strip(), params.negative_prompt.strip())
        if shown != (values.prompt, values.negative_prompt):
            own = self.draft.unchecked()
            params = params.replace(
                prompt=own.prompt, negative_prompt=own.negative_prompt, styles=own.styles
            )
        self.draft.load(params)
        self.options_box.set_params(params)

    def set_restore_note(self, text: str) -> None:
        """Say under the form what restoring parameters did not apply ("" hides it)."""
        self.restore_note.setText(text)
        self.restore_note.setToolTip(text)
        self.restore_note.setVisible(bool(text))

    def set_extras(self, vae: str, loras: tuple[tuple[str, float], ...]) -> None:
        """The VAE and LoRAs the next images use (chosen in the model manager)."""
        self.draft.update(vae=vae, loras=loras)

    def _show_extras(self) -> None:
        values = self.draft.values
        parts = []
        if values.vae:
            parts.append(f"VAE {Path(values.vae).stem}")
        parts += [f"LoRA {Path(path).stem} ×{weight:g}" for path, weight in values.loras]
        self.extras_label.setText("With " + ", ".join(parts) if parts else "")
        self.extras_label.setVisible(bool(parts))

    def set_seed(self, seed: int) -> None:
        self.draft.update(seed_mode="fixed", seed=seed)

    def set_last_seed(self, seed: int) -> None:
        """The seed of the most recent job, used by "Reuse last"."""
        self.draft.update(last_seed=seed)

    def chosen_size(self) -> tuple[int | None, int | None]:
        if self.aspect_combo.currentIndex() == NATIVE:
            return None, None
        return self.width_spin.value(), self.height_spin.value()

    # -- reactions ---------------------------------------------------------------------------

    def _aspect_for(self, width: int, height: int) -> int:
        for index, (_, ratio) in enumerate(ASPECTS):
            if ratio and (width, height) == self._preset_size(ratio):
                return index
        return CUSTOM

    def _preset_size(self, ratio: tuple[int, int]) -> tuple[int, int]:
        # Keep the model's native pixel count; round each side to the multiple of 8.
        area = self.native_size**2
        w = math.sqrt(area * ratio[0] / ratio[1])
        h = area / w
        low, high = SIZE_RANGE

        def snap(value: float) -> int:
            snapped = round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE
            return max(low, min(high, snapped))

        return snap(w), snap(h)

    def set_canvas_size(self, text: str | None) -> None:
        """While the canvas tab is shown its jobs run at the canvas's size, not these fields':
        they are disabled and `text` says so (None: the fields are the size again)."""
        self._canvas_size = text
        self.aspect_combo.setEnabled(text is None)
        self.size_range_label.setText(text if text is not None else self._size_allowed_text)
        self._on_aspect()

    def _show_first_pass_size(self) -> None:
        width, height = self.chosen_size()
        if width is None or height is None:
            width = height = self.native_size
        self.hires_box.set_first_pass_size((width, height))

    def _on_aspect(self) -> None:
        index = self.aspect_combo.currentIndex()
        ratio = ASPECTS[index][1]
        editable = index == CUSTOM and self._canvas_size is None
        for spin in (self.width_spin, self.height_spin):
            spin.setEnabled(editable)
            spin.blockSignals(True)
        if index == NATIVE:
            self.width_spin.setValue(self.native_size)
            self.height_spin.setValue(self.native_size)
        elif ratio is not None:
            w, h = self._preset_size(ratio)
            self.width_spin.setValue(w)
            self.height_spin.setValue(h)
        for spin in (self.width_spin, self.height_spin):
            spin.blockSignals(False)
        self._edited()

    # -- the draft -----------------------------------------------------------------------------

    def _shown(self) -> dict[str, Any]:
        """The draft's fields as the widgets show them."""
        native = self.aspect_combo.currentIndex() == NATIVE
        return {
            "model": self.model_value(),
            "scheduler": self.scheduler_combo.currentText(),
            "steps": self.steps_spin.value(),
            "guidance_scale": round(self.guidance_spin.value(), 2),
            "guidance_cutoff": round(self.cutoff_spin.value(), 2),
            "width": None if native else self.width_spin.value(),
            "height": None if native else self.height_spin.value(),
            "seed_mode": DRAFT_SEED_MODES[self.seed_mode.currentIndex()],
            "seed": int(self.seed_spin.value()),
            "batch_size": self.batch_size_spin.value(),
            "batch_count": self.batch_count_spin.value(),
            "preview_method": self.preview_combo.currentText(),
            "preview_interval": self.preview_interval_spin.value(),
        }

    def _edited(self) -> None:
        """A widget changed: write what the widgets show into the draft."""
        if self._showing:
            return
        values = self.draft.values
        changes = {k: v for k, v in self._shown().items() if getattr(values, k) != v}
        if not changes or not self.draft.update(**changes):
            self._on_changed()  # else the draft's notification did

    def _options_edited(self) -> None:
        shown = self.options_box.apply(GenerationParams(prompt=""))
        changes = {name: getattr(shown, name) for name in OPTION_FIELDS}
        if not self.draft.update(**changes):
            self._on_changed()  # else the draft's notification did

    def _show_options(self) -> None:
        values = self.draft.values
        shown = self.options_box.apply(GenerationParams(prompt=""))
        if any(getattr(shown, name) != getattr(values, name) for name in OPTION_FIELDS):
            self.options_box.set_params(self.draft.unchecked())

    def _on_draft_changed(self, names: frozenset[str]) -> None:
        if names.intersection(OPTION_FIELDS):
            self._show_options()
            self._on_changed()
        if names & FIELDS:
            self._show(names)
            # What a widget cannot show (a model not listed, a guidance past its range) is
            # written back as it shows it: the draft never holds what the form does not show.
            self._edited()

    def _show(self, names: frozenset[str]) -> None:
        """Set the widgets for the changed draft fields; a widget that shows its field's value
        already is left alone (a size typed under Custom stays Custom)."""
        values = self.draft.values
        self._showing = True
        try:
            if "model" in names and self.model_value() != values.model:
                self.select_model(values.model)
            if "scheduler" in names:
                self.scheduler_combo.setCurrentText(values.scheduler)
            if "steps" in names:
                self.steps_spin.setValue(values.steps)
                self._limit_interval()
            if "guidance_scale" in names:
                self.guidance_spin.setValue(values.guidance_scale)
            if "guidance_cutoff" in names:
                self.cutoff_spin.setValue(values.guidance_cutoff)
            if names & {"vae", "loras"}:
                self._show_extras()
            if names & {"width", "height"} and self.chosen_size() != (values.width, values.height):
                self._show_size(values.width, values.height)
            if names & {"seed_mode", "seed", "last_seed"}:
                self.seed_mode.setCurrentIndex(DRAFT_SEED_MODES.index(values.seed_mode))
                seed = values.seed
                if values.seed_mode == "reuse last" and values.last_seed is not None:
                    seed = values.last_seed
                self.seed_spin.setValue(seed)
            if "batch_size" in names:
                self.batch_size_spin.setValue(values.batch_size)
            if "batch_count" in names:
                self.batch_count_spin.setValue(values.batch_count)
            if "preview_method" in names:
                self.preview_combo.setCurrentText(values.preview_method)
            if "preview_interval" in names:
                self.preview_interval_spin.setValue(values.preview_interval)
        finally:
            self._showing = False

    def _show_size(self, width: int | None, height: int | None) -> None:
        if width is None or height is None:
            self.aspect_combo.setCurrentIndex(NATIVE)
            return
        # Presets follow the model's native size, unknown until its info arrives: a concrete
        # size shown as a preset now would change with it (512 → 64 at start-up).
        aspect = self._aspect_for(width, height) if self._info else CUSTOM
        self.aspect_combo.blockSignals(True)
        self.aspect_combo.setCurrentIndex(aspect)
        self.aspect_combo.blockSignals(False)
        self.width_spin.setValue(width)
        self.height_spin.setValue(height)
        self._on_aspect()

    def _limit_interval(self) -> None:
        # An interval longer than the job would mean no preview at all: make it impossible.
        # (Steps typed out of range are refused below; they must not empty the interval's range.)
        steps = self.steps_spin.value()
        self.preview_interval_spin.setMaximum(max(STEPS_RANGE[0], min(STEPS_RANGE[1], steps)))

    def _on_changed(self) -> None:
        """Show what follows from the values: enabled fields, problems, hints."""
        self._show_first_pass_size()
        self.seed_spin.setEnabled(self.seed_mode.currentIndex() == FIXED)
        self._show_problems()
        self.preview_interval_spin.setEnabled(self.preview_combo.currentText() != "none")
        self.preview_combo.setToolTip(PREVIEW_TIPS.get(self.preview_combo.currentText(), ""))
        self.hint_label.setText(" ".join(self._hints()))
        self.hint_label.setVisible(bool(self.hint_label.text()))
        self.changed.emit()

    def problems(self) -> list[str]:
        """The CLI's message for each field whose typed value is not allowed."""
        # The options box names its own fields' problems as the draft does: each said once.
        found = list(self.draft.problems().values()) + self.options_box.problems()
        return list(dict.fromkeys(found))

    def _show_problems(self) -> None:
        problems = self.problems()
        self.problem_label.setText("\n".join(problems))
        self.problem_label.setVisible(bool(problems))

    def _hints(self) -> list[str]:
        hints = []
        scheduler = self.scheduler_combo.currentText()
        steps, guidance = self.steps_spin.value(), self.guidance_spin.value()
        if scheduler == "LCM" and (steps > 8 or guidance > 2):
            hints.append(
                "LCM is meant for LCM-distilled models with 4–8 steps and guidance 1–2; "
                "other models give blurry images with it."
            )
        if guidance <= 1.0:
            hints.append("Guidance ≤ 1 ignores the negative prompt.")
        if self.seed_mode.currentIndex() == REUSE_LAST and self.draft.values.last_seed is None:
            hints.append("No job has run yet, so the first seed is random.")
        w, h = self.chosen_size()
        if w and h and w * h > 4 * self.native_size**2:
            hints.append(
                f"{w}×{h} is far above the model's native {self.native_size}×{self.native_size}: "
                "expect repeated subjects and long runs."
            )
        count = self.batch_size_spin.value() * self.batch_count_spin.value()
        if count > 1:
            hints.append(f"This job makes {count} images.")
        return hints


def _range_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("allowed_range")
    label.setToolTip(f"Allowed: {text}")
    return label


def model_label(path: Path) -> str:
    return f"{path.name}  ({path.parent})"
