"""The /sdapi/v1 routes: the AUTOMATIC1111 API subset its clients use; the server's loop.

Generation routes map the body (`a1111_models`), submit to the engine service and await the
job's final event without blocking the loop; the images come back as the library saved them
(PNG with metadata), base64 without a `data:` prefix. `/interrupt` and `/skip` end the running
job at its next step (ldstudio cannot skip one image of a batch and go on, so `/skip` ends the
job as `/interrupt` does); images of earlier batch rounds are kept and returned.
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from PIL import Image

from ldstudio import __version__
from ldstudio.api import a1111_models
from ldstudio.api.catalogue import Model
from ldstudio.api.context import VAE_AUTOMATIC, ServerContext
from ldstudio.api.jobs import outcome_records
from ldstudio.core.events import ImageRecord, JobFailed
from ldstudio.core.metadata import PARAMETERS_KEY, parse_a1111_parameters

router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111"])


def context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


def title(model: Model) -> str:
    """A1111's checkpoint title: the name clients show and send back."""
    return model.name


# -- options and lists ----------------------------------------------------------------------


@router.get("/options")
def get_options(request: Request) -> dict[str, Any]:
    ctx = context(request)
    options = ctx.current_options()
    bundled = options.checkpoint.path == ctx.catalogue.bundled().path
    return {
        "sd_model_checkpoint": title(options.checkpoint),
        # Hashed now only for the small bundled model; a big checkpoint once it is cached.
        "sd_checkpoint_hash": options.checkpoint.sha256(compute=bundled),
        "CLIP_stop_at_last_layers": options.clip_skip,
        "sd_vae": options.vae.name if options.vae is not None else VAE_AUTOMATIC,
        "samples_format": "png",
    }


@router.post("/options")
async def set_options(request: Request) -> None:
    """Takes a whole options dict back: the keys ldstudio honours are applied (all or none),
    read-only and unknown keys are ignored, as A1111 does."""
    body = await _json_object(request)
    try:
        await run_in_threadpool(context(request).update_options, body)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/sd-models")
def sd_models(request: Request) -> list[dict[str, Any]]:
    models = []
    for model in context(request).catalogue.checkpoints():
        sha = model.sha256()
        models.append(
            {
                "title": title(model),
                "model_name": model.name,
                "hash": sha[:10] if sha else None,
                "sha256": sha,
                "filename": model.filename,
                "config": None,
            }
        )
    return models


@router.get("/samplers")
def samplers() -> list[dict[str, Any]]:
    return a1111_models.sampler_list()


@router.get("/schedulers")
def schedulers() -> list[dict[str, Any]]:
    return a1111_models.scheduler_list()


@router.get("/upscalers")
def upscalers(request: Request) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = [
        {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
        for name in a1111_models.IMAGE_UPSCALERS
    ]
    for model in context(request).catalogue.upscalers():
        listed.append(
            {
                "name": model.name,
                "model_name": model.name,
                "model_path": model.filename,  # a file name: the server's folders stay its own
                "model_url": None,
                "scale": None,
            }
        )
    return listed


@router.get("/latent-upscale-modes")
def latent_upscale_modes() -> list[dict[str, str]]:
    return [{"name": a1111_models.LATENT_UPSCALER}]


@router.get("/sd-vae")
def sd_vae(request: Request) -> list[dict[str, str]]:
    return [
        {"model_name": model.name, "filename": model.filename}
        for model in context(request).catalogue.vaes()
    ]


@router.get("/loras")
def loras(request: Request) -> list[dict[str, Any]]:
    return [
        {"name": model.name, "alias": model.name, "path": model.filename, "metadata": {}}
        for model in context(request).catalogue.loras()
    ]


@router.get("/embeddings")
def embeddings() -> dict[str, Any]:
    # ldstudio loads no textual-inversion embeddings: none loaded, none skipped.
    return {"loaded": {}, "skipped": {}}


# -- generation -----------------------------------------------------------------------------


@router.post("/txt2img")
async def txt2img(request: Request) -> JSONResponse:
    return await _generate(request, a1111_models.txt2img)


@router.post("/img2img")
async def img2img(request: Request) -> JSONResponse:
    return await _generate(request, a1111_models.img2img)


async def _generate(request: Request, build: Any) -> JSONResponse:
    ctx = context(request)
    body = await _json_object(request)

    def prepare() -> a1111_models.Mapped:
        mapped: a1111_models.Mapped = build(body, ctx)
        ctx.catalogue.check_request(mapped.request)
        return mapped

    try:
        mapped = await run_in_threadpool(prepare)
        job = ctx.service.submit(mapped.request)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    outcome = await ctx.tracker.track(job.id).wait_outcome()
    if isinstance(outcome, JobFailed):
        return JSONResponse(
            {"error": "JobFailed", "detail": outcome.message, "errors": outcome.detail},
            status_code=500,
        )
    records = outcome_records(outcome)
    reply = await run_in_threadpool(_reply, body, mapped, job.request.params, records)
    return JSONResponse(reply)


def _reply(
    body: dict[str, Any], mapped: a1111_models.Mapped, params: Any, records: tuple[ImageRecord, ...]
) -> dict[str, Any]:
    files = [record.path.read_bytes() for record in records]
    infotexts = [_parameters_text(data) for data in files]
    seeds = [record.seed for record in records]
    request = mapped.request
    strength = None
    if request.inpaint is not None:
        strength = request.inpaint.strength
    elif request.hires is not None:
        strength = request.hires.resolved_strength()
    first = records[0] if records else None
    info = {
        "prompt": params.prompt,
        "all_prompts": [params.prompt] * len(records),
        "negative_prompt": params.negative_prompt,
        "all_negative_prompts": [params.negative_prompt] * len(records),
        "seed": params.seed,
        "all_seeds": seeds,
        "subseed": params.variation_seed if params.variation_seed is not None else -1,
        "all_subseeds": [params.variation_seed or -1] * len(records),
        "subseed_strength": params.variation_strength,
        "width": first.width if first else params.width,
        "height": first.height if first else params.height,
        "sampler_name": params.scheduler,
        "cfg_scale": params.guidance_scale,
        "steps": params.steps,
        "batch_size": params.batch_size,
        "restore_faces": False,
        "sd_model_name": mapped.model_title,
        "sd_model_hash": None,
        "seed_resize_from_w": params.seed_resize_from[0] if params.seed_resize_from else -1,
        "seed_resize_from_h": params.seed_resize_from[1] if params.seed_resize_from else -1,
        "denoising_strength": strength,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": list(params.styles),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": params.clip_skip,
        "version": f"ldstudio {__version__}",
        # What the body held that ldstudio did not use (field names only).
        "ldstudio_unused": mapped.unused,
    }
    images = [base64.b64encode(data).decode("ascii") for data in files]
    return {
        "images": images if mapped.send_images else [],
        "parameters": body,
        "info": json.dumps(info, ensure_ascii=False),
    }


def _parameters_text(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        text = getattr(image, "text", {}).get(PARAMETERS_KEY, "")
    return str(text)


# -- progress and control -------------------------------------------------------------------


@router.get("/progress")
def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
    ctx = context(request)
    p = ctx.tracker.progress()
    jobs = ctx.service.jobs()
    fraction = p.fraction
    elapsed = time.time() - p.started if p.job_id is not None else 0.0
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    image = None
    if p.preview is not None and not skip_current_image:
        buffer = io.BytesIO()
        Image.fromarray(p.preview, "RGB").save(buffer, format="PNG")
        image = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {
        "progress": fraction,
        "eta_relative": eta,
        "state": {
            "skipped": False,
            "interrupted": p.job_id is not None and ctx.tracker.interrupted(p.job_id),
            "job": f"job {p.job_id}" if p.job_id is not None else "",
            "job_count": len(jobs),
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(p.started or None)),
            "job_no": p.batch_index,
            "sampling_step": p.step,
            "sampling_steps": p.steps,
        },
        "current_image": image,
        "textinfo": None,
        "current_task": f"job {p.job_id}" if p.job_id is not None else None,
    }


@router.post("/interrupt")
def interrupt(request: Request) -> dict[str, Any]:
    return _stop(context(request))


@router.post("/skip")
def skip(request: Request) -> dict[str, Any]:
    return _stop(context(request))


def _stop(ctx: ServerContext) -> dict[str, Any]:
    # Every running job: A1111 runs one at a time, a cluster engine several side by side.
    for running in ctx.service.queue.running_jobs():
        ctx.tracker.mark_interrupted(running.id)
        ctx.service.cancel(running.id)
    return {}


@router.post("/png-info")
async def png_info(request: Request) -> dict[str, Any]:
    body = await _json_object(request)

    def read() -> dict[str, Any]:
        from ldstudio.core.readers import read_image, text_metadata

        raw = a1111_models.decode_base64(body.get("image"), "image")
        try:
            with Image.open(io.BytesIO(raw)) as image:
                image.load()  # PNG text after the pixels is read only by load()
                result = read_image(image)
                chunks = text_metadata(image)
        except Exception as exc:  # Pillow raises a zoo (bomb errors, struct.error, ...)
            raise ValueError(f"image: not a readable image ({exc})") from None
        text = chunks.get(PARAMETERS_KEY) or result.parameters_text or ""
        items = {k: v for k, v in chunks.items() if k != PARAMETERS_KEY}
        return {
            "info": text,
            "items": items,
            "parameters": parse_a1111_parameters(text) if text else {},
        }

    try:
        return await run_in_threadpool(read)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(422, "body: not valid JSON; allowed: a JSON object") from None
    if not isinstance(body, dict):
        raise HTTPException(422, f"body: a JSON {type(body).__name__}; allowed: a JSON object")
    return body
