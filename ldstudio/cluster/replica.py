"""EngineReplica: the Ray Serve deployment that runs jobs, one at a time, on one GPU (or CPU).

Runs inside a Serve replica process; this and cluster/actor.py are the only places a cluster
imports torch (through the diffusers backend). A request arrives as a portable request (models
by name + hash, found in this node's folders) with its input blobs; the replica streams back
plain items (see `Item` below) — steps with previews, images as PNG bytes — never exceptions,
so the caller words every ending itself.

Serve's model multiplexing routes a request to a replica that already holds its model: the
model id is the checkpoint's hash, and each id held here is one engine with its own pipeline.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from ldstudio.cluster.rows import RowBlobs, image_payload, node_request
from ldstudio.core.backend import ImageResult, JobError, StageStarted, Step
from ldstudio.core.events import EngineNotice
from ldstudio.core.jobs import Cancelled, CancelToken

# Items streamed back, each a tuple whose first element says what it is:
#   ("replica", name, model_id)                  first, always: who runs the job
#   ("stage", StageStarted) / ("step", Step) / ("notice", message)
#   ("image", index, png, portable_request_json, model_name, seconds)
#   ("failed", message, detail) / ("cancelled", step)   last, when the job did not finish
Item = tuple[Any, ...]


class _Engine:
    """One model's engine on this replica; Serve drops it (LRU) when another model is needed."""

    def __init__(self, device: str, dtype: str) -> None:
        from ldstudio.core.options import EngineOptions
        from ldstudio.engine.backend import DiffusersBackend

        self.backend = DiffusersBackend(EngineOptions(device=device, dtype=dtype).validate())
        self.lock = threading.Lock()  # a cancelled job's thread may still be finishing

    def __del__(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


def replica_class(models_per_replica: int) -> type:
    """The deployment class keeping up to `models_per_replica` engines (Serve reads the limit
    from the decorated method, and detects multiplexing from the class, so it is built here)."""

    class EngineReplica:
        """Deployed by ldstudio.cluster.serving.deploy; one job at a time per replica."""

        def __init__(self, device: str, dtype: str) -> None:
            self.device, self.dtype = device, dtype
            self.name = f"{socket.gethostname()} pid {os.getpid()}"

        @serve.multiplexed(max_num_models_per_replica=models_per_replica)  # type: ignore[untyped-decorator]
        async def engine(self, model_id: str) -> _Engine:
            return await asyncio.to_thread(_Engine, self.device, self.dtype)

        async def render(self, request_text: str, blobs_text: str) -> AsyncIterator[Item]:
            model_id = serve.get_multiplexed_model_id()
            yield ("replica", self.name, model_id)
            engine: _Engine = await self.engine(model_id)
            async for item in _stream(engine, request_text, blobs_text):
                yield item

    return EngineReplica


async def _stream(engine: _Engine, request_text: str, blobs_text: str) -> AsyncIterator[Item]:
    """The job's items, made on a thread (the engine blocks) and handed to the event loop."""
    cancel = CancelToken()
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[Item | None] = asyncio.Queue()

    def put(item: Item | None) -> None:
        loop.call_soon_threadsafe(items.put_nowait, item)

    def work() -> None:
        with engine.lock:
            try:
                for item in _run(engine, request_text, blobs_text, cancel):
                    put(item)
            finally:
                put(None)

    threading.Thread(target=work, name="ldstudio-replica-job", daemon=True).start()
    try:
        while (item := await items.get()) is not None:
            yield item
    finally:
        # The caller cancelled (Serve cancels this task) or went away: stop the engine at
        # its next step rather than finish a job nobody will receive.
        cancel.cancel()


def _run(engine: _Engine, request_text: str, blobs_text: str, cancel: CancelToken) -> Any:
    step = 0
    try:
        request = node_request(request_text)
        engine.backend.blobs = RowBlobs(blobs_text)
        for event in engine.backend.execute(request, cancel):
            if isinstance(event, Step):
                step = event.step
                yield ("step", event)
            elif isinstance(event, StageStarted):
                yield ("stage", event)
            elif isinstance(event, ImageResult):
                png, made = image_payload(event, request)
                yield ("image", event.index, png, made, event.model_name, event.seconds)
            elif isinstance(event, EngineNotice):
                yield ("notice", event.message)
            # ModelLoading / ModelReady stay on the replica: which model it holds is Serve's
            # routing, and the caller's own job events say when the job starts.
    except Cancelled as exc:
        yield ("cancelled", exc.step if exc.step is not None else step)
    except JobError as exc:
        yield ("failed", str(exc), exc.detail)
    except Exception as exc:  # reported, so the caller can word it; the replica stays up
        import traceback

        detail = "".join(traceback.format_exception(exc)[-6:])
        yield ("failed", f"Generation failed on the cluster: {type(exc).__name__}: {exc}", detail)
