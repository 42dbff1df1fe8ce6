"""Rows that cross the cluster: a portable request (JSON) and its input blobs in, PNG bytes and
the resolved per-image request out; pure data, any thread, no Ray and no torch here."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from dataclasses import dataclass
from typing import Any

from ldstudio.core.backend import BlobSource, ImageResult, JobError
from ldstudio.core.request import Request, from_portable, to_portable


@dataclass(frozen=True)
class RenderedImage:
    """One image of request `index` (0-based), as the cluster sent it back."""

    index: int
    image_index: int
    png: bytes
    request: Request  # the image's own, resolved (seed, batch 1), with this machine's paths
    model_name: str
    seconds: float


@dataclass(frozen=True)
class RowFailed:
    """Request `index` failed on the cluster; `message` says why, worded for the user."""

    index: int
    message: str


def encode_row(index: int, request: Request, blobs: BlobSource | None) -> dict[str, Any]:
    """The row for request `index`: models by name + hash, input images as bytes (base64 in
    JSON, so the row is plain strings that every node reads the same way)."""
    shipped: dict[str, str] = {}
    for role, digest in request.inputs:
        if blobs is None:
            raise ValueError(f"request {index + 1}: its {role} image needs a blob store")
        shipped[digest] = base64.b64encode(blobs.get(digest)).decode("ascii")
    return {
        "index": index,
        "request": json.dumps(to_portable(request)),
        "blobs": json.dumps(shipped),
    }


class RowBlobs:
    """The blobs a row carries, as the BlobSource a backend reads."""

    def __init__(self, text: str) -> None:
        self._data = {k: base64.b64decode(v) for k, v in json.loads(text).items()}

    def get(self, digest: str) -> bytes:
        try:
            return self._data[digest]
        except KeyError:
            raise KeyError(f"blob {digest[:10]} was not shipped with the request") from None


def png_bytes(image: Any) -> bytes:
    """A PIL image as lossless PNG bytes: the pixels arrive exactly as they were made."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def decode_image(row: dict[str, Any]) -> RenderedImage | RowFailed:
    """A result row back into an image (with the caller's model paths) or a failure."""
    index = int(row["index"])
    if row["error"]:
        return RowFailed(index, str(row["error"]))
    request, _missing = from_portable(json.loads(row["request"]))
    return RenderedImage(
        index=index,
        image_index=int(row["image_index"]),
        png=bytes(row["png"]),
        request=request,
        model_name=str(row["model_name"]),
        seconds=float(row["seconds"]),
    )


def node_request(text: str) -> Request:
    """A row's portable request with this node's model paths; JobError naming what this node
    lacks (models are found by name and hash in its own folders, never shipped)."""
    request, missing = from_portable(json.loads(text))
    if missing:
        raise JobError("; ".join(missing) + " on this cluster node")
    return request


def image_payload(event: ImageResult, request: Request) -> tuple[bytes, str]:
    """A finished image as it travels back: lossless PNG bytes and its own resolved request
    (portable JSON), `request`'s own when the backend did not say."""
    made = event.request or dataclasses.replace(request, params=event.params)
    return png_bytes(event.image), json.dumps(to_portable(made))
