"""`ldstudio models convert` on textual-inversion embeddings: A1111's `.pt` (nested dicts) and
the diffusers `.bin` become `.safetensors` files the scan detects as embeddings, with their
vector count; what is not a tensor is kept as text metadata, never dropped unsaid."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from ldstudio.cli import main
from ldstudio.core.models import KIND_EMBEDDING, inspect_file

torch = pytest.importorskip("torch")


def header_metadata(path: Path) -> dict[str, str]:
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return dict(json.loads(f.read(size)).get("__metadata__", {}))


def test_an_a1111_pt_embedding_converts_to_a_detected_embedding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    source = folder / "pekora.pt"
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": torch.randn(8, 768)},
            "name": "pekora",
            "step": 19500,
            "sd_checkpoint": "45dee52b",
            "sd_checkpoint_name": None,
        },
        str(source),
    )
    before = inspect_file(source)
    assert before.kind != KIND_EMBEDDING  # a pickle: refused, listed with the convert hint
    assert main(["models", "convert", str(source)]) == 0
    target = folder / "pekora.safetensors"
    entry = inspect_file(target)
    assert (entry.kind, entry.family, entry.vectors) == (KIND_EMBEDDING, "sd1", 8)
    metadata = header_metadata(target)
    assert metadata["name"] == "pekora" and metadata["step"] == "19500"
    assert metadata["string_to_token.*"] == "265" and metadata["converted_from"] == "pekora.pt"
    assert "converted_without" not in metadata
    capsys.readouterr()


def test_a_diffusers_bin_embedding_converts_and_unsaveable_values_are_named(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    source = folder / "cat-toy.bin"
    torch.save({"<cat-toy>": torch.randn(768), "trained_with": ["a", "b"]}, str(source))
    assert main(["models", "convert", str(source)]) == 0
    target = folder / "cat-toy.safetensors"
    entry = inspect_file(target)
    assert (entry.kind, entry.vectors) == (KIND_EMBEDDING, 1)
    assert header_metadata(target)["converted_without"] == "trained_with"
