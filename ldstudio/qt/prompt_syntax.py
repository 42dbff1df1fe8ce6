"""PromptHighlighter: a prompt box's A1111 syntax mistakes, wavy-underlined; GUI thread.

`core.prompts.syntax_problems` finds them (an unclosed bracket, a closer with nothing to close,
a weight that is not a number); each is underlined at its character and its message is the
box's tooltip there. The scan is microseconds for a prompt, so it runs on each change; it is
done once per text and reused for every block.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint
from PySide6.QtGui import QColor, QHelpEvent, QSyntaxHighlighter, QTextCharFormat
from PySide6.QtWidgets import QPlainTextEdit, QToolTip

from ldstudio.core.prompts import Problem, syntax_problems

UNDERLINE = QColor("#d32f2f")


def _utf16(text: str, offset: int) -> int:
    """A Python string offset as Qt's (UTF-16) offset: they differ after an emoji."""
    return len(text[:offset].encode("utf-16-le")) // 2


class PromptHighlighter(QSyntaxHighlighter):
    def __init__(self, edit: QPlainTextEdit) -> None:
        super().__init__(edit.document())
        self.edit = edit
        self._text: str | None = None
        self._problems: list[tuple[int, Problem]] = []  # (UTF-16 offset, problem)
        self._format = QTextCharFormat()
        self._format.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
        self._format.setUnderlineColor(UNDERLINE)
        edit.viewport().installEventFilter(self)

    def problems(self) -> list[Problem]:
        """The problems of the box's text as it is now."""
        self._scan()
        return [problem for _at, problem in self._problems]

    def problem_at(self, position: int) -> Problem | None:
        """The problem underlined at this (Qt) character position, or None."""
        self._scan()
        for at, problem in self._problems:
            if at == position:
                return problem
        return None

    def _scan(self) -> None:
        text = self.edit.toPlainText()
        if text != self._text:
            self._text = text
            self._problems = [(_utf16(text, p.offset), p) for p in syntax_problems(text)]

    def highlightBlock(self, text: str) -> None:
        self._scan()
        start = self.currentBlock().position()
        for at, _problem in self._problems:
            if start <= at < start + max(len(text), 1):
                self.setFormat(at - start, 1, self._format)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            problem = self._problem_near(event.pos())
            if problem is not None:
                QToolTip.showText(event.globalPos(), problem.message, self.edit.viewport())
                return True
        return super().eventFilter(watched, event)

    def _problem_near(self, pos: QPoint) -> Problem | None:
        cursor = self.edit.cursorForPosition(pos)
        # The cursor falls between characters: the one under the mouse is either side.
        for position in (cursor.position(), cursor.position() - 1):
            problem = self.problem_at(position)
            if problem is not None:
                return problem
        return None


def problems_text(problems: list[Problem]) -> str:
    """One line for the box's caption: the first problem and how many more."""
    if not problems:
        return ""
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"⚠ {problems[0].message}{more}"
