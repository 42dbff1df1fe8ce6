"""The engine options dialog (device, precision, memory, compilation) and saving them; GUI thread.

The dialog edits an `EngineOptions` and never touches torch: what the machine has (devices,
the engine's resolved choices) comes in as an `EngineEnvironment` that `app.py` fills from the
engine thread. Choices the machine cannot do are refused inline, before the engine sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.options import DEVICES, DTYPES, SWITCHES, EngineOptions
from ldstudio.core.settings import Settings

log = logging.getLogger(__name__)

# What "auto" picks, as the engine decides it (ldstudio.engine.device / engine.performance).
AUTO_TEXT = {
    "device": "CUDA if torch sees a GPU, else Apple MPS, else the CPU",
    "dtype": "fp16 on a GPU, fp32 on the CPU",
    "channels_last": "on for CUDA, off elsewhere",
    "vae_tiling": "tiled decode only for images larger than 1536×1536",
    "attention_slicing": "on for CUDA GPUs under 8 GiB and Macs under 32 GiB of memory",
    "cpu_offload": "on for CUDA GPUs under 6 GiB",
}
TOOLTIPS = {
    "device": "Where the model runs: a CUDA GPU, Apple's MPS, or the CPU",
    "dtype": "Number precision of the weights: fp16/bf16 halve memory and are faster on GPUs",
    "sdpa": "Fused scaled-dot-product attention (faster, less memory); off = classic attention",
    "channels_last": "Memory layout that speeds up convolutions on CUDA GPUs",
    "compile_unet": "torch.compile the UNet: faster steps after a one-time warm-up",
    "vae_tiling": "Decode the image in tiles: large images fit in less memory",
    "attention_slicing": "Compute attention in slices: less memory, a little slower",
    "cpu_offload": "Keep parts of the model in RAM, moving each to the GPU when used (small GPUs)",
}
LABELS = {
    "device": "&Device",
    "dtype": "&Precision",
    "sdpa": "SDPA attention",
    "channels_last": "&channels_last",
    "compile_unet": "Compile the UNet",
    "vae_tiling": "&VAE tiling",
    "attention_slicing": "&Attention slicing",
    "cpu_offload": "CPU o&ffload",
}
COMPILE_NOTE = (
    "The first image after each start compiles the UNet: a one-time warm-up of a minute or "
    "more, shown in the status bar. torch keeps a compile cache, so later starts are quicker."
)
CHOICES: dict[str, tuple[str, ...]] = {
    "device": DEVICES,
    "dtype": DTYPES,
    "channels_last": SWITCHES,
    "vae_tiling": SWITCHES,
    "attention_slicing": SWITCHES,
    "cpu_offload": SWITCHES,
}


@dataclass(frozen=True)
class EngineEnvironment:
    """What the engine found on this machine; filled on the engine thread by app.py."""

    devices: tuple[str, ...]  # usable torch devices, e.g. ("cuda", "cpu")
    running: str = ""  # the engine's resolved choices now, e.g. "CUDA · fp16 · SDPA"


def load_engine_options(settings: Settings) -> EngineOptions:
    """The saved options; the defaults (all auto) when none are saved or they are invalid."""
    if not settings.engine_options:
        return EngineOptions()
    try:
        return EngineOptions.from_dict(dict(settings.engine_options))
    except (TypeError, ValueError) as exc:
        log.warning("ignoring saved engine options: %s", exc)
        return EngineOptions()


def store_engine_options(settings: Settings, options: EngineOptions) -> None:
    settings.engine_options = options.validate().to_dict()


def problems(options: EngineOptions, environment: EngineEnvironment | None) -> dict[str, str]:
    """Field name → why this machine cannot do it; empty when the options can run here."""
    found: dict[str, str] = {}
    try:
        options.validate()
    except ValueError as exc:
        name = str(exc).split(":", 1)[0]
        found[name] = str(exc)
    devices = environment.devices if environment is not None else None
    names = {"cuda": "CUDA GPU", "mps": "Apple MPS device"}
    if devices is not None and options.device in names and options.device not in devices:
        found["device"] = (
            f"No {names[options.device]} is available to torch here; "
            f"allowed: auto, {', '.join(devices)}."
        )
    if options.cpu_offload == "on":
        if options.device in ("cpu", "mps"):
            found["cpu_offload"] = (
                f"CPU offload needs a CUDA GPU, and the device is set to {options.device}; "
                "allowed here: auto or off."
            )
        elif devices is not None and "cuda" not in devices:
            found["cpu_offload"] = (
                "CPU offload needs a CUDA GPU, and torch finds none on this machine; "
                "allowed here: auto or off."
            )
    return found


def warnings_for(options: EngineOptions, environment: EngineEnvironment | None) -> dict[str, str]:
    """Field name → a doubtful but allowed choice, explained."""
    found: dict[str, str] = {}
    on_cpu = options.device == "cpu" or (
        options.device == "auto" and environment is not None and environment.devices == ("cpu",)
    )
    if on_cpu and options.dtype in ("fp16", "bf16"):
        found["dtype"] = f"{options.dtype} on the CPU is slow and poorly supported; fp32 is faster."
    if on_cpu and options.compile_unet:
        found["compile_unet"] = "Compiling helps little on the CPU and the warm-up is long."
    return found


class EngineOptionsDialog(QDialog):
    """Edits EngineOptions; on OK stores them in `settings` and emits `options_changed`."""

    options_changed = Signal(object)  # EngineOptions, only when different from before

    def __init__(
        self,
        settings: Settings,
        environment: EngineEnvironment | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Engine options")
        self.settings = settings
        self.environment = environment
        self.initial = load_engine_options(settings)
        self.combos: dict[str, QComboBox] = {}
        self.checks: dict[str, QCheckBox] = {}
        self.notes: dict[str, QLabel] = {}

        form = QFormLayout()
        for name in (
            "device",
            "dtype",
            "sdpa",
            "channels_last",
            "compile_unet",
            "vae_tiling",
            "attention_slicing",
            "cpu_offload",
        ):
            field: QWidget
            if name in CHOICES:
                combo = QComboBox()
                for value in CHOICES[name]:
                    text = f"auto ({AUTO_TEXT[name]})" if value == "auto" else value
                    combo.addItem(text, value)
                combo.currentIndexChanged.connect(self._update)
                self.combos[name] = combo
                field = combo
            else:
                check = QCheckBox()
                check.toggled.connect(self._update)
                self.checks[name] = check
                field = check
            field.setToolTip(TOOLTIPS[name])
            note = QLabel()
            note.setWordWrap(True)
            note.setVisible(False)
            self.notes[name] = note
            column = QVBoxLayout()
            column.setContentsMargins(0, 0, 0, 0)
            column.addWidget(field)
            column.addWidget(note)
            if name == "compile_unet":
                compile_note = QLabel(COMPILE_NOTE)
                compile_note.setWordWrap(True)
                compile_note.setEnabled(False)  # drawn dimmed: an explanation, not a control
                column.addWidget(compile_note)
            holder = QWidget()
            holder.setLayout(column)
            label = QLabel(LABELS[name])
            label.setBuddy(field)
            label.setToolTip(TOOLTIPS[name])
            form.addRow(label, holder)

        self.running_label = QLabel()
        self.running_label.setWordWrap(True)
        self.running_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if environment is not None and environment.running:
            self.running_label.setText(f"The engine runs now with: {environment.running}")
        self.restart_label = QLabel(
            "Changes apply from the next image: the engine reloads the model with them."
        )
        self.restart_label.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.defaults_button = QPushButton("All auto")
        self.defaults_button.setToolTip("Reset every option to its automatic choice")
        self.buttons.addButton(self.defaults_button, QDialogButtonBox.ButtonRole.ResetRole)
        self.defaults_button.clicked.connect(lambda: self.set_options(EngineOptions()))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.running_label)
        layout.addLayout(form)
        layout.addWidget(self.restart_label)
        layout.addWidget(self.buttons)
        self.set_options(self.initial)

    def set_options(self, options: EngineOptions) -> None:
        for name, combo in self.combos.items():
            combo.blockSignals(True)
            combo.setCurrentIndex(max(combo.findData(getattr(options, name)), 0))
            combo.blockSignals(False)
        for name, check in self.checks.items():
            check.blockSignals(True)
            check.setChecked(bool(getattr(options, name)))
            check.blockSignals(False)
        self._update()

    def options(self) -> EngineOptions:
        values: dict[str, Any] = {name: combo.currentData() for name, combo in self.combos.items()}
        values.update({name: check.isChecked() for name, check in self.checks.items()})
        return EngineOptions(**values)

    def problems(self) -> dict[str, str]:
        return problems(self.options(), self.environment)

    def _update(self, *_: object) -> None:
        options = self.options()
        errors = problems(options, self.environment)
        warnings = warnings_for(options, self.environment)
        for name, note in self.notes.items():
            text = errors.get(name) or warnings.get(name, "")
            note.setStyleSheet("color: #c81e1e;" if name in errors else "color: #a06e00;")
            note.setText(text)
            note.setVisible(bool(text))
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(not errors)
        ok.setToolTip("Fix the options marked in red first" if errors else "")

    def accept(self) -> None:
        if self.problems():
            return  # OK is disabled then; this guards a keyboard accept as well
        options = self.options().validate()
        store_engine_options(self.settings, options)
        if options != self.initial:
            self.options_changed.emit(options)
        super().accept()
