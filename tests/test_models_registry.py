"""The model registry: one scan of the model folders, reused until a rescan; models.json is
written durably and its changes invalidate the scan (no torch, no Qt)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from ldstudio.core import paths
from ldstudio.core.models import ModelEntry, ModelFolderStore, ModelRegistry
from ldstudio.core.models import registry as registry_module
from ldstudio.core.params import GenerationParams


def test_models_json_is_written_durably(
    tmp_path: Path, ldstudio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = ModelFolderStore()
    store.add_folder(tmp_path)
    store.save()
    assert synced == ["file", "folder"]  # the content before the rename, the rename after it
    saved = json.loads((ldstudio_home / "models.json").read_text(encoding="utf-8"))
    assert saved["folders"] == [str(tmp_path.resolve())]
    assert [p.name for p in ldstudio_home.iterdir()] == ["models.json"]  # no temp file left
    assert ModelFolderStore.load().folders == store.folders


def lora(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"x.lora_down.weight": np.zeros((2, 2), np.float32)}, str(path))
    return path


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[ModelFolderStore]:
    """Every scan of the model folders a registry makes."""
    made: list[ModelFolderStore] = []
    real = registry_module.scan_library

    def counted(store: ModelFolderStore, *args: Any, **kwargs: Any) -> list[ModelEntry]:
        made.append(store)
        return real(store, *args, **kwargs)

    monkeypatch.setattr(registry_module, "scan_library", counted)
    return made


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A model folder in models.json, holding one LoRA."""
    lora(tmp_path / "models" / "ink.safetensors")
    store = ModelFolderStore()
    store.add_folder(tmp_path / "models")
    store.save()
    return tmp_path / "models"


def test_one_scan_is_kept_until_invalidated(folder: Path, scans: list[ModelFolderStore]) -> None:
    registry = ModelRegistry(include_hf_cache=False)
    assert [e.name for e in registry.entries()] == ["ink"]
    lora(folder / "new.safetensors")
    assert registry.find("ink", ("lora",)).path == folder / "ink.safetensors"
    with pytest.raises(ValueError, match="'new' is neither an existing path nor a known model"):
        registry.find("new", ("lora",))  # added after the scan: seen after a rescan only
    assert len(scans) == 1
    registry.invalidate()
    assert registry.find("new", ("lora",)).path == folder / "new.safetensors"
    assert [e.name for e in registry.rescan()] == ["ink", "new"]
    assert len(scans) == 3


def test_models_json_changes_invalidate_the_shared_registry(
    folder: Path, tmp_path: Path, scans: list[ModelFolderStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ModelRegistry, "_shared", None)
    shared = ModelRegistry.shared()
    assert shared is ModelRegistry.shared()
    shared.entries()
    shared.entries()
    assert len(scans) == 1
    lora(tmp_path / "more" / "other.safetensors")
    store = ModelFolderStore.load()
    store.add_folder(tmp_path / "more")
    store.save()
    assert {e.name for e in shared.entries()} == {"ink", "other"}
    assert len(scans) == 2
    store.save()  # unchanged, but saved: scanned again
    shared.entries()
    assert len(scans) == 3
    # Another data folder (another LDSTUDIO_HOME) has other folders: never the kept scan.
    monkeypatch.setenv("LDSTUDIO_HOME", str(tmp_path / "other-home"))
    assert shared.entries() == []


def test_a_scan_overtaken_by_invalidate_is_not_kept(
    folder: Path, scans: list[ModelFolderStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(include_hf_cache=False)
    real = registry_module.scan_library

    def invalidated_meanwhile(store: ModelFolderStore, **kwargs: Any) -> list[ModelEntry]:
        entries = real(store, **kwargs)
        registry.invalidate()  # the user pressed Rescan while this scan ran
        return entries

    monkeypatch.setattr(registry_module, "scan_library", invalidated_meanwhile)
    assert [e.name for e in registry.entries()] == ["ink"]
    monkeypatch.setattr(registry_module, "scan_library", lambda store, **kw: [])
    assert registry.entries() == []


def test_threads_asking_at_once_share_one_scan(folder: Path, scans: list[ModelFolderStore]) -> None:
    registry = ModelRegistry(include_hf_cache=False)
    found: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: found.append([e.name for e in registry.entries()]))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [["ink"]] * 8
    assert len(scans) == 1


def test_jobs_with_prompt_loras_do_not_rescan(
    folder: Path, scans: list[ModelFolderStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ldstudio.engine.lora import resolve_prompt_loras

    monkeypatch.setattr(ModelRegistry, "_shared", None)
    for seed in range(5):
        params = resolve_prompt_loras(GenerationParams(prompt="a cat <lora:ink:0.5>", seed=seed))
        assert params.loras == ((str((folder / "ink.safetensors").resolve()), 0.5),)
    assert len(scans) == 1


def test_resolve_reference_and_family(folder: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(include_hf_cache=False)
    assert registry.resolve_reference("ink", ("lora",), "--lora") == folder / "ink.safetensors"
    with pytest.raises(ValueError, match=r"^--lora: model not found: .*nope.safetensors does"):
        registry.resolve_reference(str(tmp_path / "nope.safetensors"), ("lora",), "--lora")
    with pytest.raises(ValueError, match=r"^--model: 'ink' is .*, which cannot be used here"):
        registry.resolve_reference("ink", ("checkpoint",), "--model")
    assert registry.family(folder / "ink.safetensors") == ""
    assert registry.family(paths.bundled_model_dir()) == "custom"
