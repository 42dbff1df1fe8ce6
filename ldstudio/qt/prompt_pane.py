"""PromptPane: prompt and negative prompt editors, Generate/Cancel, recent prompts; GUI thread.

The editors write their text (stripped) into a `Draft` as it is typed, and show the draft's
prompts when they change there (parameters restored, reused or loaded at start). A1111 syntax
mistakes are wavy-underlined and named under each box (`PromptHighlighter`), and the emphasis
mode the prompts are weighted with is named when it is not Original.

Each box has a token counter (`63/75 · 2 chunks`): the chunk layout the engine will encode,
styles applied, from the selected model's own BPE files (`core.prompts.tokenizer`, no
transformers here). It is recounted a moment after typing stops, so a long prompt never
slows the typing; a count is a few milliseconds even for a 2,000-character prompt.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ldstudio.core.draft import Draft
from ldstudio.core.prompts import apply_styles, counter_text
from ldstudio.core.prompts.counter import counted_prompts, counter_tooltip, model_embeddings
from ldstudio.core.prompts.tokenizer import folder_tokenizer, tokenizer_folder
from ldstudio.qt.prompt_syntax import PromptHighlighter, problems_text
from ldstudio.qt.style_picker import StylePicker

PROMPTS = frozenset({"prompt", "negative_prompt"})
# What the counters count besides the prompts: the model's tokenizer, the steps prompt
# editing is placed in, the styles applied.
COUNTED = PROMPTS | {"model", "steps", "picked_styles"}
COUNT_DELAY_MS = 150  # after the last keystroke


class PromptPane(QWidget):
    generate_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None, *, draft: Draft | None = None) -> None:
        super().__init__(parent)
        self.draft = draft if draft is not None else Draft()
        self._showing = False  # the editors are being set from the draft
        self._recent: list[str] = []
        self._recent_pos = -1

        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setObjectName("prompt")
        self.prompt_edit.setPlaceholderText("Describe the picture, e.g. a red circle on a blue …")
        self.prompt_edit.setToolTip(
            "What to draw. Ctrl+Enter generates; Ctrl+Up/Ctrl+Down step through recent prompts."
        )
        self.prompt_edit.setTabChangesFocus(True)
        self.negative_edit = QPlainTextEdit()
        self.negative_edit.setObjectName("negative")
        self.negative_edit.setPlaceholderText("What to avoid (optional)")
        self.negative_edit.setToolTip("Negative prompt: what the image should not contain.")
        self.negative_edit.setTabChangesFocus(True)
        self.negative_edit.setMaximumHeight(70)

        self.highlighters = {
            "prompt": PromptHighlighter(self.prompt_edit),
            "negative": PromptHighlighter(self.negative_edit),
        }
        self.notes = {name: _note_label(f"{name}_syntax") for name in self.highlighters}
        self.emphasis_label = QLabel()
        self.emphasis_label.setObjectName("emphasis_mode")
        self.emphasis_label.setStyleSheet("color: palette(link);")
        self.emphasis_label.hide()
        self.counters = {name: _counter_label(f"{name}_tokens") for name in self.highlighters}
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(COUNT_DELAY_MS)
        self._count_timer.timeout.connect(self.count_tokens)
        self.style_picker = StylePicker(self.draft)

        prompt_label = QLabel("&Prompt")
        prompt_label.setBuddy(self.prompt_edit)
        negative_label = QLabel("&Negative prompt")
        negative_label.setBuddy(self.negative_edit)

        self.recent_button = QToolButton()
        self.recent_button.setText("Recent")
        self.recent_button.setToolTip("Recent prompts (Ctrl+R)")
        self.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self.recent_button)
        self.recent_button.setMenu(self.recent_menu)

        self.generate_button = QPushButton("&Generate")
        self.generate_button.setToolTip("Queue a generation with these settings (Ctrl+Enter)")
        self.generate_button.setDefault(True)
        self.generate_button.clicked.connect(self.generate_requested)
        self.cancel_button = QPushButton("&Cancel")
        self.cancel_button.setToolTip("Stop the running generation at its next step (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)

        header = QHBoxLayout()
        header.addWidget(prompt_label)
        header.addStretch(1)
        header.addWidget(self.counters["prompt"])
        header.addWidget(self.recent_button)
        negative_header = QHBoxLayout()
        negative_header.addWidget(negative_label)
        negative_header.addStretch(1)
        negative_header.addWidget(self.counters["negative"])
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.prompt_edit, 3)
        layout.addWidget(self.style_picker)
        prompt_notes = QHBoxLayout()
        prompt_notes.addWidget(self.notes["prompt"], 1)
        prompt_notes.addWidget(self.emphasis_label)
        layout.addLayout(prompt_notes)
        layout.addLayout(negative_header)
        layout.addWidget(self.negative_edit, 1)
        layout.addWidget(self.notes["negative"])
        layout.addLayout(buttons)

        # whatsThis says what a shortcut does: the window's F1 list reads it from there.
        for keys, slot, what in (
            ("Ctrl+Up", lambda: self._step_recent(+1), "Previous recent prompt"),
            ("Ctrl+Down", lambda: self._step_recent(-1), "Next recent prompt"),
        ):
            shortcut = QShortcut(QKeySequence(keys), self.prompt_edit)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.setWhatsThis(what)
            shortcut.activated.connect(slot)
        recent_shortcut = QShortcut(QKeySequence("Ctrl+R"), self)
        recent_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        recent_shortcut.setWhatsThis("Recent prompts menu")
        recent_shortcut.activated.connect(self.recent_button.showMenu)
        self.set_recent([])
        # The editors take Ctrl+Enter as a line break before any window shortcut sees it.
        self.prompt_edit.installEventFilter(self)
        self.negative_edit.installEventFilter(self)
        self._show_draft(PROMPTS)
        self.count_tokens()  # at once: the counters are never blank
        self.prompt_edit.textChanged.connect(self._edited)
        self.negative_edit.textChanged.connect(self._edited)
        unsubscribe = self.draft.subscribe(self._show_draft)
        self.destroyed.connect(lambda *_: unsubscribe())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            self.generate_requested.emit()
            return True
        return super().eventFilter(watched, event)

    # -- values ------------------------------------------------------------------------------

    def prompt(self) -> str:
        return self.prompt_edit.toPlainText().strip()

    def negative_prompt(self) -> str:
        return self.negative_edit.toPlainText().strip()

    def set_prompts(self, prompt: str, negative: str) -> None:
        # Replace through the cursor, not setPlainText, so Ctrl+Z brings the old text back.
        for edit, text in ((self.prompt_edit, prompt), (self.negative_edit, negative)):
            cursor = edit.textCursor()
            cursor.select(cursor.SelectionType.Document)
            cursor.insertText(text)
            edit.setTextCursor(cursor)

    def set_emphasis(self, name: str) -> None:
        """Name the emphasis mode the weights follow ("" or "Original": nothing shown)."""
        shown = name not in ("", "Original")
        self.emphasis_label.setText(f"{name} weights" if shown else "")
        self.emphasis_label.setToolTip(
            f"(word:1.2) weights follow the {name} emphasis mode (More seed & prompt options)"
            if shown
            else ""
        )
        self.emphasis_label.setVisible(shown)

    def syntax_problems(self, box: str = "prompt") -> str:
        """The caption under a box ("prompt" or "negative"): its first syntax problem."""
        return self.notes[box].text()

    def _show_syntax(self) -> None:
        for name, highlighter in self.highlighters.items():
            text = problems_text(highlighter.problems())
            self.notes[name].setText(text)
            self.notes[name].setToolTip(text)
            self.notes[name].setVisible(bool(text))

    def token_counter(self, box: str = "prompt") -> str:
        """The counter beside a box ("prompt" or "negative"), e.g. `63/75 · 2 chunks`."""
        return self.counters[box].text()

    def count_tokens(self) -> None:
        """Count both boxes now, as the draft holds them (styles applied)."""
        self._count_timer.stop()
        values = self.draft.values
        try:
            tokenizer = folder_tokenizer(tokenizer_folder(values.model))
        except ValueError as exc:  # a damaged model folder: the engine will say so too
            for label in self.counters.values():
                label.setText("? tokens")
                label.setToolTip(f"Tokens not counted: {exc}")
            return
        prompt, negative = apply_styles(values.prompt, values.negative_prompt, values.picked_styles)
        try:
            embeddings = model_embeddings(values.model)
        except (ValueError, OSError):  # a damaged models.json or a model gone: words only
            embeddings = None
        chunks, negative_chunks = counted_prompts(
            prompt, negative, tokenizer, steps=values.steps, embeddings=embeddings
        )
        for name, counted, padded_to in (
            ("prompt", chunks, len(negative_chunks)),
            ("negative", negative_chunks, len(chunks)),
        ):
            self.counters[name].setText(counter_text(counted))
            self.counters[name].setToolTip(counter_tooltip(counted, padded_to))

    def _edited(self) -> None:
        self._show_syntax()
        if not self._showing:
            self.draft.update(prompt=self.prompt(), negative_prompt=self.negative_prompt())

    def _show_draft(self, names: frozenset[str]) -> None:
        if names & COUNTED:
            self._count_timer.start()  # restarted by each change: counted once typing pauses
        values = self.draft.values
        shown = (self.prompt(), self.negative_prompt())
        if not names & PROMPTS or shown == (values.prompt, values.negative_prompt):
            return
        self._showing = True
        try:
            self.set_prompts(values.prompt, values.negative_prompt)
        finally:
            self._showing = False
        self._edited()  # stripped, as typed text is

    def set_busy(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)

    # -- recent prompts -------------------------------------------------------------------

    def set_recent(self, prompts: list[str]) -> None:
        self._recent = list(prompts)
        self._recent_pos = -1
        self.recent_menu.clear()
        for prompt in self._recent:
            text = prompt if len(prompt) <= 70 else prompt[:67] + "…"
            action = QAction(text.replace("&", "&&").replace("\n", " "), self.recent_menu)
            action.setToolTip(prompt)
            action.triggered.connect(lambda _=False, p=prompt: self._use_recent(p))
            self.recent_menu.addAction(action)
        self.recent_button.setEnabled(bool(self._recent))

    def _use_recent(self, prompt: str) -> None:
        self.set_prompts(prompt, self.negative_prompt())
        self.prompt_edit.setFocus()

    def _step_recent(self, direction: int) -> None:
        if not self._recent:
            return
        self._recent_pos = max(-1, min(len(self._recent) - 1, self._recent_pos + direction))
        text = self._recent[self._recent_pos] if self._recent_pos >= 0 else ""
        self.set_prompts(text, self.negative_prompt())


def _counter_label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    return label


def _note_label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setStyleSheet("color: #c62828;")
    label.hide()
    return label
