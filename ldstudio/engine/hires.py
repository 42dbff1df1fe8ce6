"""The hires fix on the diffusers engine: txt2img, enlarge, denoise again (A1111's meaning).

Stage 1 is the plain txt2img batch (`DiffusersBackend._run_batch`), so the first pass of a
seed is the same image it makes without a hires fix. Each of its images is then taken on at
once (no batch of large images held in memory): enlarged — its final latents bilinearly
("latent"), or its pixels with Lanczos ("lanczos") or an upscaler model (then Lanczos to
the exact size) and encoded again — and denoised at the
hires strength through the canvas machinery (engine/inpaint.py) with everything repainted,
for exactly the hires steps (on a schedule stretched to steps / strength, as A1111 does). The
saved image's request is the first pass's parameters plus the hires settings used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ldstudio.core.backend import JobError, StageStarted
from ldstudio.core.hires import HiresSettings, schedule_steps
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import KIND_TXT2IMG, Request
from ldstudio.engine import inpaint
from ldstudio.engine.inpaint import LATENT_SCALE, CanvasPlan

if TYPE_CHECKING:
    from ldstudio.engine.backend import DiffusersBackend
    from ldstudio.engine.models import LoadedModel
    from ldstudio.engine.previews import Previewer
    from ldstudio.engine.relay import Relay

STAGE_NAMES = (KIND_TXT2IMG, "hires fix")


def run(
    backend: DiffusersBackend,
    request: Request,
    loaded: LoadedModel,
    params: GenerationParams,
    previewer: Previewer | None,
    relay: Relay,
) -> None:
    """Run a txt2img request with a hires fix (params concrete: seed, size, LoRAs)."""
    settings = request.hires
    assert settings is not None
    width, height = int(params.width or 0), int(params.height or 0)
    problem = settings.size_problem(width, height)
    if problem is not None:
        raise JobError(problem)
    strength = settings.resolved_strength()
    used = settings.replace(strength=strength)
    second = _SecondPass(backend, loaded, params, used, previewer, relay)
    for batch_index in range(params.batch_count):
        relay.check(0)
        relay.send(
            StageStarted(
                params=params,
                total_steps=params.steps,
                image_count=params.image_count,
                index=0,
                count=2,
                name=STAGE_NAMES[0],
            )
        )
        second.new_batch()
        backend._run_batch(params, loaded, previewer, batch_index, relay, deliver=second)


class _SecondPass:
    """Takes each first-pass image on through the second pass, then sends it."""

    def __init__(
        self,
        backend: DiffusersBackend,
        loaded: LoadedModel,
        params: GenerationParams,
        settings: HiresSettings,
        previewer: Previewer | None,
        relay: Relay,
    ) -> None:
        from ldstudio.engine.pipelines import TASK_INPAINT, task_pipeline
        from ldstudio.engine.schedulers import build_scheduler

        self.backend, self.loaded, self.params = backend, loaded, params
        self.settings, self.previewer, self.relay = settings, previewer, relay
        self.latents = settings.upscaler == "latent"
        self.model = None
        if settings.model:  # an upscaler model: loaded (and checked) before the first pass
            from ldstudio.engine.upscale import model_file

            self.model = backend.upscaler(model_file(settings.upscaler))
        self.strength = settings.resolved_strength()
        self.target = settings.target_size(int(params.width or 0), int(params.height or 0))
        steps = settings.steps_for(params.steps)
        self.schedule = schedule_steps(steps, self.strength)
        self.pipe = task_pipeline(loaded, TASK_INPAINT)
        scheduler = build_scheduler(params.scheduler, loaded.base_scheduler_config, 0)
        self.total = inpaint.steps_for_strength(
            scheduler, self.schedule, inpaint.pipe_strength(self.strength, self.schedule)
        )
        self.announced = False

    def new_batch(self) -> None:
        """The next batch's second pass is announced before its first image."""
        self.announced = False

    def __call__(self, image: Any, params: GenerationParams, index: int, seconds: float) -> None:
        import torch.nn.functional as F

        own = params  # this image's first-pass parameters (its seed, batch of one)

        width, height = self.target
        if not self.announced:  # once per batch, before its first image's second pass
            self.relay.send(
                StageStarted(
                    params=self.params.replace(width=width, height=height),
                    total_steps=self.total,
                    image_count=self.params.image_count,
                    index=1,
                    count=2,
                    name=STAGE_NAMES[1],
                )
            )
            self.announced = True
        self.relay.check(0)
        start = None
        if self.latents:
            # The final latents, enlarged; the pipeline is shown a neutral image of the
            # target size (a 4-channel model never reads it; everything is repainted).
            start = F.interpolate(
                image.float().cpu(),
                size=(height // LATENT_SCALE, width // LATENT_SCALE),
                mode="bilinear",
                align_corners=False,
            )
            canvas = Image.new("RGB", (width, height), (127, 127, 127))
        elif self.model is not None:
            from ldstudio.engine.upscale import upscale_to

            canvas = upscale_to(image, (width, height), self.model, self.relay)
        else:
            canvas = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        job = CanvasPlan(
            canvas=canvas,
            mask=np.ones((height, width), np.float32),
            region=(0, 0, width, height),
            size=(width, height),
            origin=(0, 0),
            masked=True,
        )
        # One image: its seed is the job's seed at its index, as in the first pass.
        run_params = self.params.replace(
            width=width, height=height, steps=self.schedule, batch_size=1, batch_count=1
        )
        record = Request.txt2img(own, self.settings)
        inpaint._run_batch(
            self.backend,
            self.loaded,
            self.pipe,
            job,
            run_params,
            self.strength,
            False,
            "original",
            self.previewer,
            self.relay,
            index // self.params.batch_size,
            lambda _own: record,
            False,
            stage=1,
            first_index=index,
            start_latents=start,
            composite=False,
        )
