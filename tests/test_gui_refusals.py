"""Nothing is silently changed or silently dropped (pytest-qt; issue 12, point 4)."""

from __future__ import annotations

import pytest
from gui_support import fake_backend, make_window, qt_loop, set_prompt
from PySide6.QtWidgets import QLabel

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT
from ldstudio.core.params import field_problem
from ldstudio.core.paths import bundled_model_dir
from ldstudio.engine.fake import FakeBackend
from ldstudio.qt.params_pane import CUSTOM

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def type_into(qtbot, spin, text: str) -> None:
    spin.setFocus()
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), text)
    spin.interpretText()


def cli_error(capsys, *args: str) -> str:
    model = str(bundled_model_dir())
    assert main(["generate", "a prompt", *args, "--model", model]) == EXIT_BAD_INPUT
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "typed", "cli_args"),
    [
        ("width", "8192", ["--size", "8192x512"]),
        ("width", "13", ["--size", "13x512"]),
        ("height", "100", ["--size", "512x100"]),
        ("steps", "99999", ["--steps", "99999"]),
        ("steps", "0", ["--steps", "0"]),
    ],
)
def test_typed_sizes_and_steps_stay_as_typed_and_are_refused_as_the_cli_does(
    make_window, fake_backend: FakeBackend, qtbot, capsys, field, typed, cli_args
) -> None:
    window = make_window(fake_backend)
    pane = window.params_pane
    pane.aspect_combo.setCurrentIndex(CUSTOM)
    spin = {"width": pane.width_spin, "height": pane.height_spin, "steps": pane.steps_spin}[field]
    type_into(qtbot, spin, typed)
    pane.commit_typed()  # what Generate does first
    assert spin.value() == int(typed) and spin.cleanText() == typed  # not 816, 1000, 64, 1…

    message = field_problem(field, int(typed))
    assert message and message in cli_error(capsys, *cli_args)  # the CLI's own words
    assert pane.problem_label.isVisibleTo(window) and message in pane.problem_label.text()

    set_prompt(window, "a lighthouse")
    submitted: list[object] = []
    window.controller.queue_changed.connect(lambda: submitted.append(1))
    window.generate_action.trigger()
    assert submitted == [] and window.controller.jobs() == []
    assert window.preview_pane.error_label.text() == f"Cannot generate: {message}"
    assert spin.cleanText() == typed  # still what was typed, for the user to correct

    type_into(qtbot, spin, {"steps": "20"}.get(field, "512"))
    assert pane.problem_label.isHidden()


def test_the_allowed_ranges_are_shown_beside_the_fields(make_window, fake_backend) -> None:
    window = make_window(fake_backend)
    texts = [label.text() for label in window.params_pane.findChildren(QLabel, "allowed_range")]
    assert "1–150" in texts
    assert "multiples of 8 from 64 to 4096 px" in texts
    steps = window.params_pane.steps_spin
    steps.setValue(150)
    steps.stepBy(1)  # the arrows stay inside the range
    assert steps.value() == 150
