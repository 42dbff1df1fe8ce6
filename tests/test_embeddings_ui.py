"""Embeddings where users see them: the model manager and `ldstudio models list` list them
with family and vectors, `ldstudio info` shows the ones an image's `TI hashes` names and
whether they are here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gui_support import qt_loop
from PIL import Image, PngImagePlugin
from safetensors.numpy import save_file

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_OK
from ldstudio.qt.model_manager import COL_FAMILY, COL_KIND, COL_STATUS, ModelManager

__all__ = ["qt_loop"]  # fixture used by name

SCAN_TIMEOUT_MS = 30_000


@pytest.fixture
def embeddings(tmp_path: Path) -> Path:
    """An A1111 `embeddings/` folder: an SD 1.x and an SDXL embedding and an old pickle."""
    folder = tmp_path / "webui" / "embeddings"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    save_file(
        {"emb_params": rng.standard_normal((8, 768)).astype(np.float32)}, folder / "neg.safetensors"
    )
    save_file(
        {
            "clip_l": rng.standard_normal((1, 768)).astype(np.float32),
            "clip_g": rng.standard_normal((1, 1280)).astype(np.float32),
        },
        folder / "xlstyle.safetensors",
    )
    (folder / "old.pt").write_bytes(b"\x80\x04never opened")
    return folder


def cell(dialog: ModelManager, name: str, column: int) -> Any:
    model = dialog.table_model
    row = [e.name for e in model.entries].index(name)
    return model.data(model.index(row, column))


def test_the_model_manager_lists_embeddings_with_family_and_vectors(
    qtbot: Any, qt_loop: Any, embeddings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    manager = ModelManager()
    qtbot.addWidget(manager)
    manager.show()
    with qtbot.waitSignal(manager.scan_finished, timeout=SCAN_TIMEOUT_MS):
        assert manager.add_folder(embeddings)
    assert cell(manager, "neg", COL_KIND) == "embedding"
    assert cell(manager, "neg", COL_FAMILY) == "SD 1.x · 8 vectors"
    assert cell(manager, "xlstyle", COL_FAMILY) == "SDXL · 1 vector"
    assert cell(manager, "old", COL_STATUS) == "unsafe (pickle)"
    assert manager.select_path(embeddings / "neg.safetensors")
    detail = manager.detail.toPlainText()
    assert "Embedding: 8 vector(s)" in detail and "write neg (or embedding:neg)" in detail
    assert not manager.use_button.isEnabled() and not manager.lora_button.isEnabled()
    with qtbot.assertNotEmitted(manager.model_chosen):
        manager.use_selected()  # a double-click
    assert "it is a textual-inversion embedding; write neg in a prompt" in manager.message.text()


def test_models_list_shows_embeddings(embeddings: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--no-hf-cache", "--folder", str(embeddings)]) == EXIT_OK
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line}
    assert "embedding" in lines["neg"] and "SD 1.x, 8 vectors" in lines["neg"]
    assert "SDXL, 1 vector " in lines["xlstyle"]
    assert "unsafe" in lines["old"] and "`ldstudio models convert" in out
    assert main(["models", "list", "--json", "--no-hf-cache", "--folder", str(embeddings)]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert (listed["neg"]["kind"], listed["neg"]["vectors"]) == ("embedding", 8)


def test_info_shows_the_embeddings_an_image_names(
    embeddings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "add-folder", str(embeddings)]) == EXIT_OK
    capsys.readouterr()
    short = hashlib.sha256((embeddings / "neg.safetensors").read_bytes()).hexdigest()[:12]
    text = (
        "a cat\nNegative prompt: neg, easynegative\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
        f'Seed: 1, Size: 512x512, TI hashes: "neg: {short}, easynegative: c74b4e810b03"'
    )
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    image = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(image, pnginfo=info)
    assert main(["info", str(image)]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"embedding: neg ({short}): {embeddings / 'neg.safetensors'}" in out
    assert "embedding: easynegative (c74b4e810b03): not found" in out
    assert "warning: TI hashes: embedding 'easynegative' (c74b4e810b03) not found" in out
    assert "TI hashes:" not in out.replace("warning: TI hashes:", "")  # shown once, resolved
