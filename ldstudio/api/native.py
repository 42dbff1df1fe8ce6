"""The /ldstudio/v1 routes: ldstudio's own protocol (jobs, their event stream, blobs); the
server's loop. The protocol is spelled out in docs/architecture.md ("ldstudio serve").

A job's events are served as Server-Sent Events, replayed from the job's start (the tracker
keeps each job's log, so a subscriber that connects after submitting misses nothing), then
followed live; the stream closes after the final event. Encoding a preview frame as JPEG runs
on a worker thread, so a fast engine never stalls the loop.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ldstudio import __version__
from ldstudio.api.catalogue import Model
from ldstudio.api.context import ServerContext
from ldstudio.api.jobs import FINAL_EVENTS, outcome_records
from ldstudio.core.events import Event, StepProgress
from ldstudio.core.library.blobs import MAX_BLOB_BYTES
from ldstudio.core.request import KIND_DIFFUSERS, from_portable
from ldstudio.core.wire import encode_event

PROTOCOL = 1
KEEPALIVE_SECONDS = 10.0

router = APIRouter(prefix="/ldstudio/v1", tags=["ldstudio"])


def context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


@router.get("/info")
def info(request: Request) -> dict[str, Any]:
    service = context(request).service
    choice = service.choice
    return {
        "protocol": PROTOCOL,
        "version": __version__,
        "ready": choice is not None and not service.startup_error,
        "device": choice.device if choice else "",
        "dtype": choice.dtype if choice else "",
        "label": choice.label if choice else "",
        "error": service.startup_error,
    }


@router.get("/models")
def models(request: Request) -> dict[str, list[dict[str, Any]]]:
    catalogue = context(request).catalogue

    def items(listed: list[Model]) -> list[dict[str, Any]]:
        return [
            {"name": m.name, "kind": m.kind, "family": m.family, "sha256": m.sha256()}
            for m in listed
        ]

    return {
        "checkpoints": items(catalogue.checkpoints()),
        "loras": items(catalogue.loras()),
        "vaes": items(catalogue.vaes()),
        "upscalers": items(catalogue.upscalers()),
        "embeddings": [],  # ldstudio loads no textual-inversion embeddings
    }


# -- blobs ----------------------------------------------------------------------------------


@router.head("/blobs/{digest}")
def has_blob(request: Request, digest: str) -> Response:
    return Response(status_code=200 if digest in context(request).library.blobs else 404)


@router.put("/blobs/{digest}")
async def put_blob(request: Request, digest: str) -> Response:
    blobs = context(request).library.blobs
    try:
        blobs.path(digest)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BLOB_BYTES:
        raise HTTPException(413, f"blob: {int(declared):,} bytes; allowed: {MAX_BLOB_BYTES:,}")
    data = await request.body()
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise HTTPException(400, f"blob: the body's sha256 is {actual}, not {digest}")
    if digest in blobs:
        return Response(status_code=200)

    def store() -> None:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        except Exception as exc:  # Pillow raises a zoo (bomb errors, struct.error, ...)
            raise ValueError(f"blob: not an image ({exc}); allowed: PNG, JPEG, WebP") from None
        blobs.put(data)

    try:
        await run_in_threadpool(store)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return Response(status_code=201)


# -- jobs -----------------------------------------------------------------------------------


@router.post("/jobs", status_code=202)
async def submit(request: Request) -> dict[str, int]:
    ctx = context(request)
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(422, 'body: not valid JSON; allowed: {"request": ...}') from None
    data = body.get("request") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise HTTPException(422, 'request: missing; allowed: {"request": <portable request>}')

    def prepare() -> Any:
        job_request, missing = from_portable(_bundled_as_default(data, ctx.catalogue.bundled()))
        if missing:
            raise ValueError(f"{'; '.join(missing)} on this server")
        ctx.catalogue.check_request(job_request)
        for role, digest in job_request.inputs:
            if digest not in ctx.library.blobs:
                raise ValueError(
                    f"inputs: {role} blob {digest} is not on this server; PUT it to "
                    f"/ldstudio/v1/blobs/{digest} first"
                )
        return job_request

    try:
        job_request = await run_in_threadpool(prepare)
        job = ctx.service.submit(job_request)
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    ctx.tracker.track(job.id)
    return {"job_id": job.id}


@router.get("/jobs")
def jobs(request: Request) -> dict[str, list[dict[str, Any]]]:
    service = context(request).service
    running = {job.id for job in service.queue.running_jobs()}
    return {
        "jobs": [
            {
                "job_id": job.id,
                "state": "running" if job.id in running else "pending",
                "kind": job.request.kind,
            }
            for job in service.jobs()
        ]
    }


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: int) -> dict[str, bool]:
    return {"cancelled": context(request).service.cancel(job_id) is not None}


@router.get("/jobs/{job_id}/events")
async def events(request: Request, job_id: int) -> StreamingResponse:
    log = context(request).tracker.log(job_id)
    if log is None:
        raise HTTPException(404, f"job {job_id}: not a job of this server")

    async def stream() -> AsyncIterator[str]:
        seen = 0
        while True:
            batch = await log.wait_since(seen, KEEPALIVE_SECONDS)
            if not batch:
                yield ": keepalive\n\n"
                continue
            seen += len(batch)
            if any(isinstance(e, StepProgress) and e.preview is not None for e in batch):
                yield await run_in_threadpool(_messages, batch)
            else:
                yield _messages(batch)
            if isinstance(batch[-1], FINAL_EVENTS):
                return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get("/jobs/{job_id}/images/{index}")
def image(request: Request, job_id: int, index: int) -> Response:
    log = context(request).tracker.log(job_id)
    if log is None:
        raise HTTPException(404, f"job {job_id}: not a job of this server")
    outcome = log.outcome
    records = outcome_records(outcome) if outcome is not None else ()
    if not 0 <= index < len(records):
        state = "has not ended" if outcome is None else f"saved {len(records)} image(s)"
        raise HTTPException(404, f"job {job_id}: no image {index} (the job {state})")
    try:
        data = records[index].path.read_bytes()
    except OSError as exc:
        return JSONResponse({"detail": f"job {job_id}: image {index}: {exc}"}, status_code=410)
    return Response(data, media_type="image/png")


def _bundled_as_default(data: dict[str, Any], bundled: Model) -> dict[str, Any]:
    """A reference to the bundled model (which is in no model folder, so the registry cannot
    resolve it) as the request's default model "", as the window and the CLI write it."""
    ref, params = data.get("model"), data.get("params")
    if not (isinstance(ref, dict) and isinstance(params, dict)):
        return data
    if ref.get("kind") != KIND_DIFFUSERS or ref.get("name") != bundled.name:
        return data
    digest = ref.get("sha256") or ""
    if digest and digest != bundled.sha256(compute=True):
        return data  # another model of that name: resolved (or refused) as any other
    return {**data, "model": None, "params": {**params, "model": ""}}


def _messages(events: list[Event]) -> str:
    return "".join(
        f"event: {type(e).__name__}\ndata: {json.dumps(encode_event(e), ensure_ascii=False)}\n\n"
        for e in events
    )
