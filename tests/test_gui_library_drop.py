"""Opening or dropping images: parameters read off-thread and offered for restore (pytest-qt)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from library_support import A1111_TEXT, exif_image, png_with_text, tool_images
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import ReadResult
from ldstudio.qt.metadata_drop import (
    MetadataDropFilter,
    MetadataReader,
    apply_to_panes,
    describe,
    image_paths,
    merge_params,
    offer_restore,
)
from ldstudio.qt.params_pane import ParamsPane
from ldstudio.qt.prompt_pane import PromptPane

pytestmark = pytest.mark.gui


@pytest.fixture
def reader() -> Iterator[MetadataReader]:
    r = MetadataReader()
    yield r
    r.close()


def read(qtbot, reader: MetadataReader, path: Path) -> ReadResult:
    with qtbot.waitSignal(reader.read_finished, timeout=5000) as got:
        reader.open_file(path)
    assert got.args[0] == path
    return got.args[1]


def test_every_tool_is_read_off_thread(qtbot, reader, tmp_path: Path) -> None:
    for source, path in tool_images(tmp_path).items():
        result = read(qtbot, reader, path)
        assert result.source == source, path
    jpeg = exif_image(tmp_path / "a1111.jpg", A1111_TEXT, "JPEG")
    webp = exif_image(tmp_path / "a1111.webp", A1111_TEXT, "WEBP")
    assert read(qtbot, reader, jpeg).fields["seed"] == 965400086
    assert read(qtbot, reader, webp).fields["steps"] == 28


def test_bad_files_get_clear_messages(qtbot, reader, tmp_path: Path) -> None:
    cases = {
        tmp_path / "gone.png": "gone.png: no such file",
        (tmp_path / "text.png"): "not a readable image",
        (tmp_path / "notes.txt"): "notes.txt: cannot read parameters from .txt; allowed: .png",
    }
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "notes.txt").write_text("hello")
    for path, expected in cases.items():
        with qtbot.waitSignal(reader.read_failed) as failed:
            reader.open_file(path)
        assert failed.args[0].startswith("Cannot read parameters: ")
        assert expected in failed.args[0]


def test_merge_takes_exact_params_or_lays_fields_over_the_current_ones(
    qtbot, reader, tmp_path
) -> None:
    base = GenerationParams(prompt="old", model="/models/mine", seed=1, steps=30, batch_count=4)
    images = tool_images(tmp_path)
    ours = read(qtbot, reader, images["ldstudio"])
    params, notes = merge_params(ours, base)
    assert params == ours.params.replace(batch_size=1, batch_count=1) and notes == []

    a1111 = read(qtbot, reader, images["a1111"])
    params, notes = merge_params(a1111, base)
    assert params.prompt.startswith("a lighthouse at dusk")
    assert params.negative_prompt.startswith("blurry, low quality")
    assert (params.seed, params.steps, params.guidance_scale) == (965400086, 28, 6.5)
    assert params.scheduler == "DPM++ 2M Karras" and (params.width, params.height) == (512, 768)
    assert params.model == "/models/mine"  # another tool's checkpoint name is not loadable
    assert any("model 'v1-5-pruned'" in n for n in notes)

    odd = ReadResult(
        source="a1111", fields={"prompt": "odd", "width": 513, "steps": 500, "seed": 4}
    )
    params, notes = merge_params(odd, base)
    assert (params.prompt, params.seed, params.width, params.steps) == ("odd", 4, None, 30)
    assert any("width: 513 is not a multiple of 8" in n for n in notes)
    assert any(n.startswith("steps: 500") for n in notes)
    assert any("scheduler" in n for n in notes if n.startswith("not in the image"))


def test_restoring_fills_the_panes(qtbot, reader, tmp_path) -> None:
    prompt_pane, params_pane = PromptPane(), ParamsPane()
    qtbot.addWidget(prompt_pane)
    qtbot.addWidget(params_pane)
    result = read(qtbot, reader, tool_images(tmp_path)["comfyui"])
    params, _notes = merge_params(result, params_pane.params("", ""))
    apply_to_panes(params, prompt_pane, params_pane)
    assert prompt_pane.prompt() == "a castle on a hill"
    assert prompt_pane.negative_prompt() == "ugly"
    shown = params_pane.params(prompt_pane.prompt(), prompt_pane.negative_prompt())
    assert (shown.seed, shown.steps, shown.guidance_scale) == (42, 25, 7.5)
    assert shown.scheduler == "DPM++ 2M Karras" and (shown.width, shown.height) == (640, 448)


def test_dropping_a_file_on_the_window_reads_it(qtbot, reader, tmp_path) -> None:
    from PySide6.QtWidgets import QPlainTextEdit, QVBoxLayout

    window = QWidget()
    qtbot.addWidget(window)
    editor = QPlainTextEdit(window)  # takes drops itself: it would paste the file's URL
    QVBoxLayout(window).addWidget(editor)
    drops = MetadataDropFilter(window, reader)
    assert window.acceptDrops()
    target = editor.viewport()
    image = png_with_text(tmp_path / "dropped.png", {"parameters": A1111_TEXT})
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "readme.txt")), QUrl.fromLocalFile(str(image))])
    assert image_paths(mime) == [image]
    # Qt delivers a drop to the widget that accepted the drag's enter event.
    enter = QDragEnterEvent(
        QPoint(5, 5),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(5, 5),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(reader.read_finished) as got, qtbot.waitSignal(drops.dropped):
        QApplication.sendEvent(target, event)
    assert event.isAccepted()
    assert got.args[1].source == "a1111"
    assert editor.toPlainText() == ""  # the drop was ours, not pasted as text

    text_only = QMimeData()
    text_only.setText("not a file")
    ignored = QDropEvent(
        QPointF(5, 5),
        Qt.DropAction.CopyAction,
        text_only,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    assert drops.eventFilter(target, ignored) is False


def test_offer_restore_asks_or_explains(qtbot, monkeypatch, tmp_path, reader) -> None:
    shown: list[tuple] = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *a: shown.append(a) or QMessageBox.StandardButton.Yes
    )
    monkeypatch.setattr(QMessageBox, "information", lambda *a: shown.append(a))
    parent = QWidget()
    qtbot.addWidget(parent)
    images = tool_images(tmp_path)
    assert offer_restore(parent, images["invokeai"], read(qtbot, reader, images["invokeai"]))
    assert "generation metadata from InvokeAI" in shown[0][2]
    assert "Prompt: a bowl of fruit" in shown[0][2] and "seed 3141" in shown[0][2]
    assert not offer_restore(parent, images["none"], read(qtbot, reader, images["none"]))
    assert shown[1][1] == "No parameters found"
    assert "plain.png: no generation metadata found" in shown[1][2]
    assert describe(ReadResult(source="none")) == "no generation metadata found"


def test_refcount_guard_keeps_true_and_none_alive() -> None:
    # A fresh process: thousands of emits and None-returning data() calls must not abort it
    # (PySide6 6.12 + CPython 3.11 drop a reference to True / None on each).
    code = (
        "from PySide6.QtCore import QObject, Signal\n"
        "from ldstudio.qt import refcount_guard\n"
        "from ldstudio.qt.refcount_guard import _NoneModel\n"
        "class O(QObject):\n    s = Signal(object)\n"
        "refcount_guard.install()\n"
        "o, model = O(), _NoneModel()\nindex = model.index(0)\n"
        "for i in range(20000):\n    o.s.emit(i)\n    index.data()\n"
        "print('alive')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "alive"
