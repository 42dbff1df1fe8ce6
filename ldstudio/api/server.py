"""Building the server (service, library, catalogue, app) and running uvicorn; main thread,
or a thread of its own (`ServerThread`, for tests and benchmarks).
"""

from __future__ import annotations

import ipaddress
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ldstudio.api.app import Credentials, create_app
from ldstudio.api.catalogue import ModelCatalogue
from ldstudio.api.context import Options, ServerContext
from ldstudio.api.jobs import JobTracker
from ldstudio.core.library import LibraryStore
from ldstudio.core.models import ModelFolderStore
from ldstudio.core.service import BackendFactory, EngineService

log = logging.getLogger(__name__)
CLOSE_SECONDS = 5.0  # how long shutting down waits for the running job's next step


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def build_context(
    factory: BackendFactory, library: LibraryStore, catalogue: ModelCatalogue | None = None
) -> ServerContext:
    """A started engine service on `library`, the first checkpoint the default model (the one
    set with `ldstudio models set-default`, else the bundled one)."""
    catalogue = catalogue or ModelCatalogue()
    checkpoint = catalogue.bundled()
    default = ModelFolderStore.load().default
    if default:
        wanted = Path(default).expanduser().resolve()
        found = next((m for m in catalogue.checkpoints() if m.path.resolve() == wanted), None)
        if found is None:
            sys.stderr.write(
                f"note: the default model {default} is not in the model folders; A1111 jobs "
                f"use {checkpoint.name} until a client sets sd_model_checkpoint\n"
            )
        else:
            checkpoint = found
    service = EngineService(factory, library)
    tracker = JobTracker(service)
    service.start()
    return ServerContext(service, tracker, library, catalogue, Options(checkpoint))


@dataclass
class ServerThread:
    """uvicorn serving `app` on a thread; `port` is the one bound (port 0: a free one)."""

    app: FastAPI
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="ldstudio-serve", daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def serve(
    ctx: ServerContext,
    host: str,
    port: int,
    credentials: Credentials | None,
    cors_origins: Sequence[str],
) -> None:
    """Serve until Ctrl+C (uvicorn shuts down gracefully), then end the engine's jobs."""
    app = create_app(ctx, credentials, cors_origins)
    config = uvicorn.Config(app, host=host, port=port, log_level="info")
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        ctx.service.close(timeout=CLOSE_SECONDS)
