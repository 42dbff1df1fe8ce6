"""Content hashes of model files, as A1111 records them; any thread."""

from __future__ import annotations

import struct
from pathlib import Path


def _sha256(path: Path, skip: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(skip)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_HASHES: dict[tuple[str, int, int, str], str] = {}


def _cached_hash(path: Path, kind: str) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, kind)
    if key not in _HASHES:
        if kind == "addnet":
            # kohya's "addnet" hash: the tensor data only, so editing metadata keeps it.
            with path.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
            _HASHES[key] = _sha256(path, 8 + length)[:12]
        else:
            _HASHES[key] = _sha256(path, 0)[:10]
    return _HASHES[key]


def lora_hash(path: Path) -> str:
    """The short hash A1111 writes in `Lora hashes` (sha256 of the tensor data, 12 hex)."""
    return _cached_hash(path, "addnet")


def file_hash(path: Path) -> str:
    """The short hash A1111 writes for models and VAEs (sha256 of the file, 10 hex)."""
    return _cached_hash(path, "file")
