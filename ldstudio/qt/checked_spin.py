"""CheckedSpinBox: an integer field that keeps what was typed and names its fault; GUI thread."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QAbstractSpinBox, QSpinBox

from ldstudio.core.params import field_problem

TYPED_LIMIT = 999_999_999  # any integer a person types is kept, right or wrong


class CheckedSpinBox(QSpinBox):
    """An integer field that keeps what was typed and says what is wrong with it.

    A plain QSpinBox refuses keys past its maximum (8192 becomes 819, then 816 px once
    snapped) and reverts values below its minimum when the field is left. This one takes any
    integer; `problem()` is the CLI's message for it (`core.params.field_problem`). The arrows
    stay within the allowed range, on multiples of `multiple`.
    """

    def __init__(self, field: str, bounds: tuple[int, int], multiple: int = 1) -> None:
        super().__init__()
        self.field = field
        self.allowed = bounds
        self.multiple = multiple
        self.setRange(-TYPED_LIMIT, TYPED_LIMIT)
        self.setSingleStep(multiple)
        self.setValue(bounds[0])

    def problem(self) -> str:
        return field_problem(self.field, self.value())

    def sizeHint(self) -> QSize:
        return self._narrowed(super().sizeHint())

    def minimumSizeHint(self) -> QSize:
        return self._narrowed(super().minimumSizeHint())

    def _narrowed(self, hint: QSize) -> QSize:
        # Qt sizes a spin box for its widest value: as wide as the allowed range needs, not as
        # wide as the ±999,999,999 it takes so that a wrong value can be typed and shown.
        metrics = self.fontMetrics()

        def width(*values: int) -> int:
            texts = (self.prefix() + self.textFromValue(v) + self.suffix() for v in values)
            return max(metrics.horizontalAdvance(text) for text in texts)

        extra = width(self.minimum(), self.maximum()) - width(*self.allowed)
        return QSize(max(hint.width() - extra, 0), hint.height())

    def stepBy(self, steps: int) -> None:
        low, high = self.allowed
        value = self.value() + steps * self.multiple
        value = round(value / self.multiple) * self.multiple
        self.setValue(max(low, min(high, value)))
        self.selectAll()

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:
        flags = QAbstractSpinBox.StepEnabledFlag.StepNone
        if self.value() < self.allowed[1]:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        if self.value() > self.allowed[0]:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        return flags
