"""FakeBackend: a scriptable, torch-free stand-in for DiffusersBackend in UI tests; engine thread.

The same contract (`choice`, `execute(request, cancel)`, `close()`; tests/test_backend_contract.py
checks both against the same assertions), with controllable timing, failures and previews. It
fakes only the denoising: saving, failure wrapping and cancelling are the EngineService's, as
for every backend. Preview frames encode their step (every pixel's red channel is
`step * 255 // total`), so a test can check that previews arrive in order; final images are a
gradient.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ldstudio.core.backend import (
    BackendEvent,
    BlobSource,
    ImageResult,
    JobError,
    StageStarted,
    Step,
)
from ldstudio.core.events import ModelLoading, ModelReady
from ldstudio.core.jobs import CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import KIND_INPAINT, KIND_UPSCALE, Request
from ldstudio.engine.inpaint import CanvasPlan, concrete_request, finish, plan, read_inputs

FAKE_MODEL_NAME = "fake-model"
LATENT_FACTOR = 8


@dataclass(frozen=True)
class FakeChoice:
    device: str = "cpu"
    dtype: str = "fp32"

    @property
    def label(self) -> str:
        return f"{self.device.upper()} · {self.dtype}"


class FakeBackend:
    """Scriptable backend. Attributes may be changed from the test thread between jobs.

    - `step_delay`: seconds slept per step (0 for as fast as possible).
    - `load_delay`: seconds the first "model load" takes.
    - `fail_next(message)`: the next job fails with that message after its first step.
    - `hold_at_step`: when set, each job blocks after that step until `release()` or cancel,
      which makes cancel-mid-job tests deterministic without sleeps.
    """

    def __init__(
        self,
        step_delay: float = 0.0,
        load_delay: float = 0.0,
        native_size: int = 64,
        device: str = "cpu",
        dtype: str = "fp32",
        blobs: BlobSource | None = None,
    ) -> None:
        self.blobs = blobs
        self.choice = FakeChoice(device, dtype)
        self.step_delay = step_delay
        self.load_delay = load_delay
        self.native_size = native_size
        self.hold_at_step: int | None = None
        self._failures: deque[str] = deque()
        self._release = threading.Event()
        self._loaded: str | None = None
        self.jobs_run: list[int | None] = []  # the job ids execute() was called for
        self.closed = False

    def fail_next(self, message: str) -> None:
        self._failures.append(message)

    def release(self) -> None:
        self._release.set()

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]:
        """Fake denoising only: the service saves the images and ends the job."""
        self.jobs_run.append(cancel.job_id)
        cancel.raise_if_cancelled(0)
        if request.kind == KIND_UPSCALE and request.upscale is not None:
            yield from self._upscale(request, cancel)
            return
        model = request.params.model or FAKE_MODEL_NAME
        if self._loaded != model:
            yield ModelLoading(model, self.choice.device, self.choice.dtype)
            time.sleep(self.load_delay)
            self._loaded = model
            yield ModelReady(model, "sd1", self.choice.device, self.choice.dtype, 0.0, False)
        else:
            yield ModelReady(model, "sd1", self.choice.device, self.choice.dtype, 0.0, True)
        params = request.params.resolved()
        canvas: CanvasPlan | None = None
        settings = request.inpaint
        if request.kind == KIND_INPAINT and settings is not None:
            # The real backend's pixel work (blobs, outpaint, mask, crop, composite); only the
            # model is faked: the composited image is the gradient inside the mask.
            image, mask = read_inputs(self.blobs, request)
            canvas = plan(image, mask, settings, params.width, params.height, self.native_size)
            settings = settings.replace(
                strength=settings.resolved_strength(inpainting_model=False, masked=canvas.masked)
            )
            params = params.replace(width=canvas.size[0], height=canvas.size[1])
        params = params.replace(
            width=params.width or self.native_size, height=params.height or self.native_size
        )
        hires = request.hires
        if hires is not None:
            problem = hires.size_problem(int(params.width or 0), int(params.height or 0))
            if problem is not None:
                raise JobError(problem)
            hires = hires.replace(strength=hires.resolved_strength())
        stages = 2 if hires is not None else 1
        yield StageStarted(
            params, params.steps, params.image_count, count=stages, name=request.face
        )
        failure = self._failures.popleft() if self._failures else None
        for batch_index in range(params.batch_count):
            batch_started = time.perf_counter()
            for step in range(1, params.steps + 1):
                if self.step_delay:
                    time.sleep(self.step_delay)
                cancel.raise_if_cancelled(step - 1)
                elapsed = time.perf_counter() - batch_started
                rate = step / elapsed if elapsed > 0 else 0.0
                yield Step(
                    batch_index, step, params.steps, elapsed, rate, self._preview(params, step)
                )
                if failure is not None:
                    raise JobError(failure, f"FakeBackend: scripted failure {failure}")
                if self.hold_at_step == step:
                    while not self._release.wait(0.005):
                        if cancel.cancelled:
                            break
                    self._release.clear()
            for i in range(params.batch_size):
                index = batch_index * params.batch_size + i
                seed = params.seed_for(index)
                own = params.replace(seed=seed, batch_size=1, batch_count=1)
                image = _final_image(params, seed)
                concrete = Request.txt2img(own)
                if hires is not None:
                    # The second pass faked as its enlargement (the real one repaints too).
                    size = hires.target_size(image.width, image.height)
                    image = image.resize(size, Image.Resampling.LANCZOS)
                    concrete = Request.txt2img(own, hires)
                if canvas is not None and settings is not None:
                    image = finish(canvas, image) if settings.strength else canvas.canvas.copy()
                    concrete = concrete_request(request, own, settings)
                yield ImageResult(
                    image,
                    own,
                    index=index,
                    model_name=model,
                    seconds=time.perf_counter() - batch_started,
                    request=concrete,
                )

    def _upscale(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]:
        """An upscale faked as Lanczos of the real source (no model loads, as with refine 0);
        its result records the request as the real engine does."""
        settings = request.upscale
        assert settings is not None
        source, _mask = read_inputs(self.blobs, request)
        problem = settings.size_problem(*source.size)
        if problem is not None:
            raise JobError(problem)
        started = time.perf_counter()
        size = settings.output_size(*source.size)
        params = request.params.resolved()
        shown = params.replace(width=size[0], height=size[1])
        yield StageStarted(shown, 1, 1, name=request.face)
        cancel.raise_if_cancelled(0)
        yield Step(0, 1, 1, 0.0, 0.0)
        if self.hold_at_step == 1:  # as a txt2img job holds: tests see it running
            while not self._release.wait(0.005):
                if cancel.cancelled:
                    break
            self._release.clear()
        cancel.raise_if_cancelled(1)
        own = params.replace(width=None, height=None, batch_size=1, batch_count=1)
        yield ImageResult(
            source.resize(size, Image.Resampling.LANCZOS),
            own.replace(width=size[0], height=size[1]),
            index=0,
            model_name=FAKE_MODEL_NAME,
            seconds=time.perf_counter() - started,
            request=dataclasses.replace(request, params=own),
        )

    def _preview(self, params: GenerationParams, step: int) -> np.ndarray | None:
        if params.preview_method == "none" or step % params.preview_interval:
            return None
        assert params.width is not None and params.height is not None
        h, w = params.height // LATENT_FACTOR, params.width // LATENT_FACTOR * params.batch_size
        frame = np.zeros((h, w, 3), dtype=np.uint8)
        frame[..., 0] = step * 255 // params.steps
        frame[..., 2] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        return frame

    def close(self) -> None:
        self.closed = True


def _final_image(params: GenerationParams, seed: int) -> Image.Image:
    assert params.width is not None and params.height is not None
    x = np.linspace(0, 255, params.width, dtype=np.uint8)
    y = np.linspace(0, 255, params.height, dtype=np.uint8)
    rgb = np.zeros((params.height, params.width, 3), dtype=np.uint8)
    rgb[..., 0] = x[None, :]
    rgb[..., 1] = y[:, None]
    rgb[..., 2] = seed % 256
    return Image.fromarray(rgb, "RGB")
