"""`ldstudio generate` with absolute paths writes none into the image, and reuse finds the files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from models_support import tiny_checkpoint, write_lora, write_vae_file
from PIL import Image

from ldstudio.cli import main
from ldstudio.core.models import ModelFolderStore
from ldstudio.core.readers import read_file
from ldstudio.engine import checkpoints


@pytest.fixture
def far_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A checkpoint, a VAE and a LoRA in a folder no model folder setting points at."""
    folder = tmp_path / "home" / "someone" / "private models"
    path, config, pipe = tiny_checkpoint("sd1", folder, "tiny-sd1.safetensors")
    root = tmp_path / "configs"
    shutil.copytree(config, root / "sd1", ignore=shutil.ignore_patterns("bpe"))
    shutil.copytree(config / "bpe", root / "clip-bpe")
    monkeypatch.setattr(checkpoints, "configs_root", lambda: root)
    return {
        "model": path,
        "vae": write_vae_file(pipe.vae, folder / "VAE" / "other-vae.safetensors", seed=5),
        "lora": write_lora(pipe.unet, folder / "Lora" / "ink.safetensors", "kohya", seed=1),
    }


def test_no_absolute_path_in_the_png_and_reuse_finds_the_same_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, far_away: dict[str, Path], ldstudio_home
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "generate", "a cat", "--model", str(far_away["model"]),
            "--lora", f"{far_away['lora']}:0.5", "--vae", str(far_away["vae"]),
            "--steps", "2", "--size", "64x64", "--seed", "3", "--out", str(out), "--json",
        ]
    )  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    (record,) = json.loads(stdout)["images"]
    with Image.open(record["path"]) as image:
        chunks = dict(image.text)
    assert set(chunks) == {"parameters", "ldstudio"}
    for key, value in chunks.items():
        assert "/" not in value and "private models" not in value, (key, value)
    stored = json.loads(chunks["ldstudio"])
    assert stored["model"]["name"] == "tiny-sd1" and len(stored["model"]["sha256"]) == 64
    assert "Model hash: " + stored["model"]["sha256"][:10] in chunks["parameters"]

    # Reuse: the same files, found by name and content hash.
    params = read_file(Path(record["path"])).params
    assert params is not None
    assert params.model == str(far_away["model"])
    assert params.vae == str(far_away["vae"])
    assert params.loras == ((str(far_away["lora"]), 0.5),)

    # On a machine that never used them (no hash cache), in its model folders: found by name,
    # checked by hash.
    (ldstudio_home / "hashes.json").unlink()
    shelf = tmp_path / "shelf"
    shutil.copytree(far_away["model"].parent, shelf)
    shutil.rmtree(far_away["model"].parent)
    store = ModelFolderStore.load()
    store.folders.append(str(shelf))
    store.save()
    again = read_file(Path(record["path"]))
    assert again.params is not None and not again.warnings
    assert again.params.model == str(shelf / "tiny-sd1.safetensors")
    assert again.params.vae == str(shelf / "VAE" / "other-vae.safetensors")
    assert again.params.loras == ((str(shelf / "Lora" / "ink.safetensors"), 0.5),)
