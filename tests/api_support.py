"""`ldstudio serve` in a test: the real app on a free loopback port (uvicorn on a thread) over a
backend the test owns, with a fresh library; `http` is a requests session on its URL."""

from __future__ import annotations

import base64
import io
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from engine_support import Borrowed
from fastapi import FastAPI
from PIL import Image

from ldstudio.api.app import Credentials, create_app
from ldstudio.api.context import ServerContext
from ldstudio.api.server import ServerThread, build_context
from ldstudio.core.backend import Backend
from ldstudio.core.library import LibraryStore

TIMEOUT = 600


@dataclass
class Server:
    url: str
    ctx: ServerContext
    library: LibraryStore
    http: requests.Session
    app: FastAPI

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url + path, timeout=TIMEOUT, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url + path, timeout=TIMEOUT, **kwargs)

    def saved(self) -> int:
        return self.library.count()


@contextmanager
def running_server(
    backend: Backend,
    library_root: Path,
    credentials: Credentials | None = None,
    cors_origins: tuple[str, ...] = (),
) -> Iterator[Server]:
    library = LibraryStore(library_root, reconcile=False)
    if hasattr(backend, "blobs"):
        backend.blobs = library.blobs
    ctx = build_context(lambda: Borrowed(backend), library)
    app = create_app(ctx, credentials, cors_origins)
    thread = ServerThread(app).start()
    session = requests.Session()
    try:
        yield Server(thread.url, ctx, library, session, app)
    finally:
        session.close()
        ctx.service.close(timeout=10)
        thread.stop()
        library.close()


def decode_png(text: str) -> Image.Image:
    assert not text.startswith("data:"), "A1111 sends images without a data: prefix"
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
    image.load()
    return image


def b64_png(image: Image.Image, data_url: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    text = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/png;base64,{text}" if data_url else text


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path, seconds: float) -> None:
    """Until `ldstudio serve` at `url` says its engine is ready; its log if it exits first."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            if requests.get(url + "/ldstudio/v1/info", timeout=5).json()["ready"]:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.2)
