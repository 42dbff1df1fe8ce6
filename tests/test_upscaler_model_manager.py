"""The model manager lists upscalers with architecture and scale, shows why the ones it cannot
run are unsupported, refuses pickles, and offers no model actions for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gui_support import qt_loop
from PySide6.QtCore import Qt
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

from ldstudio.engine.upscalers.compact import Compact
from ldstudio.engine.upscalers.rrdb import RRDBNet
from ldstudio.qt.model_manager import COL_FAMILY, COL_KIND, COL_STATUS, ModelManager

pytestmark = pytest.mark.gui
__all__ = ["qt_loop"]  # fixture used by name

SCAN_TIMEOUT_MS = 30_000


def write(module: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


class _Boom:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


@pytest.fixture
def upscalers(tmp_path: Path) -> Path:
    models = tmp_path / "webui" / "models"
    write(Compact(3, 3, 16, 2, 4), models / "ESRGAN" / "4x-test.safetensors")
    write(RRDBNet(3, 3, 16, 1, ups=2), models / "ESRGAN" / "4x-rrdb.safetensors")
    swinir = {
        "conv_first.weight": (16, 3, 3, 3),
        "layers.0.residual_group.blocks.0.norm1.weight": (16,),
        "conv_before_upsample.0.weight": (16, 16, 3, 3),
        "upsample.0.weight": (64, 16, 3, 3),
        "conv_last.weight": (3, 16, 3, 3),
    }
    (models / "SwinIR").mkdir()
    save_numpy(
        {k: np.zeros(s, dtype=np.float16) for k, s in swinir.items()},
        str(models / "SwinIR" / "2x-swinir.safetensors"),
    )
    torch.save({"x": _Boom(tmp_path / "pwned")}, str(models / "ESRGAN" / "evil.pth"))
    return models


@pytest.fixture
def manager(qtbot, qt_loop, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModelManager:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    dialog = ModelManager()
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def cell(dialog: ModelManager, name: str, column: int, role: int = 0) -> Any:
    model = dialog.table_model
    row = [e.name for e in model.entries].index(name)
    return model.data(model.index(row, column), role)


def test_upscalers_are_listed_with_architecture_and_scale(
    qtbot, manager: ModelManager, upscalers: Path, tmp_path: Path
) -> None:
    with qtbot.waitSignal(manager.scan_finished, timeout=SCAN_TIMEOUT_MS) as blocker:
        assert manager.add_folder(upscalers.parent)
    assert {e.name for e in blocker.args[0]} == {"4x-test", "4x-rrdb", "2x-swinir", "evil"}
    assert cell(manager, "4x-test", COL_KIND) == "upscaler"
    assert cell(manager, "4x-test", COL_FAMILY) == "Compact ×4"
    assert cell(manager, "4x-rrdb", COL_FAMILY) == "ESRGAN ×4"
    assert cell(manager, "4x-test", COL_STATUS) == "ok"
    assert cell(manager, "2x-swinir", COL_FAMILY) == "SwinIR ×2"
    assert cell(manager, "2x-swinir", COL_STATUS) == "unsupported"
    tooltip = cell(manager, "2x-swinir", COL_STATUS, Qt.ItemDataRole.ToolTipRole)
    assert "2x-swinir.safetensors" in tooltip and "spandrel" in tooltip
    assert cell(manager, "evil", COL_STATUS) == "unsafe (pickle)"
    assert "4 model file(s), 2 usable" in manager.message.text()

    # A usable upscaler: details say what it is; it is no model to generate with.
    assert manager.select_path(upscalers / "ESRGAN" / "4x-test.safetensors")
    assert "Upscaler: Compact ×4" in manager.detail.toPlainText()
    for button in (manager.use_button, manager.default_button, manager.variant_button):
        assert not button.isEnabled()
    assert not manager.vae_button.isEnabled() and not manager.lora_button.isEnabled()
    with qtbot.assertNotEmitted(manager.model_chosen):
        manager.use_selected()  # a double-click
    assert "it is an upscaler (Compact ×4), not a model to generate with" in (
        manager.message.text()
    )
    with qtbot.assertNotEmitted(manager.default_changed):
        manager.set_default_selected()
    assert manager.store.default == ""

    assert manager.select_path(upscalers / "SwinIR" / "2x-swinir.safetensors")
    assert "spandrel" in manager.detail.toPlainText()
    manager.use_selected()
    assert "spandrel" in manager.message.text()

    assert manager.select_path(upscalers / "ESRGAN" / "evil.pth")
    assert "ldstudio models convert" in manager.detail.toPlainText()
    assert not (tmp_path / "pwned").exists()
