"""RenderActor: the callable class Ray Data runs on each node; one engine per actor, built once.

Runs inside a Ray worker process: this is the only place torch (through the diffusers backend)
is imported on behalf of a cluster run. Each row is one portable request; its models are found
by name and hash in this node's model folders (or the bundled model), never shipped.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ldstudio.cluster.rows import RowBlobs, image_payload, node_request
from ldstudio.core.backend import ImageResult, JobError
from ldstudio.core.jobs import CancelToken

COLUMNS = ("index", "image_index", "png", "request", "model_name", "seconds", "error")


class RenderActor:
    def __init__(self, device: str) -> None:
        from ldstudio.engine.backend import DiffusersBackend

        # Loaded once per actor; the pipeline cache keeps the model across rows.
        self.backend = DiffusersBackend(device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for index, text, blobs in zip(
            batch["index"], batch["request"], batch["blobs"], strict=True
        ):
            for row in self._render(int(index), str(text), str(blobs)):
                for name in COLUMNS:
                    out[name].append(row[name])
        return {name: np.array(values, dtype=object) for name, values in out.items()}

    def _render(self, index: int, text: str, blobs: str) -> list[dict[str, Any]]:
        started = time.perf_counter()
        try:
            request = node_request(text)
            self.backend.blobs = RowBlobs(blobs)
            rows = []
            for event in self.backend.execute(request, CancelToken()):
                if isinstance(event, ImageResult):
                    png, made = image_payload(event, request)
                    rows.append(
                        {
                            "index": index,
                            "image_index": event.index,
                            "png": png,
                            "request": made,
                            "model_name": event.model_name,
                            "seconds": event.seconds,
                            "error": "",
                        }
                    )
            return rows
        except Exception as exc:  # one failed row must not fail the dataset: report it
            message = str(exc) if isinstance(exc, JobError) else f"{type(exc).__name__}: {exc}"
            return [
                {
                    "index": index,
                    "image_index": -1,
                    "png": b"",
                    "request": "",
                    "model_name": "",
                    "seconds": time.perf_counter() - started,
                    "error": message,
                }
            ]

    def __del__(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
