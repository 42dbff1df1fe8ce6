"""Content hashes computed once per version of a file and kept in the data folder; model
references by name and hash, resolved back to files (no torch, no Qt)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ldstudio.core.models import (
    KIND_DIFFUSERS,
    KIND_LORA,
    KIND_VAE,
    ModelFolderStore,
    ModelRegistry,
    ResourceRef,
    hashes,
    reference,
    resolve,
)
from ldstudio.core.models.hashes import HashStore, file_hash, hash_store


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file whose content is hashed; the process-wide memory starts empty."""
    monkeypatch.setattr(hashes, "_MEMO", {})
    read: list[Path] = []
    real = hashes._sha256

    def counted(path: Path, skip: int) -> str:
        read.append(path)
        return real(path, skip)

    monkeypatch.setattr(hashes, "_sha256", counted)
    return read


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def touch_later(path: Path) -> None:
    """Another mtime for sure, however coarse the file system's clock."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))


def test_a_hash_is_computed_once_and_kept_in_the_data_folder(
    tmp_path: Path, ldstudio_home: Path, reads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights" * 1000)
    assert hash_store().sha256(model) == sha(model.read_bytes())
    assert hash_store().sha256(model) == sha(model.read_bytes())
    assert file_hash(model) == sha(model.read_bytes())[:10]  # A1111's short hash, same source
    assert reads == [model]
    saved = json.loads((ldstudio_home / "hashes.json").read_text(encoding="utf-8"))
    assert saved["files"][str(model.resolve())]["sha256"] == sha(model.read_bytes())
    # A new process (nothing in memory) takes it from the file: matched by size and mtime.
    monkeypatch.setattr(hashes, "_MEMO", {})
    fresh = HashStore(ldstudio_home / "hashes.json")
    assert fresh.cached_sha256(model) == sha(model.read_bytes())
    assert fresh.sha256(model) == sha(model.read_bytes())
    assert reads == [model]


def test_a_changed_file_is_hashed_again(tmp_path: Path, reads: list[Path]) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"one")
    first = hash_store().sha256(model)
    model.write_bytes(b"two")  # same size: only the mtime tells
    touch_later(model)
    assert hash_store().cached_sha256(model) is None
    assert hash_store().sha256(model) == sha(b"two") != first
    model.write_bytes(b"three")  # another size
    assert hash_store().sha256(model) == sha(b"three")
    assert len(reads) == 3


@pytest.mark.parametrize(
    "damage",
    [b"{not json", b"[1, 2]", b'{"format": 99}', b"\xff\xfe", b'{"format": 1, "files": 3}'],
)
def test_a_damaged_cache_file_is_ignored_and_rewritten(
    tmp_path: Path, ldstudio_home: Path, damage: bytes
) -> None:
    ldstudio_home.mkdir(parents=True)
    (ldstudio_home / "hashes.json").write_bytes(damage)
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    assert hash_store().sha256(model) == sha(b"weights")
    saved = json.loads((ldstudio_home / "hashes.json").read_text(encoding="utf-8"))
    assert saved["format"] == 1 and str(model.resolve()) in saved["files"]


def test_damaged_records_are_left_out(tmp_path: Path, ldstudio_home: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    info = model.stat()
    record = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": "0" * 64}
    ldstudio_home.mkdir(parents=True)
    files = {str(model.resolve()): {**record, "sha256": "not hex"}, "/x": [], "/y": record}
    (ldstudio_home / "hashes.json").write_text(json.dumps({"format": 1, "files": files}))
    assert hash_store().cached_sha256(model) is None
    assert hash_store().sha256(model) == sha(b"weights")


def test_an_unwritable_cache_is_no_error(tmp_path: Path, ldstudio_home: Path) -> None:
    (ldstudio_home / "hashes.json").mkdir(parents=True)  # a folder where the file should be
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    assert hash_store().sha256(model) == sha(b"weights")
    assert hash_store().sha256(model) == sha(b"weights")


def test_hashing_from_many_threads_at_once(tmp_path: Path, ldstudio_home: Path) -> None:
    files = []
    for i in range(8):
        files.append(tmp_path / f"m{i}.safetensors")
        files[-1].write_bytes(bytes([i]) * 100_000)
    results: list[tuple[Path, str]] = []

    def work() -> None:
        for path in files:
            results.append((path, hash_store().sha256(path)))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 48
    assert all(digest == sha(path.read_bytes()) for path, digest in results)
    saved = json.loads((ldstudio_home / "hashes.json").read_text(encoding="utf-8"))
    assert sorted(saved["files"]) == sorted(str(p.resolve()) for p in files)


def diffusers_folder(path: Path) -> Path:
    for part, data in {
        "model_index.json": b'{"_class_name": "X", "unet": ["diffusers", "U"], '
        b'"vae": ["diffusers", "V"], "safety_checker": [null, null]}',
        "unet/config.json": b"{}",
        "unet/diffusion_pytorch_model.safetensors": b"unet weights",
        "vae/diffusion_pytorch_model.safetensors": b"vae weights",
        "vae/.DS_Store": b"hidden: not content",
        "notes.txt": b"not in a component folder",
    }.items():
        (path / part).parent.mkdir(parents=True, exist_ok=True)
        (path / part).write_bytes(data)
    return path


def test_a_diffusers_folder_hash_covers_its_components(tmp_path: Path) -> None:
    folder = diffusers_folder(tmp_path / "tiny")
    lines = sorted(
        f"{name} {sha((folder / name).read_bytes())}\n"
        for name in (
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
        )
    )
    expected = sha("".join(lines).encode())
    assert hash_store().folder_sha256(folder) == expected
    assert hashes.model_hash(folder) == expected[:10]
    copy = shutil.copytree(folder, tmp_path / "elsewhere" / "renamed")
    (copy / "notes.txt").write_text("outside the components: not part of the hash")
    assert hash_store().cached_folder_sha256(copy) is None  # its files were never hashed
    assert hash_store().folder_sha256(copy) == expected
    (copy / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"other vae")
    assert hash_store().folder_sha256(copy) != expected
    assert hash_store().cached_folder_sha256(folder) == expected


def test_a_folder_asked_again_reads_nothing_until_a_file_changes(
    tmp_path: Path, ldstudio_home: Path, reads: list[Path]
) -> None:
    folder = diffusers_folder(tmp_path / "tiny")
    store = hash_store()
    first = store.folder_sha256(folder)
    assert len(reads) == 4
    assert store.folder_sha256(folder) == first and len(reads) == 4
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"UNET WEIGHTS")  # same size
    touch_later(weights)
    changed = store.folder_sha256(folder)
    assert changed != first and reads[-1] == weights
    # A symlinked file re-pointed at other content of the same size and mtime (as Hugging
    # Face's cache does) is another inode: hashed again.
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    a, b = blobs / "a", blobs / "b"
    a.write_bytes(b"vae weights")
    b.write_bytes(b"VAE WEIGHTS")
    stamp = a.stat()
    os.utime(b, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    vae = folder / "vae" / "diffusion_pytorch_model.safetensors"
    vae.unlink()
    vae.symlink_to(a)
    via_a = store.folder_sha256(folder)
    assert via_a == changed  # same content as the file it replaced
    vae.unlink()
    vae.symlink_to(b)
    assert store.folder_sha256(folder) != via_a


# -- references: name + content hash, resolved back to a file ----------------------------------


def lora(path: Path, size: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"x.lora_down.weight": np.arange(size * 2, dtype=np.float32).reshape(size, 2)}
    save_file(arrays, str(path))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A model folder in models.json: ink (the LoRA referenced) and another LoRA, larger."""
    lora(tmp_path / "models" / "ink.safetensors")
    lora(tmp_path / "models" / "other.safetensors", size=3)
    store = ModelFolderStore()
    store.add_folder(tmp_path / "models")
    store.save()
    return tmp_path / "models"


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry(include_hf_cache=False)


def test_reference_and_resolve_round_trip(folder: Path, registry: ModelRegistry) -> None:
    ink = folder / "ink.safetensors"
    ref = reference(ink, KIND_LORA)
    assert ref == ResourceRef(KIND_LORA, "ink", sha(ink.read_bytes()))
    assert ResourceRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    assert resolve(ref, registry) == ink
    assert resolve(ResourceRef(KIND_LORA, "INK", ref.sha256), registry) == ink
    assert resolve(ResourceRef(KIND_VAE, "ink", ref.sha256), registry) is None  # another kind


def test_a_renamed_file_is_found_by_its_hash_hashing_only_files_of_its_size(
    folder: Path, registry: ModelRegistry, reads: list[Path]
) -> None:
    ref = reference(folder / "ink.safetensors", KIND_LORA)
    (folder / "ink.safetensors").rename(folder / "renamed.safetensors")
    registry.invalidate()
    reads.clear()
    assert resolve(ref, registry) == folder / "renamed.safetensors"
    assert reads == [folder / "renamed.safetensors"]  # other.safetensors has another size


def test_a_file_outside_the_model_folders_is_found_through_the_hash_cache(
    folder: Path, tmp_path: Path, registry: ModelRegistry
) -> None:
    outside = lora(tmp_path / "downloads" / "new-style.safetensors", size=5)
    ref = reference(outside, KIND_LORA)  # e.g. `generate --lora /abs/new-style.safetensors`
    assert resolve(ref, registry) == outside.resolve()
    assert resolve(ResourceRef(KIND_LORA, "elsewhere", ref.sha256), registry) == outside.resolve()
    lora(outside, size=6)  # changed since: no longer that content
    assert resolve(ref, registry) is None


def test_other_content_under_the_same_name_is_not_the_reference(
    folder: Path, registry: ModelRegistry
) -> None:
    ref = reference(folder / "ink.safetensors", KIND_LORA)
    lora(folder / "ink.safetensors", size=4)  # replaced by another version
    touch_later(folder / "ink.safetensors")
    registry.invalidate()
    assert resolve(ref, registry) is None


def test_without_a_hash_only_a_unique_name_resolves(
    folder: Path, registry: ModelRegistry, reads: list[Path]
) -> None:
    assert resolve(ResourceRef(KIND_LORA, "ink", ""), registry) == folder / "ink.safetensors"
    assert resolve(ResourceRef(KIND_LORA, "nope", ""), registry) is None
    lora(folder / "sub" / "ink.safetensors", size=7)
    registry.invalidate()
    assert resolve(ResourceRef(KIND_LORA, "ink", ""), registry) is None  # two of that name
    assert reads == []  # nothing hashed without a hash to compare


def test_a_diffusers_folder_reference(tmp_path: Path, registry: ModelRegistry) -> None:
    models = tmp_path / "models"
    original = diffusers_folder(models / "tiny-sd")
    store = ModelFolderStore()
    store.add_folder(models)
    store.save()
    ref = reference(original, KIND_DIFFUSERS)
    assert (ref.kind, ref.name) == (KIND_DIFFUSERS, "tiny-sd")
    assert resolve(ref, registry) == original
    original.rename(models / "tiny-renamed")
    registry.invalidate()
    assert resolve(ref, registry) == models / "tiny-renamed"
    with pytest.raises(ValueError, match="a diffusers reference needs a diffusers folder"):
        reference(models / "tiny-renamed" / "model_index.json", KIND_DIFFUSERS)
    with pytest.raises(ValueError, match="a lora reference needs a lora file"):
        reference(models / "tiny-renamed", KIND_LORA)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "model reference: expected a map of kind, name and sha256, got list"),
        ({"kind": "lora", "name": "x", "path": "/x"}, "model reference: unknown field(s) path"),
        ({"kind": "embedding", "name": "x"}, "kind: 'embedding' is not allowed; allowed: "),
        ({"kind": "lora", "name": ""}, "name: '' is not allowed"),
        ({"kind": "lora"}, "name: None is not allowed"),
        ({"kind": "vae", "name": "x", "sha256": "ABC"}, "sha256: 'ABC' is not allowed"),
        ({"kind": "vae", "name": "x", "sha256": 5}, "sha256: 5 is not allowed"),
    ],
)
def test_a_bad_reference_names_its_field(data: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        ResourceRef.from_dict(data)
    assert str(caught.value).startswith(message), caught.value
