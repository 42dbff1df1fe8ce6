"""DiffusersBackend: runs requests through a cached diffusers pipeline; called from one thread
(the service's worker), all its torch work runs on its own torch thread.

`execute(request, cancel)` yields the job's events (see ldstudio.core.backend) and ends as the
contract says: exhausted, `Cancelled(step)`, `JobError` (an unusable model, out of memory), or
any other exception, which the EngineService words. It saves nothing: the service does.
The events are made on the torch thread, inside diffusers' step callback, and relayed to the
caller's thread as they happen (engine/relay.py), so previews stream during denoising.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import torch

from ldstudio.core.backend import BackendEvent, BlobSource, ImageResult, JobError, StageStarted
from ldstudio.core.events import EngineNotice, ModelLoading, ModelReady
from ldstudio.core.jobs import CancelToken
from ldstudio.core.models import ModelRegistry
from ldstudio.core.models.preflight import preflight_problems
from ldstudio.core.options import EngineOptions
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import KIND_INPAINT, KIND_TXT2IMG, KIND_UPSCALE, Request
from ldstudio.engine import inpaint, performance, previews
from ldstudio.engine.callbacks import (
    CancelCheck,
    FinalLatents,
    GuidanceCutoff,
    Preview,
    Progress,
    StepCallbacks,
    X0Tap,
)
from ldstudio.engine.device import (
    DeviceChoice,
    choose_device,
    free_memory,
    is_out_of_memory,
    total_memory,
)
from ldstudio.engine.lora import ExtrasState, resolve_prompt_loras
from ldstudio.engine.models import LoadedModel, PipelineCache, resolve_model_path
from ldstudio.engine.noise import txt2img_noise
from ldstudio.engine.prompts import scheduled_arguments
from ldstudio.engine.relay import Relay, TorchThread
from ldstudio.engine.schedulers import build_scheduler

log = logging.getLogger(__name__)

Emit = Callable[[BackendEvent], None]
T = TypeVar("T")

COMPILE_NOTICE = (
    "Compiling the UNet: this first image takes longer (one-time warm-up, "
    "kept in the cache for later runs)."
)
TILED_RETRY_NOTICE = (
    "The VAE decode ran out of memory; it was retried once with VAE tiling and "
    "succeeded. Turn VAE tiling on to skip the failed first attempt."
)


class DiffusersBackend:
    """Owns all torch state, created and used on its one torch thread.

    `device`/`dtype` override the same fields of `options`. ValueError for options the
    machine cannot honour (e.g. CUDA requested without a CUDA GPU).
    """

    def __init__(
        self,
        options: EngineOptions | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        blobs: BlobSource | None = None,
    ) -> None:
        self.blobs = blobs
        options = (options or EngineOptions()).validate()
        self.options = dataclasses.replace(
            options, device=device or options.device, dtype=dtype or options.dtype
        ).validate()
        self.choice: DeviceChoice = choose_device(self.options.device, self.options.dtype)
        self.resolved = performance.resolve(
            self.options, self.choice, total_memory(self.choice.device)
        )
        self._torch = TorchThread()
        self._cache = PipelineCache()
        self._previewers: dict[tuple[str, str], previews.Previewer] = {}
        self._extras = ExtrasState()
        self._compiled_warm = False
        # The last upscaler model used, with the file's (mtime, size) when it was loaded.
        self._upscaler: tuple[Any, tuple[int, int], Any] | None = None

    # -- model ---------------------------------------------------------------------------

    def load(self, model: str, emit: Emit) -> LoadedModel:
        """Load `model` (or reuse the loaded one) on the torch thread; `emit` gets
        ModelLoading (when it loads) and ModelReady, on that thread."""
        return self._torch.call(lambda: self._load(model, emit))

    def on_torch_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` where the engine runs its torch work and return its result (for benchmarks
        and checks that must call the pipeline exactly as the engine does)."""
        return self._torch.call(fn)

    def _load(self, model: str, emit: Emit) -> LoadedModel:
        path = resolve_model_path(model)

        def on_reload() -> None:
            emit(ModelLoading(model=str(path), device=self.choice.device, dtype=self.choice.dtype))
            # Previewers hold the old pipeline's VAE, the extras its VAEs: a reload for any
            # reason drops them (task pipelines go with the LoadedModel they are kept on).
            self._previewers.clear()
            self._extras.clear()

        loaded, cached = self._cache.get(
            path,
            self.choice,
            place=lambda pipe: performance.apply(pipe, self.resolved, self.choice),
            setup=self.resolved,
            on_reload=on_reload,
        )
        if not cached:
            self._compiled_warm = False
        emit(
            ModelReady(
                model=loaded.name,
                family=loaded.family,
                device=self.choice.device,
                dtype=self.choice.dtype,
                seconds=0.0 if cached else loaded.seconds,
                cached=cached,
            )
        )
        return loaded

    def upscaler(self, path: Any) -> Any:
        """The upscaler model in `path` (a LoadedUpscaler), kept loaded until another one is
        used or the file changes; torch thread. JobError naming the file if it cannot load."""
        from ldstudio.engine.upscalers.loader import load_upscaler

        try:
            stat = path.stat()
        except OSError as exc:
            raise JobError(f"upscaler: {path}: {exc.strerror or exc}") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._upscaler is not None and self._upscaler[:2] == (path, stamp):
            return self._upscaler[2]
        self._upscaler = None
        loaded = load_upscaler(path, self.choice.device)
        self._upscaler = (path, stamp, loaded)
        return loaded

    def _previewer(self, loaded: LoadedModel, method: str) -> previews.Previewer | None:
        if method == "none":
            return None
        key = (str(loaded.path), method)
        if key not in self._previewers:
            pipe = loaded.pipe
            if method == "latent2rgb":
                table = previews.table_for_model(
                    loaded.path, loaded.family, pipe.vae, str(loaded.path)
                )
                factor = float(pipe.vae.config.scaling_factor)
                self._previewers[key] = previews.LatentRGBPreviewer(table, factor)
            elif method == "vae":
                self._previewers[key] = previews.DecoderPreviewer(pipe.vae)
            elif method == "taesd":
                self._previewers[key] = previews.DecoderPreviewer(
                    previews.load_taesd(loaded.family, self.choice)
                )
            else:
                raise ValueError(f"preview_method: {method!r} is not supported")
        return self._previewers[key]

    # -- jobs ----------------------------------------------------------------------------

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]:
        """Run `request` on the torch thread and yield its events as they happen.

        One job at a time: its torch side waits for this stream's consumer at every step, so
        end (or close) one stream before iterating the next. Closing it early stops the job
        at its next step and waits for that.
        """
        cancel.raise_if_cancelled(0)
        relay = Relay(cancel)
        self._torch.submit(lambda: self._job(request, relay))
        yield from relay.stream()

    def _job(self, request: Request, relay: Relay) -> None:
        """The whole job, on the torch thread; how it ended goes to the relay."""
        error: BaseException | None = None
        out_of_memory = False
        try:
            self._run(request, relay)
        except Exception as exc:
            out_of_memory = isinstance(exc, _TiledDecodeOutOfMemory) or is_out_of_memory(exc)
            if out_of_memory:
                error = JobError(self._failure_message(exc, request.params), _detail(exc))
            else:
                error = exc
        except BaseException as exc:  # the consumer must hear of every end, or it waits forever
            error = exc
        if out_of_memory:
            # Here, not in the handler: the failed call's frames (and tensors) are gone now.
            free_memory(self.choice.device)
        relay.finish(error)

    def _run(self, request: Request, relay: Relay) -> None:
        if request.kind not in (KIND_TXT2IMG, KIND_INPAINT, KIND_UPSCALE):
            raise JobError(f"kind: {request.kind!r} is not supported by the diffusers engine")
        upscaling = request.kind == KIND_UPSCALE
        if upscaling and request.upscale is not None and not request.upscale.refines:
            from ldstudio.engine import upscale

            upscale.run(self, request, relay)  # no diffusion model needed (or loaded)
            return
        # The checks the CLI and the window made before queueing, made again here: the files
        # may have changed since, and a request may come from elsewhere (an API, a kept
        # queue). The preview method is checked after loading, against the model loaded.
        problems = preflight_problems(request.params, ModelRegistry.shared())
        problems = [problem for problem in problems if problem.field != "preview_method"]
        if problems:
            raise JobError(problems[0].message)
        if upscaling:
            from ldstudio.engine import upscale

            upscale.run(self, request, relay)
            return
        loaded = self._load(request.params.model, relay.send)
        canvas = request.kind == KIND_INPAINT
        # A canvas job's size comes from its source (engine/inpaint.py plans it).
        params = self._concrete(request.params, loaded, sized=not canvas)
        if self._extras.apply(loaded, params):
            # A "vae" previewer holds the VAE that was just swapped.
            self._previewers.pop((str(loaded.path), "vae"), None)
        previewer = self._previewer(loaded, params.preview_method)
        if canvas:
            inpaint.run(self, request, loaded, params, previewer, relay)
            return
        if request.hires is not None:
            if loaded.inpainting:
                raise JobError(
                    f"hires fix: {loaded.name} is an inpainting model; a hires fix needs a "
                    "plain (4-channel) model"
                )
            from ldstudio.engine import hires

            hires.run(self, request, loaded, params, previewer, relay)
            return
        if loaded.inpainting:
            inpaint.run_txt2img(self, loaded, params, previewer, relay)
            return
        relay.send(
            StageStarted(
                params=params,
                total_steps=params.steps,
                image_count=params.image_count,
                index=0,
                count=1,
                name=KIND_TXT2IMG,
            )
        )
        if self.resolved.compile_unet and not self._compiled_warm:
            relay.send(EngineNotice(COMPILE_NOTICE))
        last_step = 0
        for batch_index in range(params.batch_count):
            relay.check(last_step)
            last_step = self._run_batch(params, loaded, previewer, batch_index, relay)

    def _concrete(
        self, params: GenerationParams, loaded: LoadedModel, sized: bool = True
    ) -> GenerationParams:
        """Resolve the seed, the model's native size (when `sized`) and prompt LoRA tags (to
        file paths, out of the prompt the text encoder sees), so saved params are exact."""
        params = resolve_prompt_loras(params.resolved())
        if not sized:
            return params
        return params.replace(
            width=params.width or loaded.native_size,
            height=params.height or loaded.native_size,
        )

    def _run_batch(
        self,
        params: GenerationParams,
        loaded: LoadedModel,
        previewer: previews.Previewer | None,
        batch_index: int,
        relay: Relay,
        stage: int = 0,
        deliver: Deliver | None = None,
    ) -> int:
        """One pipeline call of `params.batch_size` images; returns the steps it ran.

        `deliver`: a hires fix's first pass hands each image on (with its params, index and
        seconds) instead of sending it; with `deliver.latents` it hands on the final latents
        (1×4×h×w) undecoded.
        """
        pipe = loaded.pipe
        first = batch_index * params.batch_size
        seeds = [params.seed_for(first + i) for i in range(params.batch_size)]
        pipe.scheduler = build_scheduler(params.scheduler, loaded.base_scheduler_config, seeds)
        tap = X0Tap(pipe.scheduler)
        # CPU generators: the same seed gives the same starting noise on every machine.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        performance.set_vae_tiling(
            pipe, self.resolved.tiling_for(int(params.width or 0), int(params.height or 0))
        )
        # Second-order samplers run more than `steps` denoiser calls; report what really runs.
        total_steps = _steps_for(pipe.scheduler, params.steps)
        final = FinalLatents(total_steps)
        preview = Preview(tap, previewer, params.preview_interval) if previewer else None
        progress = Progress(
            relay.send, total_steps, batch_index=batch_index, stage=stage, preview=preview
        )
        # The prompts' texts or embeddings, and a swap of them where the prompt edits itself.
        text, swap = scheduled_arguments(pipe, params, self.choice.device, total_steps)
        callbacks = StepCallbacks(
            [
                CancelCheck(relay.check),
                swap,
                GuidanceCutoff.for_pipe(pipe, params, total_steps),
                final,
                preview,
                progress,
            ]
        )
        # A variation seed or Seed resize from: our noise (else the pipeline draws the seed's).
        latent_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        start = txt2img_noise(
            params,
            first,
            int(params.width or 0) // latent_scale,
            int(params.height or 0) // latent_scale,
            latent_scale,
        )
        if start is not None:
            # Each generator still draws (and drops) its seed's noise: an ancestral sampler's
            # per-step noise then comes from where it would without a variation, so a subtle
            # variation stays a small change.
            for generator in generators:
                torch.randn((1, *start.shape[1:]), generator=generator)
        try:
            images = pipe(
                **text,
                latents=start,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                width=params.width,
                height=params.height,
                num_images_per_prompt=params.batch_size,
                generator=generators,
                callback_on_step_end=callbacks,
                callback_on_step_end_tensor_inputs=callbacks.tensor_inputs,
                output_type="latent" if deliver is not None and deliver.latents else "pil",
            ).images
            latents = None
        except Exception as exc:
            latents = final.take()
            if not (is_out_of_memory(exc) and latents is not None):
                raise
        if latents is not None:
            # Denoising finished but the decode ran out of memory; retried out of the handler,
            # so the failed decode's tensors are freed first.
            images = self._retry_decode_tiled(pipe, latents, relay)
        self._compiled_warm = True
        seconds = (time.perf_counter() - progress.started) / params.batch_size
        for i, image in enumerate(images):
            own = params.replace(seed=seeds[i], batch_size=1, batch_count=1)
            if deliver is not None:
                deliver(image[None] if deliver.latents else image, own, first + i, seconds)
                continue
            relay.send(
                ImageResult(
                    image=image,
                    params=own,
                    index=first + i,
                    model_name=loaded.name,
                    seconds=seconds,
                    request=Request.txt2img(own),
                )
            )
        return total_steps

    def _retry_decode_tiled(self, pipe: Any, latents: torch.Tensor, relay: Relay) -> list[Any]:
        """Denoising finished but the VAE decode ran out of memory: decode again, tiled."""
        free_memory(self.choice.device)
        was_tiled = bool(getattr(pipe.vae, "use_tiling", False))
        performance.set_vae_tiling(pipe, True)
        try:
            images = performance.decode_latents(pipe, latents)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise _TiledDecodeOutOfMemory(str(exc)) from exc
            raise
        finally:
            performance.set_vae_tiling(pipe, was_tiled)
        relay.send(EngineNotice(TILED_RETRY_NOTICE))
        return images

    def _failure_message(self, exc: BaseException, params: GenerationParams) -> str:
        if not (isinstance(exc, _TiledDecodeOutOfMemory) or is_out_of_memory(exc)):
            return f"Generation failed: {type(exc).__name__}: {exc}"
        device = self.choice.device
        size = f"{params.width or 'native'}×{params.height or 'native'}"
        where = (
            "while decoding, even when retried with VAE tiling"
            if isinstance(exc, _TiledDecodeOutOfMemory)
            else "while generating"
        )
        # Only what can help on this device: CPU offload needs CUDA; tiling was just tried.
        helps = ["a smaller size", "a smaller batch size" if params.batch_size > 1 else ""]
        if device == "cpu":
            helps.append("closing other programs (on the CPU the limit is your RAM)")
        else:
            helps.append("attention slicing (Settings → Engine options)")
            if device == "cuda":
                helps.append("CPU offload")
        if not isinstance(exc, _TiledDecodeOutOfMemory):
            helps.append("VAE tiling")
        advice = ", ".join(h for h in helps if h)
        return (
            f"Out of memory on {device.upper()} {where} {size} with batch size "
            f"{params.batch_size}. Try {advice}."
        )

    def close(self) -> None:
        """Drop the pipeline and end the torch thread (a later job starts it again)."""
        if self._torch.thread is not None:
            self._torch.call(self._release)
        else:
            self._release()
        self._torch.close()

    def _release(self) -> None:
        self._cache.clear()
        self._previewers.clear()
        self._extras.clear()
        self._upscaler = None
        free_memory(self.choice.device)


class _TiledDecodeOutOfMemory(RuntimeError):
    """The decode ran out of memory a second time, tiled: tiling is no advice any more."""


class Deliver(Protocol):
    """Where a first pass's images go instead of being sent (engine/hires.py)."""

    latents: bool  # hand on latents, not decoded images

    def __call__(
        self, image: Any, params: GenerationParams, index: int, seconds: float
    ) -> None: ...


def _steps_for(scheduler: Any, steps: int) -> int:
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def _detail(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-6:])
