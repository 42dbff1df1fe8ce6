"""DiffusersBackend: runs one job at a time through a cached diffusers pipeline; engine thread.

`run()` never raises: every outcome is an event (finished, failed, cancelled), so the worker
that calls it stays alive for the next job.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from ldstudio.core.events import (
    EngineNotice,
    Event,
    ImageRecord,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StepProgress,
)
from ldstudio.core.imagefiles import ImageSink
from ldstudio.core.jobs import Cancelled, Job, JobState
from ldstudio.core.options import EngineOptions
from ldstudio.core.params import GenerationParams
from ldstudio.engine import performance, previews
from ldstudio.engine.device import (
    DeviceChoice,
    choose_device,
    free_memory,
    is_out_of_memory,
    total_memory,
)
from ldstudio.engine.lora import ExtrasState, resolve_prompt_loras
from ldstudio.engine.models import LoadedModel, ModelError, PipelineCache, resolve_model_path
from ldstudio.engine.schedulers import build_scheduler

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]


class _X0Tap:
    """Wraps a scheduler's `step` to keep its estimate of the clean image (x0).

    Euler, Euler a, DDIM and DPM++ SDE return it as `pred_original_sample`, LCM as `denoised`;
    the multistep solvers (DPM++ 2M, UniPC) keep it as their newest converted model output.
    The wrapper only reads; the returned sample is the scheduler's own. It keeps the original
    signature: pipelines inspect it to decide whether to pass `generator` and `eta`.
    """

    def __init__(self, scheduler: Any) -> None:
        self.x0: torch.Tensor | None = None
        original = scheduler.step

        @functools.wraps(original)
        def step(*args: Any, return_dict: bool = True, **kwargs: Any) -> Any:
            out = original(*args, return_dict=True, **kwargs)
            x0 = getattr(out, "pred_original_sample", None)
            if x0 is None:
                x0 = getattr(out, "denoised", None)
            if x0 is None:
                outputs = getattr(scheduler, "model_outputs", None)
                x0 = outputs[-1] if outputs else None
            self.x0 = x0
            return out if return_dict else (out.prev_sample,)

        scheduler.step = step


class DiffusersBackend:
    """Owns all torch state. Create it, and call it, on one thread only.

    `device`/`dtype` override the same fields of `options`. ValueError for options the
    machine cannot honour (e.g. CUDA requested without a CUDA GPU).
    """

    def __init__(
        self,
        options: EngineOptions | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        options = (options or EngineOptions()).validate()
        self.options = dataclasses.replace(
            options, device=device or options.device, dtype=dtype or options.dtype
        ).validate()
        self.choice: DeviceChoice = choose_device(self.options.device, self.options.dtype)
        self.resolved = performance.resolve(
            self.options, self.choice, total_memory(self.choice.device)
        )
        self._cache = PipelineCache()
        self._previewers: dict[tuple[str, str], previews.Previewer] = {}
        self._extras = ExtrasState()
        self._compiled_warm = False

    # -- model ---------------------------------------------------------------------------

    def load(self, model: str, emit: Emit) -> LoadedModel:
        path = resolve_model_path(model)

        def on_reload() -> None:
            # Previewers hold the old pipeline's VAE; a reload for any reason drops them.
            emit(ModelLoading(model=str(path), device=self.choice.device, dtype=self.choice.dtype))
            self._previewers.clear()

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

    def run(self, job: Job, emit: Emit, sink: ImageSink) -> JobState:
        """Run a job to its end; emit events; return its final state. Never raises."""
        saved: list[ImageRecord] = []
        state = _StepState()
        try:
            job.cancel_token.raise_if_cancelled()
            loaded = self.load(job.params.model, emit)
            params = self._concrete(job.params, loaded)
            if self._extras.apply(loaded, params):
                # A "vae" previewer holds the VAE that was just swapped.
                self._previewers.pop((str(loaded.path), "vae"), None)
            previewer = self._previewer(loaded, params.preview_method)
            emit(
                JobStarted(
                    job_id=job.id,
                    params=params,
                    device=self.choice.device,
                    dtype=self.choice.dtype,
                    total_steps=params.steps,
                    image_count=params.image_count,
                )
            )
            if self.resolved.compile_unet and not self._compiled_warm:
                emit(
                    EngineNotice(
                        "Compiling the UNet: this first image takes longer (one-time warm-up, "
                        "kept in the cache for later runs).",
                        job.id,
                    )
                )
            started = time.perf_counter()
            for batch_index in range(params.batch_count):
                job.cancel_token.raise_if_cancelled()
                saved.extend(
                    self._run_batch(job, params, loaded, previewer, batch_index, emit, sink, state)
                )
            emit(JobFinished(job.id, tuple(saved), time.perf_counter() - started))
            return JobState.FINISHED
        except Cancelled:
            emit(JobCancelled(job.id, step=state.step, saved=tuple(saved)))
            return JobState.CANCELLED
        except ModelError as exc:
            emit(JobFailed(job.id, str(exc), _detail(exc)))
            return JobState.FAILED
        except Exception as exc:
            emit(JobFailed(job.id, self._failure_message(exc, job.params), _detail(exc)))
            if is_out_of_memory(exc):
                free_memory(self.choice.device)
            return JobState.FAILED

    def _concrete(self, params: GenerationParams, loaded: LoadedModel) -> GenerationParams:
        """Resolve the seed, the model's native size and prompt LoRA tags (to file paths, out of
        the prompt the text encoder sees), so saved params are exact."""
        params = resolve_prompt_loras(params.resolved())
        return params.replace(
            width=params.width or loaded.native_size,
            height=params.height or loaded.native_size,
        )

    def _run_batch(
        self,
        job: Job,
        params: GenerationParams,
        loaded: LoadedModel,
        previewer: previews.Previewer | None,
        batch_index: int,
        emit: Emit,
        sink: ImageSink,
        state: _StepState,
    ) -> list[ImageRecord]:
        pipe = loaded.pipe
        first = batch_index * params.batch_size
        seeds = [params.seed_for(first + i) for i in range(params.batch_size)]
        pipe.scheduler = build_scheduler(params.scheduler, loaded.base_scheduler_config, seeds)
        tap = _X0Tap(pipe.scheduler)
        # CPU generators: the same seed gives the same starting noise on every machine.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        performance.set_vae_tiling(
            pipe, self.resolved.tiling_for(int(params.width or 0), int(params.height or 0))
        )
        cfg_keys = [
            key
            for key in ("prompt_embeds", "add_text_embeds", "add_time_ids")
            if key in pipe._callback_tensor_inputs
        ]
        # Second-order samplers run more than `steps` denoiser calls; report what really runs.
        total_steps = _steps_for(pipe.scheduler, params.steps)
        cutoff_step = _guidance_cutoff_step(params, total_steps)
        final: dict[str, torch.Tensor] = {}
        started = time.perf_counter()
        state.step = 0

        def on_step_end(_pipe: Any, index: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            step = index + 1
            state.step = step
            job.cancel_token.raise_if_cancelled()
            if step == cutoff_step:
                # From here on, conditional pass only: drop the unconditional half.
                for key in cfg_keys:
                    kwargs[key] = kwargs[key].chunk(2)[-1]
                pipe._guidance_scale = 0.0
            if step == total_steps:
                final["latents"] = kwargs["latents"]  # for a tiled retry if decode runs OOM
            elapsed = time.perf_counter() - started
            image = None
            if previewer is not None and tap.x0 is not None and step % params.preview_interval == 0:
                image = previewer(tap.x0)
            emit(
                StepProgress(
                    job_id=job.id,
                    batch_index=batch_index,
                    step=step,
                    total=total_steps,
                    elapsed=elapsed,
                    it_per_s=step / elapsed if elapsed > 0 else 0.0,
                    preview=image,
                )
            )
            return kwargs

        try:
            images = pipe(
                prompt=params.prompt,
                negative_prompt=params.negative_prompt or None,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                width=params.width,
                height=params.height,
                num_images_per_prompt=params.batch_size,
                generator=generators,
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents", *cfg_keys],
                output_type="pil",
            ).images
        except Exception as exc:
            if not (is_out_of_memory(exc) and "latents" in final):
                raise
            images = self._retry_decode_tiled(pipe, final.pop("latents"), job, emit)
        self._compiled_warm = True
        seconds = (time.perf_counter() - started) / params.batch_size
        records = []
        for i, image in enumerate(images):
            image_params = params.replace(seed=seeds[i], batch_size=1, batch_count=1)
            records.append(
                sink.save(
                    image,
                    image_params,
                    index=first + i,
                    model_name=loaded.name,
                    device=self.choice.device,
                    dtype=self.choice.dtype,
                    seconds=seconds,
                )
            )
        return records

    def _retry_decode_tiled(
        self, pipe: Any, latents: torch.Tensor, job: Job, emit: Emit
    ) -> list[Any]:
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
        emit(
            EngineNotice(
                "The VAE decode ran out of memory; it was retried once with VAE tiling and "
                "succeeded. Turn VAE tiling on to skip the failed first attempt.",
                job.id,
            )
        )
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
        self._cache.clear()
        self._previewers.clear()
        free_memory(self.choice.device)


class _TiledDecodeOutOfMemory(RuntimeError):
    """The decode ran out of memory a second time, tiled: tiling is no advice any more."""


@dataclasses.dataclass
class _StepState:
    step: int = 0


def _guidance_cutoff_step(params: GenerationParams, total_steps: int) -> int | None:
    """The step after which guidance stops, or None when it never does."""
    if params.guidance_cutoff >= 1.0 or params.guidance_scale <= 1.0:
        return None
    return max(1, round(params.guidance_cutoff * total_steps))


def _steps_for(scheduler: Any, steps: int) -> int:
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def _detail(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-6:])
