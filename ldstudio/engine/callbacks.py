"""The denoising step hook, built from small `PipelineCallback`-style pieces; torch thread.

diffusers calls `callback_on_step_end(pipe, step_index, timestep, kwargs)` once per step, after
`scheduler.step`, with the tensors named in `callback_on_step_end_tensor_inputs`; whatever it
returns in `kwargs` replaces them. `StepCallbacks` is that one callable: it runs its pieces in
order, and its `tensor_inputs` is the union of what each piece declares it reads or changes.

A piece is one small class with a `tensor_inputs` tuple and the diffusers call signature, and
can be tested alone: `CancelCheck`, `GuidanceCutoff`, `FinalLatents`, `Preview`, `Progress`,
and for canvas jobs `SoftInpaint` (the latent noise mask, step by step).
Unlike diffusers' `PipelineCallback` the pieces are no `ConfigMixin`: they hold per-call state
(a start time, the captured latents), not a configuration to save.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from ldstudio.core.backend import Step
from ldstudio.core.params import GenerationParams

if TYPE_CHECKING:
    import numpy as np

    from ldstudio.engine.previews import Previewer

Kwargs = dict[str, Any]


class StepPiece(Protocol):
    """One part of the step hook: reads (and may replace) the tensors it names."""

    @property
    def tensor_inputs(self) -> Sequence[str]: ...

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Kwargs) -> Kwargs: ...


class StepCallbacks:
    """The `callback_on_step_end` made of pieces, run in order (as `MultiPipelineCallbacks`)."""

    def __init__(self, pieces: Sequence[StepPiece | None]) -> None:
        self.pieces = [piece for piece in pieces if piece is not None]

    @property
    def tensor_inputs(self) -> list[str]:
        """Pass as `callback_on_step_end_tensor_inputs`: each tensor once, in first-use order."""
        return list(dict.fromkeys(name for piece in self.pieces for name in piece.tensor_inputs))

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Kwargs) -> Kwargs:
        for piece in self.pieces:
            kwargs = piece(pipe, step_index, timestep, kwargs)
        return kwargs


class CancelCheck:
    """Stops the loop at a step boundary: `check(step)` raises `Cancelled(step)` when asked to.

    Raising from the hook stops at once; `pipe._interrupt` would still run the VAE decode.
    """

    tensor_inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, check: Callable[[int], None]) -> None:
        self.check = check

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Kwargs) -> Kwargs:
        self.check(step_index + 1)
        return kwargs


class GuidanceCutoff:
    """From step `step` on, the conditional pass only (as diffusers' `SDXLCFGCutoffCallback`):
    the unconditional half of the embeddings is dropped and the pipeline's guidance set to 0."""

    # The inpaint pipelines double their mask (and a 9-channel UNet's masked-image latents)
    # for guidance too; left doubled, the batch would double once guidance is off.
    KEYS: ClassVar[tuple[str, ...]] = (
        "prompt_embeds",
        "add_text_embeds",
        "add_time_ids",
        "mask",
        "masked_image_latents",
    )

    def __init__(self, step: int, tensor_inputs: Sequence[str]) -> None:
        self.step = step
        self.tensor_inputs = tuple(tensor_inputs)

    @classmethod
    def for_pipe(
        cls, pipe: Any, params: GenerationParams, total_steps: int
    ) -> GuidanceCutoff | None:
        """The piece for this pipeline and job, or None when guidance never stops."""
        step = cutoff_step(params, total_steps)
        if step is None:
            return None
        return cls(step, [key for key in cls.KEYS if key in pipe._callback_tensor_inputs])

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Kwargs) -> Kwargs:
        if step_index + 1 == self.step:
            for key in self.tensor_inputs:
                kwargs[key] = kwargs[key].chunk(2)[-1]
            pipe._guidance_scale = 0.0
        return kwargs


def cutoff_step(params: GenerationParams, total_steps: int) -> int | None:
    """The step after which guidance stops, or None when it never does."""
    if params.guidance_cutoff >= 1.0 or params.guidance_scale <= 1.0:
        return None
    return max(1, round(params.guidance_cutoff * total_steps))


class FinalLatents:
    """Keeps the last step's latents, so a VAE decode that runs out of memory can be retried."""

    tensor_inputs: ClassVar[tuple[str, ...]] = ("latents",)

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.latents: torch.Tensor | None = None

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Kwargs) -> Kwargs:
        if step_index + 1 == self.total_steps:
            self.latents = kwargs["latents"]
        return kwargs

    def take(self) -> torch.Tensor | None:
        latents, self.latents = self.latents, None
        return latents


class X0Tap:
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


class X0Source(Protocol):
    @property
    def x0(self) -> torch.Tensor | None: ...


class MaskedX0:
    """The tapped x0 composited over the original latents by the latent mask: what a canvas
    job's preview shows (the kept area is the source, not the model's guess at it)."""

    def __init__(self, tap: X0Tap, mask: torch.Tensor, original: torch.Tensor) -> None:
        self.tap = tap
        self.mask = mask
        self.original = original

    @property
    def x0(self) -> torch.Tensor | None:
        x0 = self.tap.x0
        if x0 is None:
            return None
        mask = self.mask.to(x0.device, x0.dtype)
        return mask * x0 + (1 - mask) * self.original.to(x0.device, x0.dtype)


class SoftInpaint:
    """The latent noise mask of a 4-channel model, applied after every step ourselves.

    diffusers' inpaint pipelines binarise the mask; here (given a full mask, so their own blend
    keeps everything) the latents outside the mask are set back after each step to the original
    latents noised to the next timestep with the job's noise (to the clean latents after the
    last step), inside it the model's latents stay. Soft (differential diffusion): at step i of
    N the mask is the latent-resolution soft mask thresholded at 1 - (i+1)/N, so a latent masked
    at 0.3 is repainted for the last 30 % of the steps only: a feathered mask really is soft.
    Hard: the mask binarised at 0.5 at every step, as diffusers would.
    """

    tensor_inputs: ClassVar[tuple[str, ...]] = ("latents",)

    def __init__(
        self, mask: torch.Tensor, original: torch.Tensor, noise: torch.Tensor, *, soft: bool
    ) -> None:
        self.mask = mask  # (1, 1, h, w) in [0, 1], at latent resolution
        self.original = original  # (1 or B, C, h, w): the clean latents of the source
        self.noise = noise  # (B, C, h, w): the noise the job started from
        self.soft = soft

    def keep(self, step_index: int, total: int) -> torch.Tensor:
        """Boolean (1, 1, h, w): where the model's latents stay after step `step_index`."""
        if not self.soft:
            return self.mask >= 0.5
        return self.mask > 1.0 - (step_index + 1) / total

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Kwargs) -> Kwargs:
        latents = kwargs["latents"]
        # The timesteps the pipeline loops over: the scheduler's, past strength's skip.
        timesteps = pipe.scheduler.timesteps[-int(pipe._num_timesteps) :]
        total = len(timesteps)
        original = self.original.to(latents.device, latents.dtype)
        if step_index < total - 1:
            noise = self.noise.to(latents.device, latents.dtype)
            original = pipe.scheduler.add_noise(
                original.expand_as(noise), noise, timesteps[step_index + 1 : step_index + 2]
            )
        keep = self.keep(step_index, total).to(latents.device)
        kwargs["latents"] = torch.where(keep, latents, original)
        return kwargs


class Preview:
    """Every `interval` steps, a preview of the tapped x0; `frame` is None between them."""

    tensor_inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tap: X0Source, previewer: Previewer, interval: int) -> None:
        self.tap = tap
        self.previewer = previewer
        self.interval = interval
        self.frame: np.ndarray | None = None

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Kwargs) -> Kwargs:
        x0 = self.tap.x0
        due = x0 is not None and (step_index + 1) % self.interval == 0
        self.frame = self.previewer(x0) if due and x0 is not None else None
        return kwargs


class Progress:
    """Sends one `Step` per step (with the preview made at that step, if any), stage-aware."""

    tensor_inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        send: Callable[[Step], None],
        total: int,
        *,
        batch_index: int = 0,
        stage: int = 0,
        preview: Preview | None = None,
    ) -> None:
        self.send = send
        self.total = total
        self.batch_index = batch_index
        self.stage = stage
        self.preview = preview
        self.started = time.perf_counter()  # build it just before the pipeline call

    def __call__(self, pipe: Any, step_index: int, timestep: Any, kwargs: Kwargs) -> Kwargs:
        step = step_index + 1
        elapsed = time.perf_counter() - self.started
        self.send(
            Step(
                batch_index=self.batch_index,
                step=step,
                total=self.total,
                elapsed=elapsed,
                it_per_s=step / elapsed if elapsed > 0 else 0.0,
                preview=self.preview.frame if self.preview is not None else None,
                stage=self.stage,
            )
        )
        return kwargs
