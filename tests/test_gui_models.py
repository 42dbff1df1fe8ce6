"""The model manager: real folders of real (header-only) files, scanned in the background."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gui_support import fake_backend, generate, make_window, qt_loop
from PySide6.QtCore import Qt

from ldstudio.core.events import JobFinished
from ldstudio.core.models import ModelFolderStore
from ldstudio.qt.model_manager import COL_FAMILY, COL_NAME, COL_STATUS, ModelManager

pytestmark = pytest.mark.gui
__all__ = ["fake_backend", "make_window", "qt_loop"]  # fixtures used by name

SCAN_TIMEOUT_MS = 30_000
U = "model.diffusion_model."


def write_safetensors(
    path: Path, tensors: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None
) -> Path:
    """A valid safetensors file of fp16 zeros with the given key names and shapes."""
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in tensors.items():
        size = int(np.prod(shape)) * 2
        header[name] = {
            "dtype": "F16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


def checkpoint(path: Path, family: str = "sd1") -> Path:
    context = {"sd1": 768, "sd2": 1024}[family]
    text = (
        "cond_stage_model.transformer.text_model.final_layer_norm.weight"
        if family == "sd1"
        else "cond_stage_model.model.ln_final.weight"
    )
    return write_safetensors(
        path,
        {
            U + "input_blocks.0.0.weight": (8, 4, 3, 3),
            U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (8, context),
            "first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3),
            "first_stage_model.decoder.conv_out.weight": (3, 8, 3, 3),
            text: (context,),
        },
    )


def vae(path: Path) -> Path:
    return write_safetensors(
        path, {"encoder.conv_in.weight": (8, 3, 3, 3), "decoder.conv_out.weight": (3, 8, 3, 3)}
    )


def lora(path: Path) -> Path:
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    return write_safetensors(
        path, {key + ".lora_down.weight": (4, 768), key + ".lora_up.weight": (8, 4)}
    )


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """An A1111-style folder: checkpoints, a VAE, a LoRA, a truncated file and a pickle."""
    root = tmp_path / "webui" / "models"
    checkpoint(root / "Stable-diffusion" / "dreamy.safetensors")
    checkpoint(root / "Stable-diffusion" / "sd2base.safetensors", "sd2")
    vae(root / "VAE" / "vae-ft-mse.safetensors")
    lora(root / "Lora" / "inkstyle.safetensors")
    truncated = checkpoint(root / "Stable-diffusion" / "broken.safetensors")
    truncated.write_bytes(truncated.read_bytes()[:-100])
    (root / "Stable-diffusion" / "old.ckpt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    return root


@pytest.fixture
def manager(qtbot, qt_loop, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModelManager:
    # Never scan the machine's real Hugging Face cache from a test.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    dialog = ModelManager()
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def add_and_scan(qtbot, dialog: ModelManager, folder: Path) -> list[Any]:
    with qtbot.waitSignal(dialog.scan_finished, timeout=SCAN_TIMEOUT_MS) as blocker:
        assert dialog.add_folder(folder)
    return list(blocker.args[0])


def row_of(dialog: ModelManager, name: str) -> int:
    names = [e.name for e in dialog.table_model.entries]
    return names.index(name)


def cell(dialog: ModelManager, name: str, column: int, role: int = 0) -> Any:
    model = dialog.table_model
    return model.data(model.index(row_of(dialog, name), column), role)


def test_hundreds_of_files_fill_progressively_in_the_background(
    qtbot, manager: ModelManager, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    for i in range(300):
        checkpoint(folder / f"model{i:03d}.safetensors")
    with qtbot.waitSignal(manager.scan_finished, timeout=SCAN_TIMEOUT_MS) as blocker:
        assert manager.add_folder(folder)
        # add_folder returned at once: the scan runs on an executor thread.
        assert manager.scanning
        assert manager.table_model.rowCount() == 0
    entries = blocker.args[0]
    assert len(entries) == 300
    assert manager.table_model.rowCount() == 300
    assert manager.batches > 1, "the table should fill in several batches, not at the end"
    assert all(e.status == "ok" and e.family == "sd1" for e in entries)
    assert "300 model files" in manager.progress.text()
    assert manager.rescan_button.isEnabled()


def test_errors_and_unsafe_pickles_are_shown_not_hidden(
    qtbot, manager: ModelManager, library: Path
) -> None:
    entries = add_and_scan(qtbot, manager, library)
    assert {e.name for e in entries} == {
        "dreamy",
        "sd2base",
        "vae-ft-mse",
        "inkstyle",
        "broken",
        "old",
    }
    assert cell(manager, "broken", COL_STATUS) == "error"
    tooltip = cell(manager, "broken", COL_STATUS, Qt.ItemDataRole.ToolTipRole)
    assert "broken.safetensors" in tooltip and "truncated" in tooltip
    assert cell(manager, "old", COL_STATUS) == "unsafe (pickle)"
    assert cell(manager, "dreamy", COL_STATUS) == "ok"
    assert cell(manager, "dreamy", COL_FAMILY) == "SD 1.x"
    assert "with problems" in manager.progress.text()

    assert manager.select_path(library / "Stable-diffusion" / "broken.safetensors")
    assert "is truncated" in manager.detail.toPlainText()
    assert not manager.use_button.isEnabled()
    assert manager.select_path(library / "Stable-diffusion" / "old.ckpt")
    detail = manager.detail.toPlainText()
    assert "pickles" in detail and "can run any code" in detail
    # No converter injected: converting is not offered.
    assert not manager.convert_button.isEnabled()


def test_at_the_default_size_the_model_table_gets_the_height_and_columns_fit(
    qtbot, manager: ModelManager, library: Path
) -> None:
    for i in range(4):
        checkpoint(library / "Stable-diffusion" / f"extra{i}.safetensors", "sd2")
    entries = add_and_scan(qtbot, manager, library)
    assert len(entries) == 10
    assert manager.size().toTuple() == (1100, 680)
    qtbot.waitUntil(lambda: manager.table.viewport().height() > 0)
    table = manager.table
    # Every row shows: the folder list (one entry) and the LoRA box no longer take the height.
    assert table.viewport().height() >= 10 * table.rowHeight(0)
    assert table.height() > manager.folder_list.height() * 2
    assert manager.folder_list.height() <= 5 * (manager.folder_list.fontMetrics().lineSpacing() + 4)
    # The family column fits "SD 2.x (epsilon, 512 px)" and its own header, uncut.
    header = table.horizontalHeader()
    assert cell(manager, "sd2base", COL_FAMILY) == "SD 2.x (epsilon, 512 px)"
    assert header.sectionSize(COL_FAMILY) >= table.sizeHintForColumn(COL_FAMILY)
    assert header.sectionSize(COL_FAMILY) >= header.sectionSizeHint(COL_FAMILY)
    assert header.sectionSize(COL_NAME) >= table.sizeHintForColumn(COL_NAME)


def test_adding_a_folder_ends_with_what_the_scan_found_in_it(
    qtbot, manager: ModelManager, library: Path
) -> None:
    with qtbot.waitSignal(manager.scan_finished, timeout=SCAN_TIMEOUT_MS):
        assert manager.add_folder(library)
        assert manager.message.text() == f"Added {library.resolve()}; scanning…"
    # dreamy, sd2base, the VAE and the LoRA are usable; broken and old.ckpt are not.
    assert manager.message.text() == f"Added {library.resolve()}: 6 model file(s), 4 usable."
    with qtbot.waitSignal(manager.scan_finished, timeout=SCAN_TIMEOUT_MS):
        assert manager.add_folder(library)
    assert manager.message.text() == (
        f"{library.resolve()} is already in the list: 6 model file(s), 4 usable."
    )
    assert ModelFolderStore.load().folders == [str(library.resolve())]


def test_folders_default_and_variant_are_saved(
    qtbot, manager: ModelManager, library: Path, tmp_path: Path
) -> None:
    add_and_scan(qtbot, manager, library)
    assert ModelFolderStore.load().folders == [str(library.resolve())]

    assert not manager.add_folder(tmp_path / "missing")
    assert "does not exist" in manager.message.text()

    dreamy = library / "Stable-diffusion" / "dreamy.safetensors"
    manager.select_path(dreamy)
    with qtbot.waitSignal(manager.default_changed) as blocker:
        manager.default_button.click()
    assert blocker.args == [str(dreamy)]
    assert ModelFolderStore.load().default == str(dreamy)
    assert cell(manager, "dreamy", COL_NAME) == "dreamy.safetensors  (default)"

    sd2 = library / "Stable-diffusion" / "sd2base.safetensors"
    manager.select_path(sd2)
    assert manager.variant_combo.count() == 3  # SD 2.x epsilon, v-prediction, SD-Turbo
    manager.variant_combo.setCurrentIndex(manager.variant_combo.findData("sd2-v"))
    manager.variant_button.click()
    assert ModelFolderStore.load().variant_for(sd2) == "sd2-v"
    assert cell(manager, "sd2base", COL_FAMILY) == "SD 2.x (v-prediction, 768 px)"
    # A fresh manager (a restart) shows the saved choices after its scan.
    again = ModelManager()
    qtbot.addWidget(again)
    with qtbot.waitSignal(again.scan_finished, timeout=SCAN_TIMEOUT_MS):
        again.rescan()
    assert cell(again, "sd2base", COL_FAMILY) == "SD 2.x (v-prediction, 768 px)"
    assert cell(again, "dreamy", COL_NAME) == "dreamy.safetensors  (default)"

    manager.folder_list.setCurrentRow(0)
    with qtbot.waitSignal(manager.scan_finished, timeout=SCAN_TIMEOUT_MS):
        manager.remove_folder_button.click()
    assert ModelFolderStore.load().folders == []
    assert manager.table_model.rowCount() == 0
    assert library.is_dir(), "removing a folder never touches its files"


def test_broken_store_file_is_kept_and_not_overwritten(
    qtbot, qt_loop, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    store_file = ModelFolderStore.file()
    store_file.parent.mkdir(parents=True, exist_ok=True)
    store_file.write_text("{ hand-edited, broken", encoding="utf-8")
    dialog = ModelManager()
    qtbot.addWidget(dialog)
    assert "not valid JSON" in dialog.message.text()
    assert not dialog.add_folder(library)
    assert "Not saved" in dialog.message.text()
    assert store_file.read_text(encoding="utf-8") == "{ hand-edited, broken"


def test_use_model_vae_and_loras_emit_what_the_window_needs(
    qtbot, manager: ModelManager, library: Path
) -> None:
    add_and_scan(qtbot, manager, library)
    dreamy = library / "Stable-diffusion" / "dreamy.safetensors"
    manager.select_path(dreamy)
    with qtbot.waitSignal(manager.model_chosen) as chosen:
        manager.use_button.click()
    assert chosen.args == [str(dreamy)]

    with qtbot.assertNotEmitted(manager.model_chosen):
        manager.select_path(library / "Stable-diffusion" / "old.ckpt")
        manager.use_selected()
    assert "cannot be used" in manager.message.text()

    vae_path = library / "VAE" / "vae-ft-mse.safetensors"
    manager.select_path(vae_path)
    with qtbot.waitSignal(manager.extras_changed) as blocker:
        manager.vae_button.click()
    assert blocker.args == [str(vae_path), ()]

    lora_path = library / "Lora" / "inkstyle.safetensors"
    manager.select_path(lora_path)
    with qtbot.waitSignal(manager.extras_changed) as blocker:
        manager.lora_button.click()
    assert blocker.args == [str(vae_path), ((str(lora_path), 1.0),)]
    with qtbot.waitSignal(manager.extras_changed) as blocker:
        manager.lora_table.cellWidget(0, 1).setValue(0.8)
    assert blocker.args == [str(vae_path), ((str(lora_path), 0.8),)]

    manager.lora_table.setCurrentCell(0, 0)
    with qtbot.waitSignal(manager.extras_changed) as blocker:
        manager.remove_lora_button.click()
    assert blocker.args == [str(vae_path), ()]
    with qtbot.waitSignal(manager.extras_changed) as blocker:
        manager.vae_combo.setCurrentIndex(0)
    assert blocker.args == ["", ()]


class Boom:
    """Unpickling this would create a file: the converter must refuse it."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.target, "w"))


def test_convert_asks_first_and_shows_the_refusal(
    qtbot, qt_loop, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    from ldstudio.engine.checkpoints import convert_to_safetensors

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    folder = tmp_path / "pickles"
    folder.mkdir()
    good = folder / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2, 2)}}, good)
    evil = folder / "evil.ckpt"
    created = tmp_path / "pwned.txt"
    evil.write_bytes(pickle.dumps({"w": Boom(str(created))}))

    calls: list[Path] = []

    def converter(path: Path) -> Path:
        calls.append(path)
        return convert_to_safetensors(path)

    dialog = ModelManager(converter=converter)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.scan_finished, timeout=SCAN_TIMEOUT_MS):
        dialog.add_folder(folder)

    answers = [False]
    monkeypatch.setattr(dialog, "confirm", lambda title, text: answers.pop(0))
    dialog.select_path(good)
    assert dialog.convert_button.isEnabled()
    dialog.convert_button.click()
    assert calls == [], "declining the confirmation converts nothing"

    answers.append(True)
    with qtbot.waitSignal(dialog.scan_finished, timeout=SCAN_TIMEOUT_MS) as blocker:
        dialog.convert_button.click()
    assert "Wrote" in dialog.message.text()
    listed = {e.path.name: e for e in blocker.args[0]}
    assert listed["plain.safetensors"].kind == "unknown"  # a bare tensor, listed after rescan
    assert (folder / "plain.safetensors").is_file()
    assert good.is_file(), "the original is kept"
    # Both are named "plain": the Name column tells the two files apart by their extension.
    model = dialog.table_model
    names = [
        model.data(model.index(row, COL_NAME))
        for row, entry in enumerate(model.entries)
        if entry.name == "plain"
    ]
    assert sorted(names) == ["plain.ckpt", "plain.safetensors"]

    answers.append(True)
    dialog.select_path(evil)
    dialog.convert_button.click()
    qtbot.waitUntil(lambda: "refused" in dialog.message.text(), timeout=SCAN_TIMEOUT_MS)
    assert "evil.ckpt" in dialog.message.text()
    assert not created.exists(), "the malicious pickle ran"
    assert not (folder / "evil.safetensors").exists()
    qtbot.waitUntil(lambda: dialog.convert_button.isEnabled(), timeout=SCAN_TIMEOUT_MS)


def test_converting_a_non_checkpoint_shows_the_clis_explanation_not_torchs_advice(
    qtbot, qt_loop, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    from ldstudio.app import convert_checkpoint
    from ldstudio.cli import main
    from ldstudio.cli.common import EXIT_FAILED

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    folder = tmp_path / "downloads"
    folder.mkdir()
    noise = folder / "random.ckpt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    assert main(["models", "convert", str(noise)]) == EXIT_FAILED
    cli_text = capsys.readouterr().err.strip().removeprefix("error: ")

    dialog = ModelManager(converter=convert_checkpoint)  # what app.py injects
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.scan_finished, timeout=SCAN_TIMEOUT_MS):
        dialog.add_folder(folder)
    monkeypatch.setattr(dialog, "confirm", lambda title, text: True)
    dialog.select_path(noise)
    dialog.convert_button.click()
    assert not dialog.convert_button.isEnabled()  # until the conversion ends
    qtbot.waitUntil(lambda: dialog.convert_button.isEnabled(), timeout=SCAN_TIMEOUT_MS)
    shown = dialog.message.text()
    # PyTorch's advice is the unsafe load ldstudio exists to avoid: never passed on.
    assert "weights_only" not in shown and "will likely succeed" not in shown
    assert f"{noise}: refused: torch's tensors-only loader cannot read it" in shown
    assert shown == f"Not converted: {cli_text}"
    assert not (folder / "random.safetensors").exists()


def test_model_info_for_single_files_follows_the_variant(tmp_path: Path) -> None:
    from ldstudio.qt.model_manager import read_any_model_info

    sd1 = checkpoint(tmp_path / "a.safetensors")
    assert read_any_model_info(sd1).native_size == 512
    sd2 = checkpoint(tmp_path / "b.safetensors", "sd2")
    assert read_any_model_info(sd2, "sd2-v").native_size == 768
    assert read_any_model_info(sd2).latent_text(768, 512) == "latent 96×64×4 for a 768×512 image"
    pickled = tmp_path / "a.ckpt"
    pickled.write_bytes(b"not opened")
    with pytest.raises(ValueError, match=r"a\.ckpt: \.ckpt files are Python pickles"):
        read_any_model_info(pickled)


# -- in the window (phase 2 wiring) -------------------------------------------------------------


def test_window_lists_scanned_models_and_applies_manager_choices(
    make_window, fake_backend, qtbot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    dreamy = library / "Stable-diffusion" / "dreamy.safetensors"
    store = ModelFolderStore(folders=[str(library)], default=str(dreamy))
    store.save()
    window = make_window(fake_backend)
    combo = window.params_pane.model_combo
    qtbot.waitUntil(lambda: combo.findData(str(dreamy)) >= 0, timeout=SCAN_TIMEOUT_MS)
    # Bundled model first, then the loadable checkpoints only; the default is preselected.
    assert combo.itemData(0) == ""
    listed = {combo.itemData(i) for i in range(combo.count())}
    assert str(library / "Stable-diffusion" / "sd2base.safetensors") in listed
    assert str(library / "Stable-diffusion" / "broken.safetensors") not in listed
    assert str(library / "Stable-diffusion" / "old.ckpt") not in listed
    assert window.params_pane.model_value() == str(dreamy)
    qtbot.waitUntil(lambda: window.params_pane.native_size == 512, timeout=SCAN_TIMEOUT_MS)

    titles = [action.text() for action in window.menuBar().actions()]
    assert "&Models" in titles and "&Settings" in titles
    manager = window.open_model_manager()
    qtbot.waitUntil(lambda: not manager.scanning, timeout=SCAN_TIMEOUT_MS)
    sd2 = library / "Stable-diffusion" / "sd2base.safetensors"
    manager.select_path(sd2)
    manager.use_button.click()
    assert window.params_pane.model_value() == str(sd2)
    qtbot.waitUntil(lambda: window.params_pane.native_size == 512, timeout=SCAN_TIMEOUT_MS)
    # A variant chosen in the manager moves the native size and presets at once, no rescan.
    manager.variant_combo.setCurrentIndex(manager.variant_combo.findData("sd2-v"))
    manager.variant_button.click()
    qtbot.waitUntil(lambda: window.params_pane.native_size == 768, timeout=SCAN_TIMEOUT_MS)

    vae_path = library / "VAE" / "vae-ft-mse.safetensors"
    lora_path = library / "Lora" / "inkstyle.safetensors"
    # Made for SD 2.x like the model chosen above: the window checks before queueing, as the
    # CLI does, and refuses an SD 1.x LoRA on an SD 2.x model (the engine would, after loading).
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    write_safetensors(
        lora_path, {key + ".lora_down.weight": (4, 1024), key + ".lora_up.weight": (8, 4)}
    )
    manager.select_path(vae_path)
    manager.vae_button.click()
    manager.select_path(lora_path)
    manager.lora_button.click()
    manager.lora_table.cellWidget(0, 1).setValue(0.6)
    window.params_pane.cutoff_spin.setValue(0.5)
    window.prompt_pane.prompt_edit.setPlainText("a lighthouse")
    params = window.current_params()
    assert params.model == str(sd2)
    assert params.vae == str(vae_path)
    assert params.loras == ((str(lora_path), 0.6),)
    assert params.guidance_cutoff == 0.5
    assert "LoRA inkstyle ×0.6" in window.params_pane.extras_label.text()

    outcome = generate(qtbot, window, "a lighthouse")
    assert isinstance(outcome, JobFinished)
    (record,) = outcome.records
    assert record.params.vae == str(vae_path)
    assert record.params.loras == ((str(lora_path), 0.6),)
    assert record.params.guidance_cutoff == 0.5


def test_the_manager_shows_inpainting_models_as_such(tmp_path: Path) -> None:
    from ldstudio.core.models.entries import ModelEntry
    from ldstudio.qt.model_manager import family_text

    def entry(**changes: Any) -> ModelEntry:
        return ModelEntry(tmp_path / "m", "m", "checkpoint", tmp_path, 1, **changes)

    assert family_text(entry(family="sd1", variant="sd1")) == "SD 1.x"
    assert family_text(entry(family="sd1", variant="sd1", inpainting=True)) == "SD 1.x · inpainting"
    assert family_text(entry(family="sdxl", inpainting=True)) == "sdxl · inpainting"
