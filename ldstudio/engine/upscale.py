"""Upscale requests on the diffusers engine: an upscaler, then a tiled refine; torch thread.

Stage 1 enlarges the source with an upscaler model (tiled, engine/upscalers/tiling.py) or a
Pillow resampler. A model of another scale than asked for is run as often as needed and the
result resized to the exact size with Lanczos, and the job says so. Stage 2 (refine strength >
0) is img2img per tile through the canvas machinery (engine/inpaint.py), each tile starting
from canvas-position noise, blended by core.upscale.TileBlender into float sums: memory is
bounded by the tile and the output image, never a whole-output latent or activation.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ldstudio.core.backend import BackendEvent, ImageResult, JobError, StageStarted, Step
from ldstudio.core.events import EngineNotice
from ldstudio.core.request import Request
from ldstudio.core.upscale import TileBlender, UpscaleSettings, tile_grid, upscaler_label
from ldstudio.engine import inpaint
from ldstudio.engine.inpaint import CanvasPlan

if TYPE_CHECKING:
    from ldstudio.engine.backend import DiffusersBackend
    from ldstudio.engine.models import LoadedModel
    from ldstudio.engine.previews import Previewer
    from ldstudio.engine.relay import Relay
    from ldstudio.engine.upscalers.loader import LoadedUpscaler

STAGE_UPSCALE, STAGE_REFINE = "upscale", "refine"
_RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


def upscaler_path(settings: UpscaleSettings) -> Path | None:
    """The upscaler model file the settings name (the bundled one for ""); None for a
    resampler."""
    from ldstudio.core.models.upscalers import bundled_upscaler_path

    if settings.resampler:
        return None
    if not settings.upscaler:
        return bundled_upscaler_path(settings.scale)
    return model_file(settings.upscaler)


def model_file(text: str) -> Path:
    """An upscaler model's file from a request: its path here, or a bare name (a request
    from another machine whose model was not found by hash) looked up in the model folders."""
    path = Path(text)
    if path.is_file() or path.suffix:
        return path
    from ldstudio.core.models import KIND_UPSCALER
    from ldstudio.core.models.registry import ModelRegistry

    try:
        return Path(ModelRegistry.shared().resolve_reference(text, (KIND_UPSCALER,), "upscaler"))
    except ValueError as exc:
        raise JobError(str(exc)) from None


def run(backend: DiffusersBackend, request: Request, relay: Relay) -> None:
    """Run an upscale request: send its stages, steps and the one finished image."""
    settings = request.upscale
    if settings is None:
        raise JobError("upscale: an upscale request needs its upscale settings")
    source, _mask = inpaint.read_inputs(backend.blobs, request)
    problem = settings.size_problem(*source.size)
    if problem is not None:
        raise JobError(problem)
    params = request.params.resolved()
    started = time.perf_counter()
    out_w, out_h = settings.output_size(*source.size)
    stages = 2 if settings.refines else 1
    shown = params.replace(width=out_w, height=out_h)
    alpha = source.getchannel("A") if source.mode == "RGBA" else None
    rgb = source.convert("RGB")
    model = None if settings.resampler else backend.upscaler(upscaler_path(settings))
    tiles = _tiles_total(model, rgb.size, settings.scale)
    relay.send(StageStarted(shown, tiles, 1, index=0, count=stages, name=STAGE_UPSCALE))
    enlarged = enlarge(rgb, settings, model, relay)
    model_name = upscaler_label(settings)
    if settings.refines:
        loaded = backend._load(params.model, relay.send)
        params = backend._concrete(params, loaded, sized=False)
        backend._extras.apply(loaded, params)
        previewer = backend._previewer(loaded, params.preview_method)
        enlarged = refine(backend, loaded, enlarged, params, settings, previewer, relay)
        model_name = loaded.name
    if alpha is not None:  # transparency is carried over, enlarged with Lanczos
        enlarged = enlarged.convert("RGBA")
        enlarged.putalpha(alpha.resize(enlarged.size, Image.Resampling.LANCZOS))
    own = params.replace(width=None, height=None, batch_size=1, batch_count=1)
    record = dataclasses.replace(request, params=own)
    relay.check(0)
    relay.send(
        ImageResult(
            image=enlarged,
            params=own.replace(width=out_w, height=out_h),
            index=0,
            model_name=model_name,
            seconds=time.perf_counter() - started,
            request=record,
        )
    )


def _passes(model: LoadedUpscaler | None, scale: int) -> list[int]:
    """How many model passes reach `scale` (a ×2 model twice for ×4; once otherwise)."""
    if model is None:
        return []
    passes, reached = [], 1
    while reached < scale:
        passes.append(model.scale)
        reached *= max(model.scale, 2)
    return passes or [model.scale]


def _tiles_total(model: LoadedUpscaler | None, size: tuple[int, int], scale: int) -> int:
    """The tiles all model passes run (the upscale stage's progress total); 1 for a resampler."""
    from ldstudio.engine.upscalers.tiling import tile_count

    if model is None:
        return 1
    width, height = size
    total = 0
    for _ in _passes(model, scale):
        total += tile_count(width, height)
        width, height = width * model.scale, height * model.scale
    return total


def enlarge(
    image: Image.Image, settings: UpscaleSettings, model: LoadedUpscaler | None, relay: Relay
) -> Image.Image:
    """`image` (RGB) × the settings' scale: the model's passes (then Lanczos to the exact size
    when the model's scale overshoots), or the resampler."""
    from ldstudio.engine.upscalers.tiling import tile_count, upscale_array

    target = settings.output_size(image.width, image.height)
    if model is None:
        return image.resize(target, _RESAMPLE[settings.upscaler])
    total = _tiles_total(model, image.size, settings.scale)
    started = time.perf_counter()
    done_before = 0

    def on_tile(done: int, _count: int) -> None:
        relay.check(0)
        step = done_before + done
        elapsed = time.perf_counter() - started
        relay.send(Step(0, step, total, elapsed, step / elapsed if elapsed > 0 else 0.0))

    pixels = np.array(image)  # writable: torch refuses to share a read-only buffer
    for _ in _passes(model, settings.scale):
        pixels = upscale_array(model, pixels, on_tile)
        done_before += tile_count(pixels.shape[1] // model.scale, pixels.shape[0] // model.scale)
    result = Image.fromarray(pixels, "RGB")
    if result.size != target:
        relay.send(
            EngineNotice(
                f"{model.label} makes {result.width}×{result.height}; resized to "
                f"{target[0]}×{target[1]} (×{settings.scale}) with Lanczos"
            )
        )
        result = result.resize(target, Image.Resampling.LANCZOS)
    return result


def upscale_to(
    image: Image.Image, size: tuple[int, int], model: LoadedUpscaler, relay: Relay
) -> Image.Image:
    """`image` enlarged by the model (as many passes as it takes to reach `size`), then
    resized to exactly `size` with Lanczos: a hires fix's upscale to its target size."""
    from ldstudio.engine.upscalers.tiling import upscale_array

    pixels = np.array(image.convert("RGB"))
    while pixels.shape[1] < size[0] or pixels.shape[0] < size[1]:
        pixels = upscale_array(model, pixels, lambda _done, _total: relay.check(0))
        if model.scale == 1:
            break
    result = Image.fromarray(pixels, "RGB")
    return result if result.size == size else result.resize(size, Image.Resampling.LANCZOS)


class _TileRelay:
    """The relay one refine tile runs on: its image is kept, not sent, and its steps are
    counted into the whole refine's progress (tile t of n, step s of each tile's steps)."""

    def __init__(self, relay: Relay, total: int) -> None:
        self.relay, self.total = relay, total
        self.before = 0  # steps of the tiles already done
        self.started = time.perf_counter()
        self.image: Image.Image | None = None

    def send(self, event: BackendEvent) -> None:
        if isinstance(event, ImageResult):
            self.image = event.image
            return
        if isinstance(event, Step):
            step = self.before + event.step
            elapsed = time.perf_counter() - self.started
            event = dataclasses.replace(
                event,
                batch_index=0,
                step=step,
                total=self.total,
                elapsed=elapsed,
                it_per_s=step / elapsed if elapsed > 0 else 0.0,
            )
        self.relay.send(event)

    def check(self, step: int) -> None:
        self.relay.check(step)


def refine(
    backend: DiffusersBackend,
    loaded: LoadedModel,
    image: Image.Image,
    params: Any,
    settings: UpscaleSettings,
    previewer: Previewer | None,
    relay: Relay,
) -> Image.Image:
    """img2img at the refine strength on overlapping tiles, blended by TileBlender: each
    tile's detail over the source's tone, feathered, the cross-fade's lost contrast restored."""
    from ldstudio.engine.pipelines import TASK_INPAINT, task_pipeline
    from ldstudio.engine.schedulers import build_scheduler

    if loaded.inpainting:
        raise JobError(
            f"refine: {loaded.name} is an inpainting model; the tiled refine needs a plain "
            "(4-channel) model (or use refine strength 0)"
        )
    width, height = image.size
    tiles = tile_grid(width, height, settings.tile, settings.overlap)
    strength = settings.refine_strength
    pipe = task_pipeline(loaded, TASK_INPAINT)
    scheduler = build_scheduler(params.scheduler, loaded.base_scheduler_config, 0)
    per_tile = inpaint.steps_for_strength(
        scheduler, params.steps, inpaint.pipe_strength(strength, params.steps)
    )
    relay.send(
        StageStarted(
            params.replace(width=width, height=height),
            per_tile * len(tiles),
            1,
            index=1,
            count=2,
            name=f"{STAGE_REFINE}, {len(tiles)} tiles of {settings.tile} px",
        )
    )
    # The blend's float sums are the only output-sized buffers besides the image itself.
    blender = TileBlender(image, settings.overlap)
    tile_relay = _TileRelay(relay, per_tile * len(tiles))
    for tile in tiles:
        relay.check(0)
        crop = image.crop((tile.x0, tile.y0, tile.x1, tile.y1))
        size = (inpaint.round8(tile.width), inpaint.round8(tile.height))
        job = CanvasPlan(
            canvas=crop,
            mask=np.ones((tile.height, tile.width), np.float32),
            region=(0, 0, tile.width, tile.height),
            size=size,
            origin=(tile.x0, tile.y0),
            masked=True,
        )
        run_params = params.replace(width=size[0], height=size[1], batch_size=1, batch_count=1)
        tile_relay.image = None
        inpaint._run_batch(
            backend,
            loaded,
            pipe,
            job,
            run_params,
            strength,
            False,
            "original",
            previewer,
            tile_relay,  # type: ignore[arg-type]  # a Relay's send/check
            0,
            lambda own: Request(params=own),
            True,  # canvas-position noise: overlapping tiles share their noise
            stage=1,
            first_index=0,
            composite=False,
        )
        tile_relay.before += per_tile
        made = tile_relay.image
        if made is None:
            raise JobError(f"refine: tile at {tile.x0},{tile.y0} produced no image")
        if made.size != crop.size:
            made = made.resize(crop.size, Image.Resampling.LANCZOS)
        blender.add(tile, made.convert("RGB"))
    return blender.result()
