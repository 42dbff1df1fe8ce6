"""The model registry: one scan of the model folders, reused until a rescan; models.json is
written durably and its changes invalidate the scan (no torch, no Qt)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ldstudio.core.models import ModelFolderStore


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
