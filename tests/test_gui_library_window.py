"""The library inside the main window: drop or open an image, reconcile at start (pytest-qt)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import fake_backend, generate, make_window, qt_loop
from library_support import A1111_TEXT, png_with_text
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from ldstudio.core.events import JobFinished
from ldstudio.core.library import LibraryFilter
from ldstudio.engine.fake import FakeBackend

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name


def drop(target, path: Path) -> QDropEvent:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    buttons, keys = Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, mime, buttons, keys)
    QApplication.sendEvent(target, enter)
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, buttons, keys)
    QApplication.sendEvent(target, event)
    return event


def test_dropping_an_image_on_the_prompt_restores_its_parameters(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path: Path, monkeypatch
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a: asked.append(a[2]) or QMessageBox.StandardButton.Yes
    )
    window = make_window(fake_backend)
    image = png_with_text(tmp_path / "from-a1111.png", {"parameters": A1111_TEXT})
    event = drop(window.prompt_pane.prompt_edit.viewport(), image)
    assert event.isAccepted()
    qtbot.waitUntil(lambda: window.prompt_pane.prompt().startswith("a lighthouse at dusk"))
    assert "AUTOMATIC1111" in asked[0]
    params = window.current_params()
    assert (params.seed, params.steps, params.scheduler) == (965400086, 28, "DPM++ 2M Karras")


def test_file_open_image_explains_missing_metadata(
    make_window, fake_backend: FakeBackend, qtbot, tmp_path: Path, monkeypatch
) -> None:
    told: list[str] = []
    plain = png_with_text(tmp_path / "plain.png", {})
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(plain), ""))
    monkeypatch.setattr(QMessageBox, "information", lambda *a: told.append(a[2]))
    window = make_window(fake_backend)
    open_action = next(
        a for a in window.menuBar().actions()[0].menu().actions() if a.text() == "&Open image…"
    )
    open_action.trigger()
    qtbot.waitUntil(lambda: bool(told))
    assert "plain.png: no generation metadata found" in told[0]


def test_generated_images_are_in_the_library_and_searchable(
    make_window, fake_backend: FakeBackend, qtbot
) -> None:
    window = make_window(fake_backend)
    for prompt in ("a red fox", "a blue whale"):
        assert isinstance(generate(qtbot, window, prompt), JobFinished)
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 2)
    window.library_pane.search_edit.setText("whale")
    window.library_pane.apply_filter()
    qtbot.waitUntil(lambda: window.library_model.rowCount() == 1)
    qtbot.waitUntil(lambda: window.library_model.entry_at(0) is not None)
    assert window.library_model.entry_at(0).prompt == "a blue whale"
    assert window.store.count(LibraryFilter(text="fox")) == 1
