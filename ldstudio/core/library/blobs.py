"""BlobStore: content-addressed input files (img2img images, inpaint masks); any thread.

A request names its input images and masks by sha256 (`Request.inputs`); the bytes live here,
in `<library>/blobs/ab/<sha256>`, written once and never changed, so a saved image can link to
exactly what it was made from and a request stays small enough to travel as JSON. Writes are
atomic and durable; putting the same bytes twice stores them once.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ldstudio.core.atomic import atomic_file

_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_BLOB_BYTES = 512 * 1024 * 1024  # an 8K RGBA PNG is far less; a request is not a dump


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes) -> str:
        """Store `data`; its sha256, which names it from now on."""
        if len(data) > MAX_BLOB_BYTES:
            raise ValueError(
                f"blob: {len(data):,} bytes; allowed: at most {MAX_BLOB_BYTES:,} bytes"
            )
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.is_file():
            with atomic_file(path) as handle:
                handle.write(data)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes stored under `digest`; KeyError when absent, ValueError when damaged."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(f"blob {digest}: not in the library's blob store") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"blob {digest}: {path} is damaged (its content has another hash)")
        return data

    def path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ValueError(f"blob: {digest!r} is not a sha256 (64 lowercase hex digits)")
        return self.root / digest[:2] / digest

    def __contains__(self, digest: object) -> bool:
        return (
            isinstance(digest, str)
            and bool(_SHA256.fullmatch(digest))
            and (self.path(digest).is_file())
        )
