"""The engine dialog (Settings → Engine): where jobs run — this computer or an ldstudio server —
and this computer's engine options (device, precision, memory, compilation); GUI thread.

The dialog edits an `EngineOptions` and a `ServerTarget` and never touches torch or the
network: what the machine has (devices, the engine's resolved choices) comes in as an
`EngineEnvironment` that `app.py` fills from the engine thread. Choices the machine cannot do
are refused inline, before the engine sees them; while the engine is still starting, choices
that depend on the machine wait for it. With a server, the server's own options apply and
this computer's are kept for switching back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.options import DEVICES, DTYPES, SWITCHES, EngineOptions
from ldstudio.core.settings import ServerTarget, Settings

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
STARTING_TEXT = (
    "The engine is still starting: which devices this machine has is not known yet. Choices "
    "that depend on them are checked when it is ready."
)
COMPILE_NOTE = (
    "The first image after each start compiles the UNet: a one-time warm-up of a minute or "
    "more, shown in the status bar. torch keeps a compile cache, so later starts are quicker."
)
SERVER_TOOLTIPS = {
    "url": "The address `ldstudio serve` listens on, e.g. http://gpu-box:7860",
    "user": "The user name of the server's --api-auth (empty when it runs without one)",
    "password": (
        "The password of the server's --api-auth. It is stored in ldstudio's settings file "
        "(settings.json in the data folder, readable by your user only) like the other "
        "settings, and never written to the log."
    ),
}
SERVER_NOTE = (
    "Jobs run on the server with its own device and options; previews, cancel and the queue "
    "work as here, and finished images are saved into this computer's library. The model "
    "list shows the server's models."
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


# The window's view of the engine: None until the engine has found its devices.
EnvironmentSource = Callable[[], EngineEnvironment | None]
# How often an open dialog asks again while the engine is starting (a few seconds at most).
ENVIRONMENT_POLL_MS = 250


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


def unchecked(options: EngineOptions, environment: EngineEnvironment | None) -> dict[str, str]:
    """Field name → a choice only the engine's devices can confirm, while they are unknown.

    Saving such a choice unchecked is what let `device: cuda` be saved on a CPU-only machine:
    the engine then refused it at the next job, where the notice was easily missed.
    """
    if environment is not None:
        return {}
    found: dict[str, str] = {}
    names = {"cuda": "a CUDA GPU", "mps": "an Apple MPS device"}
    if options.device in names:
        found["device"] = (
            f"Whether torch sees {names[options.device]} is known once the engine is ready; "
            "OK waits until then."
        )
    if options.cpu_offload == "on" and options.device not in ("cpu", "mps"):
        found["cpu_offload"] = (
            "CPU offload needs a CUDA GPU; whether there is one is known once the engine is "
            "ready. OK waits until then."
        )
    return found


def reset_impossible_options(settings: Settings, environment: EngineEnvironment) -> str:
    """Set the saved options this machine cannot run back to auto; say what changed, or "".

    For options saved before their check (on another machine, or by an older ldstudio): left
    as they are they would be refused at every start. The caller saves `settings`.
    """
    options = load_engine_options(settings)
    found = problems(options, environment)
    if not found:
        return ""
    values = options.to_dict()
    values.update({name: "auto" for name in found if name in CHOICES})
    store_engine_options(settings, EngineOptions.from_dict(values))
    changes = "; ".join(
        f"{name} {getattr(options, name)} → auto ({why.rstrip('.')})" for name, why in found.items()
    )
    return f"Saved engine options reset: {changes}. Settings → Engine options… to change them."


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
    engine_changed = Signal(object)  # ServerTarget, or None for this computer; when changed

    def __init__(
        self,
        settings: Settings,
        environment: EngineEnvironment | EnvironmentSource | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """`environment` is what the engine found, or a callable that returns it once known
        (None while the engine starts): the dialog then checks the choices when it arrives."""
        super().__init__(parent)
        self.setWindowTitle("Engine")
        self.settings = settings
        self._source: EnvironmentSource | None = None
        self.environment: EngineEnvironment | None
        if isinstance(environment, EngineEnvironment) or environment is None:
            self.environment = environment
        else:
            self._source = environment
            self.environment = environment()
        self.initial = load_engine_options(settings)
        self.initial_target = settings.server_target()
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

        self.where_box = self._where_box(settings)
        self.local_box = QWidget()
        self.local_box.setLayout(form)
        form.setContentsMargins(0, 0, 0, 0)

        layout = QVBoxLayout(self)
        layout.addWidget(self.where_box)
        layout.addWidget(self.running_label)
        layout.addWidget(self.local_box)
        layout.addWidget(self.restart_label)
        layout.addWidget(self.buttons)
        self._poll = QTimer(self)
        self._poll.setInterval(ENVIRONMENT_POLL_MS)
        self._poll.timeout.connect(self._ask_environment)
        self._show_environment()
        self.set_options(self.initial)
        if self._source is not None and self.environment is None:
            self._poll.start()

    def _where_box(self, settings: Settings) -> QGroupBox:
        box = QGroupBox("Where jobs run")
        self.local_radio = QRadioButton("&This computer")
        self.server_radio = QRadioButton("An ldstudio &server")
        self.local_radio.setToolTip("Jobs run on this computer's engine, with the options below")
        self.server_radio.setToolTip("Jobs run on a computer running `ldstudio serve`")
        self._where = QButtonGroup(box)
        for button in (self.local_radio, self.server_radio):
            self._where.addButton(button)
        self.url_edit = QLineEdit(settings.server_url)
        self.url_edit.setPlaceholderText("http://host:7860")
        self.user_edit = QLineEdit(settings.server_user)
        self.user_edit.setPlaceholderText("none")
        self.password_edit = QLineEdit(settings.server_password)
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("none")
        self.server_problem = QLabel()
        self.server_problem.setWordWrap(True)
        self.server_problem.setStyleSheet("color: #c81e1e;")
        self.server_problem.setVisible(False)
        server_note = QLabel(SERVER_NOTE)
        server_note.setWordWrap(True)
        server_note.setEnabled(False)  # drawn dimmed: an explanation, not a control
        fields = QFormLayout()
        for label, edit, name in (
            ("Server &URL", self.url_edit, "url"),
            ("U&ser", self.user_edit, "user"),
            ("Pass&word", self.password_edit, "password"),
        ):
            edit.setToolTip(SERVER_TOOLTIPS[name])
            caption = QLabel(label)
            caption.setBuddy(edit)
            caption.setToolTip(SERVER_TOOLTIPS[name])
            fields.addRow(caption, edit)
        for edit in (self.url_edit, self.user_edit, self.password_edit):
            edit.textChanged.connect(self._update)
        fields.addRow(self.server_problem)
        fields.addRow(server_note)
        self.server_fields = QWidget()
        self.server_fields.setLayout(fields)
        column = QVBoxLayout(box)
        column.addWidget(self.local_radio)
        column.addWidget(self.server_radio)
        column.addWidget(self.server_fields)
        (self.server_radio if settings.uses_server else self.local_radio).setChecked(True)
        self.server_radio.toggled.connect(self._update)  # after the first check: no update yet
        return box

    def target(self) -> ServerTarget | None:
        """The server chosen (not yet validated), or None for this computer."""
        if not self.server_radio.isChecked():
            return None
        return ServerTarget(
            self.url_edit.text().strip(), self.user_edit.text(), self.password_edit.text()
        )

    def server_problem_text(self) -> str:
        target = self.target()
        if target is None:
            return ""
        try:
            target.validate()
        except ValueError as exc:
            return str(exc)
        return ""

    def set_environment(self, environment: EngineEnvironment | None) -> None:
        """What the engine found; the choices are checked against it at once."""
        self.environment = environment
        self._show_environment()
        self._update()

    def _ask_environment(self) -> None:
        assert self._source is not None
        environment = self._source()
        if environment is not None:
            self._poll.stop()
            self.set_environment(environment)

    def _show_environment(self) -> None:
        environment = self.environment
        if environment is None:
            self.running_label.setText(STARTING_TEXT)
        elif environment.running:
            self.running_label.setText(f"The engine runs now with: {environment.running}")
        else:
            self.running_label.setText("")

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

    def unchecked(self) -> dict[str, str]:
        return unchecked(self.options(), self.environment)

    def _update(self, *_: object) -> None:
        remote = self.server_radio.isChecked()
        self.server_fields.setEnabled(remote)
        self.local_box.setEnabled(not remote)
        self.running_label.setEnabled(not remote)
        server_problem = self.server_problem_text()
        self.server_problem.setText(server_problem)
        self.server_problem.setVisible(bool(server_problem))
        self.restart_label.setText(
            "The next job runs on the server; a running job finishes where it started."
            if remote
            else "Changes apply from the next image: the engine reloads the model with them."
        )
        options = self.options()
        # With a server, this computer's options are kept for later, not checked now.
        errors = {} if remote else problems(options, self.environment)
        waiting = {} if remote else unchecked(options, self.environment)
        warnings = warnings_for(options, self.environment)
        for name, note in self.notes.items():
            text = errors.get(name) or waiting.get(name) or warnings.get(name, "")
            note.setStyleSheet("color: #c81e1e;" if name in errors else "color: #a06e00;")
            note.setText(text)
            note.setVisible(bool(text))
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(not errors and not waiting and not server_problem)
        if server_problem:
            ok.setToolTip("Fix the server address first")
        elif errors:
            ok.setToolTip("Fix the options marked in red first")
        elif waiting:
            ok.setToolTip("Waiting for the engine to find this machine's devices")
        else:
            ok.setToolTip("")
        self._fit_height()

    def _fit_height(self) -> None:
        """Grow to the height the wrapped notes need at the current width.

        A top-level window's minimum size ignores height-for-width, so a note that appears
        would otherwise squeeze its neighbours (the dimmed compile note ran into the next row).
        """
        layout = self.layout()
        assert layout is not None  # set in __init__ before the first _update
        layout.activate()
        needed = self.heightForWidth(self.width())
        self.setMinimumHeight(max(needed, layout.minimumSize().height()))
        if needed > self.height():
            self.resize(self.width(), needed)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit_height()  # narrower means more wrapped lines

    def accept(self) -> None:
        target = self.target()
        if self.server_problem_text():
            return  # OK is disabled then; this guards a keyboard accept as well
        if target is None and (self.problems() or self.unchecked()):
            return
        if target is None:
            options = self.options().validate()
            store_engine_options(self.settings, options)
        self.settings.set_server_target(target)
        if target != self.initial_target:
            self.engine_changed.emit(target)
        if target is None and options != self.initial:
            self.options_changed.emit(options)
        super().accept()
