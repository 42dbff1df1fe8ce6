"""Canvas jobs (img2img, inpaint, outpaint: the one `inpaint` kind) on the loaded model; torch
thread for `run`, any thread for the pixel work (`read_inputs`, `plan`, `finish`).

One pipeline: the loaded model's inpaint task pipeline (`task_pipeline`, from_pipe: no second
copy of the weights). The pixels around it are ours:

- `plan` turns the source, the mask and the settings into a canvas (outpaint extends it), the
  prepared mask (invert, blur) and the region the model runs on, at what size: the whole
  canvas rounded to a multiple of 8, or for "Only masked" the mask's box grown by the padding
  to the processing aspect (`core.masking.crop_region`), at the model's native size.
- `run` denoises that region. A 4-channel model gets a full mask (diffusers' binarised blend
  is then a no-op) and the latent noise mask is ours, step by step (`SoftInpaint`: soft masks
  stay soft); a 9-channel inpainting UNet gets the real mask, which diffusers concatenates
  with the masked image's latents. The initial noise is canvas-position noise (engine/noise.py)
  handed in by wrapping the pipeline's `prepare_latents` for the call.
- `finish` pastes the result back, matches its colour to the source's at the mask border and
  composites: outside the mask the output is the source, bit for bit.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ldstudio.core import masking
from ldstudio.core.backend import BlobSource, ImageResult, JobError, StageStarted
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.params import SEED_MAX, GenerationParams
from ldstudio.core.request import ROLE_IMAGE, ROLE_MASK, Request

if TYPE_CHECKING:
    import torch

    from ldstudio.engine.backend import DiffusersBackend
    from ldstudio.engine.models import LoadedModel
    from ldstudio.engine.previews import Previewer
    from ldstudio.engine.relay import Relay

LATENT_SCALE = 8  # pixels per latent
COLOUR_BAND = 16  # px of kept pixels around the mask whose colour the result is matched to
NOISE_SALT_CONTENT = 1  # the canvas-noise field "latent noise" masked content draws from
_MAX_SIDE = 8192


@dataclass(frozen=True)
class CanvasPlan:
    """The pixel geometry of one canvas job (no torch): what runs where, at what size."""

    canvas: Image.Image  # the source, extended by any outpaint: the image composited over
    mask: np.ndarray  # float32 canvas-sized, in [0, 1]: prepared (inverted, blurred)
    region: tuple[int, int, int, int]  # the canvas box the model repaints (x0, y0, x1, y1)
    size: tuple[int, int]  # the size the model runs at (multiples of 8)
    origin: tuple[int, int]  # the region's top-left in source pixels (negative: outpaint)
    masked: bool  # a mask or an outpaint says what to repaint (else: the whole image)

    @property
    def anything(self) -> bool:
        """Whether any pixel is to be repainted at all."""
        return bool(self.mask.any())


def read_inputs(
    blobs: BlobSource | None, request: Request
) -> tuple[Image.Image, Image.Image | None]:
    """The request's source image (RGB or RGBA) and mask ("L", 255 = repaint) from the blobs.

    JobError naming the blob for one that is missing, damaged or not an image, and for a mask
    whose size is not the image's.
    """
    if blobs is None:
        raise JobError(
            "This engine has no blob store to read the source image from (start it with the "
            "library's blobs)."
        )
    image_sha = request.input(ROLE_IMAGE)
    if image_sha is None:
        raise JobError("inputs: an inpaint request needs its source image")
    image = _read_image(blobs, image_sha, "source image")
    image = (
        image
        if image.mode in ("RGB", "RGBA")
        else image.convert(
            "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
        )
    )
    mask_sha = request.input(ROLE_MASK)
    if mask_sha is None:
        return image, None
    mask = _read_image(blobs, mask_sha, "mask")
    mask = mask if mask.mode == "L" else masking.mask_from_image(mask)
    if mask.size != image.size:
        raise JobError(
            f"mask {mask_sha[:12]}: {mask.width}×{mask.height} is not the source image's size "
            f"{image.width}×{image.height}"
        )
    return image, mask


def _read_image(blobs: BlobSource, digest: str, what: str) -> Image.Image:
    try:
        data = blobs.get(digest)
    except (KeyError, ValueError, OSError) as exc:
        raise JobError(f"{what} {digest[:12]} cannot be read: {_unquoted(exc)}") from None
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if max(opened.size) > _MAX_SIDE:
                raise JobError(
                    f"{what} {digest[:12]}: {opened.width}×{opened.height}; allowed: at most "
                    f"{_MAX_SIDE} px a side"
                )
            opened.load()
            return opened.copy()
    except JobError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise JobError(f"{what} {digest[:12]} is damaged or not an image: {exc}") from None


def _unquoted(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def round8(value: float) -> int:
    """The nearest multiple of 8 (at least 8): a size the VAE and the UNet take."""
    return max(LATENT_SCALE, round(value / LATENT_SCALE) * LATENT_SCALE)


def plan(
    image: Image.Image,
    mask: Image.Image | None,
    settings: InpaintSettings,
    width: int | None,
    height: int | None,
    native: int,
) -> CanvasPlan:
    """Where and at what size the model runs, from the pixels and the settings (A1111's rules).

    No mask and no outpaint is img2img: the whole image is masked. `invert` inverts the user's
    mask only (an outpaint's new area is always repainted); blur applies to the whole mask.
    """
    left, top, _right, _bottom = settings.outpaint
    user = mask
    if user is not None and settings.invert_mask:
        user = user.point(lambda v: 255 - v)
    if settings.outpainting:
        canvas, raw = masking.extend_canvas(image, user, settings.outpaint)
    else:
        canvas = image
        raw = user if user is not None else Image.new("L", image.size, 255)
    prepared = masking.prepare_mask(raw, invert=False, blur=settings.mask_blur)
    masked = mask is not None or settings.outpainting
    full = (0, 0, canvas.width, canvas.height)
    if settings.inpaint_area == "masked" and masked and prepared.any():
        if width and height:
            size = (round8(width), round8(height))
        else:
            # The model's native area at the padded mask box's own aspect.
            box = _padded_box(prepared, settings.mask_padding)
            aspect = (box[2] - box[0]) / (box[3] - box[1])
            size = (round8(native * math.sqrt(aspect)), round8(native / math.sqrt(aspect)))
        region = masking.crop_region(
            prepared, settings.mask_padding, canvas.width, canvas.height, size[0] / size[1]
        )
    else:
        region = full
        size = (round8(width or canvas.width), round8(height or canvas.height))
    return CanvasPlan(
        canvas=canvas,
        mask=prepared,
        region=region,
        size=size,
        origin=(region[0] - left, region[1] - top),
        masked=masked,
    )


def _padded_box(mask: np.ndarray, padding: int) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (
        max(0, int(cols[0]) - padding),
        max(0, int(rows[0]) - padding),
        min(width, int(cols[-1]) + 1 + padding),
        min(height, int(rows[-1]) + 1 + padding),
    )


def model_input(job: CanvasPlan) -> tuple[Image.Image, np.ndarray]:
    """The region as the model sees it: RGB at the run size, and the mask at that size."""
    x0, y0, x1, y1 = job.region
    crop = job.canvas.crop(job.region).convert("RGB")
    mask = job.mask[y0:y1, x0:x1]
    if crop.size != job.size:
        crop = crop.resize(job.size, Image.Resampling.LANCZOS)
        scaled = Image.fromarray(np.ascontiguousarray(mask), "F").resize(
            job.size, Image.Resampling.BILINEAR
        )
        mask = np.clip(np.asarray(scaled, dtype=np.float32), 0.0, 1.0)
    return crop, mask


def finish(job: CanvasPlan, generated: Image.Image) -> Image.Image:
    """The generated region back in the canvas, colour-matched and composited over it.

    Only the region is worked on (the mask is 0 outside it): the rest of the canvas is copied
    as it is, so an "Only masked" job on a large image costs a copy, not a pass over it.
    """
    x0, y0, x1, y1 = job.region
    original = job.canvas.crop(job.region)
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.Resampling.LANCZOS)
    mask = job.mask[y0:y1, x0:x1]
    matched = masking.match_colour(
        np.asarray(generated.convert("RGB")),
        np.asarray(original.convert("RGB")),
        mask,
        COLOUR_BAND,
    )
    piece = masking.composite(original, Image.fromarray(np.asarray(matched, np.uint8)), mask)
    if job.region == (0, 0, job.canvas.width, job.canvas.height):
        return piece
    out = job.canvas.copy()
    out.paste(piece, (x0, y0))
    return out


def concrete_request(
    request: Request, params: GenerationParams, settings: InpaintSettings
) -> Request:
    """One image's request: its own params (seed, batch 1, run size) and the strength used."""
    return dataclasses.replace(request, params=params, inpaint=settings)


# -- the torch side --------------------------------------------------------------------------


def run(
    backend: DiffusersBackend,
    request: Request,
    loaded: LoadedModel,
    params: GenerationParams,
    previewer: Previewer | None,
    relay: Relay,
) -> None:
    """Run a canvas request (params resolved: seed, LoRAs) and send its events."""
    settings = request.inpaint
    if settings is None:
        raise JobError("inpaint: an inpaint request needs its inpaint settings")
    image, mask = read_inputs(backend.blobs, request)
    job = plan(image, mask, settings, params.width, params.height, loaded.native_size)
    strength = settings.resolved_strength(inpainting_model=loaded.inpainting, masked=job.masked)
    used = settings.replace(strength=strength)
    run_params = params.replace(width=job.size[0], height=job.size[1])
    _run_job(
        backend,
        loaded,
        job,
        run_params,
        strength,
        used.soft,
        used.masked_content,
        previewer,
        relay,
        name=request.face,
        record=lambda own: concrete_request(request, own, used),
        canvas_noise=True,
    )


def run_txt2img(
    backend: DiffusersBackend,
    loaded: LoadedModel,
    params: GenerationParams,
    previewer: Previewer | None,
    relay: Relay,
) -> None:
    """txt2img on an inpainting (9-channel) model, as A1111 runs it: an inpaint of a blank
    image with everything masked at strength 1 (the masked image's latents are all zero),
    from txt2img's seed → noise."""
    width, height = int(params.width or 0), int(params.height or 0)
    blank = Image.new("RGB", (width, height), (127, 127, 127))
    job = CanvasPlan(
        canvas=blank,
        mask=np.ones((height, width), np.float32),
        region=(0, 0, width, height),
        size=(round8(width), round8(height)),
        origin=(0, 0),
        masked=True,
    )
    _run_job(
        backend,
        loaded,
        job,
        params,
        1.0,
        False,
        "original",
        previewer,
        relay,
        name="txt2img",
        record=Request.txt2img,
        canvas_noise=False,
    )


def _run_job(
    backend: DiffusersBackend,
    loaded: LoadedModel,
    job: CanvasPlan,
    params: GenerationParams,
    strength: float,
    soft: bool,
    content: str,
    previewer: Previewer | None,
    relay: Relay,
    *,
    name: str,
    record: Any,
    canvas_noise: bool,
) -> None:
    from ldstudio.engine.pipelines import TASK_INPAINT, task_pipeline
    from ldstudio.engine.schedulers import build_scheduler

    nothing = strength == 0.0 or not job.anything
    total = 0
    pipe = None
    if not nothing:
        pipe = task_pipeline(loaded, TASK_INPAINT)
        scheduler = build_scheduler(params.scheduler, loaded.base_scheduler_config, 0)
        total = steps_for_strength(scheduler, params.steps, pipe_strength(strength, params.steps))
    relay.send(
        StageStarted(params=params, total_steps=total, image_count=params.image_count, name=name)
    )
    if nothing:
        # Strength 0 (or an empty mask) repaints nothing: the source as it is, no model call
        # (diffusers refuses strength 0).
        started = time.perf_counter()
        for index in range(params.image_count):
            own = params.replace(seed=params.seed_for(index), batch_size=1, batch_count=1)
            relay.check(0)
            relay.send(
                ImageResult(
                    image=job.canvas.copy(),
                    params=own,
                    index=index,
                    model_name=loaded.name,
                    seconds=time.perf_counter() - started,
                    request=record(own),
                )
            )
        return
    last_step = 0
    for batch_index in range(params.batch_count):
        relay.check(last_step)
        last_step = _run_batch(
            backend,
            loaded,
            pipe,
            job,
            params,
            strength,
            soft,
            content,
            previewer,
            relay,
            batch_index,
            record,
            canvas_noise,
        )


def pipe_strength(strength: float, steps: int) -> float:
    """The strength passed to diffusers: at least one step runs for any strength above 0
    (diffusers refuses a strength that rounds to no step at all)."""
    if int(steps * strength) >= 1:
        return strength
    return min(1.0, 1.0 / steps + 1e-9)


def steps_for_strength(scheduler: Any, steps: int, strength: float) -> int:
    """How many denoiser steps a call runs at this strength (the pipelines' get_timesteps)."""
    scheduler.set_timesteps(steps)
    start = steps - min(int(steps * strength), steps)
    order = int(getattr(scheduler, "order", 1))
    return len(scheduler.timesteps) - start * order


def _run_batch(
    backend: DiffusersBackend,
    loaded: LoadedModel,
    pipe: Any,
    job: CanvasPlan,
    params: GenerationParams,
    strength: float,
    soft: bool,
    content: str,
    previewer: Previewer | None,
    relay: Relay,
    batch_index: int,
    record: Any,
    canvas_noise: bool,
    *,
    stage: int = 0,
    first_index: int | None = None,
    start_latents: torch.Tensor | None = None,
    composite: bool = True,
) -> int:
    """One pipeline call on the plan's region; returns the steps it ran.

    For a hires fix's second pass (engine/hires.py): `stage` 1, the image's own `first_index`,
    `start_latents` (the upscaled latents, instead of encoding the image) and no composite
    (the whole image is the pass's).
    """
    import torch
    import torch.nn.functional as F

    from ldstudio.engine import performance
    from ldstudio.engine.callbacks import (
        CancelCheck,
        FinalLatents,
        GuidanceCutoff,
        MaskedX0,
        Preview,
        Progress,
        SoftInpaint,
        StepCallbacks,
        X0Tap,
    )
    from ldstudio.engine.device import is_out_of_memory
    from ldstudio.engine.prompts import scheduled_arguments
    from ldstudio.engine.schedulers import build_scheduler

    first = batch_index * params.batch_size if first_index is None else first_index
    seeds = [params.seed_for(first + i) for i in range(params.batch_size)]
    pipe.scheduler = build_scheduler(params.scheduler, loaded.base_scheduler_config, seeds)
    tap = X0Tap(pipe.scheduler)
    width, height = job.size
    latent_w, latent_h = width // LATENT_SCALE, height // LATENT_SCALE
    init, mask = model_input(job)
    if content == "fill":
        init = masking.fill_masked(init, mask)
    noise = _noise(seeds, job.origin, latent_w, latent_h, canvas_noise)
    if params.varied and start_latents is None:  # a hires fix's pass 2 keeps its own noise
        noise = _varied(noise, params, first, job.origin, latent_w, latent_h, canvas_noise)
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    device = loaded.choice.device
    if start_latents is not None:
        original = start_latents.float().cpu()
    else:
        with torch.no_grad():
            pixels = pipe.image_processor.preprocess(init, height=height, width=width)
            pixels = pixels.to(device=device, dtype=pipe.vae.dtype)
            original = pipe._encode_vae_image(image=pixels, generator=generators[0]).float().cpu()
    latent_mask = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(mask))[None, None],
        size=(latent_h, latent_w),
        mode="area",
    )
    start = _masked_content(original, latent_mask, content, seeds[0], job.origin)
    inpainting = loaded.inpainting
    performance.set_vae_tiling(pipe, backend.resolved.tiling_for(width, height))
    steps_total = steps_for_strength(
        pipe.scheduler, params.steps, pipe_strength(strength, params.steps)
    )
    final = FinalLatents(steps_total)
    shown = MaskedX0(tap, latent_mask, original)
    preview = Preview(shown, previewer, params.preview_interval) if previewer else None
    progress = Progress(
        relay.send, steps_total, batch_index=batch_index, stage=stage, preview=preview
    )
    text, swap = scheduled_arguments(pipe, params, device, steps_total)
    callbacks = StepCallbacks(
        [
            CancelCheck(relay.check),
            swap,
            # A 9-channel UNet is shown the mask itself; a 4-channel one is masked by us.
            None if inpainting else SoftInpaint(latent_mask, start, noise, soft=soft),
            GuidanceCutoff.for_pipe(pipe, params, steps_total),
            final,
            preview,
            progress,
        ]
    )
    if inpainting:
        mask_image = Image.fromarray(np.rint(mask * 255).astype(np.uint8), "L")
        masked_latents = None
    else:
        # Everything "repainted" as far as the pipeline knows: its binarised blend keeps our
        # latents, and zero masked-image latents spare it a VAE encode it would not use.
        mask_image = Image.new("L", (width, height), 255)
        masked_latents = torch.zeros_like(original)
    try:
        with _our_latents(pipe, noise, start):
            images = pipe(
                **text,
                image=init,
                mask_image=mask_image,
                masked_image_latents=masked_latents,
                strength=pipe_strength(strength, params.steps),
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                width=width,
                height=height,
                num_images_per_prompt=params.batch_size,
                generator=generators,
                callback_on_step_end=callbacks,
                callback_on_step_end_tensor_inputs=callbacks.tensor_inputs,
                output_type="pil",
            ).images
        latents = None
    except Exception as exc:
        latents = final.take()
        if not (is_out_of_memory(exc) and latents is not None):
            raise
    if latents is not None:
        images = backend._retry_decode_tiled(pipe, latents, relay)
    seconds = (time.perf_counter() - progress.started) / params.batch_size
    for i, generated in enumerate(images):
        own = params.replace(seed=seeds[i], batch_size=1, batch_count=1)
        recorded = record(own)  # a hires pass records its first pass's parameters
        relay.send(
            ImageResult(
                image=finish(job, generated) if composite else generated,
                params=recorded.params,
                index=first + i,
                model_name=loaded.name,
                seconds=seconds,
                request=recorded,
            )
        )
    return steps_total


def _varied(
    noise: torch.Tensor,
    params: GenerationParams,
    first: int,
    origin: tuple[int, int],
    width: int,
    height: int,
    canvas: bool,
) -> torch.Tensor:
    """A1111's variation seed on a canvas job: each image's noise slerped towards its
    variation seed's, drawn the same way (at the canvas position, or over the whole latent);
    the variation seed counts up with the image as the seed does. Per-step noise is left to
    the seed's generators, as in txt2img, so a subtle variation stays a small change."""
    import torch

    from ldstudio.engine.noise import slerp

    assert params.variation_seed is not None
    count = noise.shape[0]
    others = [(params.variation_seed + first + i) % (SEED_MAX + 1) for i in range(count)]
    other = _noise(others, origin, width, height, canvas)
    strength = params.variation_strength
    return torch.cat([slerp(strength, noise[i : i + 1], other[i : i + 1]) for i in range(count)])


def _noise(
    seeds: list[int], origin: tuple[int, int], width: int, height: int, canvas: bool
) -> torch.Tensor:
    import torch

    from ldstudio.engine.noise import canvas_noise

    if canvas:
        x, y = origin[0] // LATENT_SCALE, origin[1] // LATENT_SCALE
        return torch.cat([canvas_noise(seed, x, y, width, height) for seed in seeds])
    # txt2img's seed → noise: one CPU generator per image over the whole latent image.
    return torch.cat(
        [
            torch.randn((1, 4, height, width), generator=torch.Generator("cpu").manual_seed(s))
            for s in seeds
        ]
    )


def _masked_content(
    original: torch.Tensor, mask: torch.Tensor, content: str, seed: int, origin: tuple[int, int]
) -> torch.Tensor:
    """The latents the job starts from (before noise): A1111's "latent noise" and "latent
    nothing" replace the masked latents (mask ≥ 0.5) with noise or zeros."""
    import torch

    from ldstudio.engine.noise import canvas_noise

    if content not in ("latent_noise", "latent_nothing"):
        return original
    height, width = original.shape[-2:]
    if content == "latent_noise":
        x, y = origin[0] // LATENT_SCALE, origin[1] // LATENT_SCALE
        fill = canvas_noise(seed, x, y, width, height, original.shape[1], NOISE_SALT_CONTENT)
    else:
        fill = torch.zeros_like(original)
    return torch.where(mask >= 0.5, fill, original)


@contextmanager
def _our_latents(pipe: Any, noise: torch.Tensor, start: torch.Tensor) -> Iterator[None]:
    """The pipeline starts from our noise and our start latents for this one call.

    diffusers' inpaint `prepare_latents` draws its own noise, and given `latents` it ignores
    strength (it scales them as pure noise). This stand-in does what it does with our tensors:
    strength 1 → noise × init sigma; below → the start latents noised to the first timestep.
    The instance attribute shadows the class method; deleting it restores the pipeline.
    """

    def prepare_latents(
        batch_size: int,
        num_channels_latents: int,
        height: int,
        width: int,
        dtype: Any,
        device: Any,
        generator: Any,
        latents: Any = None,
        image: Any = None,
        timestep: Any = None,
        is_strength_max: bool = True,
        add_noise: bool = True,
        return_noise: bool = False,
        return_image_latents: bool = False,
    ) -> tuple[Any, ...]:
        ours = noise.to(device=device, dtype=dtype)
        image_latents = start.to(device=device, dtype=dtype).expand_as(ours).contiguous()
        if is_strength_max:
            out = ours * pipe.scheduler.init_noise_sigma
        else:
            out = pipe.scheduler.add_noise(image_latents, ours, timestep)
        outputs: tuple[Any, ...] = (out,)
        if return_noise:
            outputs += (ours,)
        if return_image_latents:
            outputs += (image_latents,)
        return outputs

    pipe.prepare_latents = prepare_latents
    try:
        yield
    finally:
        del pipe.prepare_latents
