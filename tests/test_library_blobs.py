"""The library's blob store: the input images and masks a request names by sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ldstudio.core.library import LibraryStore
from ldstudio.core.library.blobs import BlobStore
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request


def test_put_get_by_hash_once(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put(b"mask pixels")
    assert digest == hashlib.sha256(b"mask pixels").hexdigest()
    assert blobs.get(digest) == b"mask pixels" and digest in blobs
    assert blobs.put(b"mask pixels") == digest
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [digest]


def test_missing_damaged_and_malformed_are_named(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    with pytest.raises(KeyError, match="not in the library's blob store"):
        blobs.get("0" * 64)
    digest = blobs.put(b"image")
    blobs.path(digest).write_bytes(b"changed")
    with pytest.raises(ValueError, match="is damaged"):
        blobs.get(digest)
    with pytest.raises(ValueError, match=r"'../etc' is not a sha256"):
        blobs.path("../etc")
    assert "../etc" not in blobs


def test_the_library_keeps_blobs_beside_its_images_and_a_request_names_them(
    tmp_path: Path,
) -> None:
    store = LibraryStore(tmp_path / "lib")
    try:
        digest = store.blobs.put(b"\x89PNG fake")
        assert store.blobs.path(digest).is_relative_to(tmp_path / "lib" / "blobs")
        # A request carries the hash, never the bytes or a path; txt2img takes no input.
        with pytest.raises(ValueError, match="txt2img takes none; got image"):
            Request(GenerationParams(prompt="x"), inputs=(("image", digest),)).validate()
        store.reconcile()  # walks the library's folders: a blob is not taken for an image
        assert store.count() == 0
    finally:
        store.close()
