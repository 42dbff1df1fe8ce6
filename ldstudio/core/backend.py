"""The backend contract: `execute(request, cancel)` yields BackendEvents; called on one thread
(or on `concurrent_jobs` threads at once, for a backend that declares it: see Backend).

A backend turns one request into events — the model it loads, each stage, each denoising
step (with an x0 preview) and each finished image — and never touches the library: the
EngineService saves every image before it reports it, wraps failures and fans events out.
So the diffusers backend, the fake one used by UI tests, and a remote or Ray backend all
obey one protocol, and one contract test (tests/test_backend_contract.py) checks them all.

Ending: the iterator is exhausted (success), raises `Cancelled` (the token was set; `step` is
the last completed step), raises `JobError` (a failure with a message for the user), or raises
anything else (the service words it). A cancelled or failed job yields no more images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ldstudio.core.events import EngineNotice, ModelLoading, ModelReady
from ldstudio.core.jobs import CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class StageStarted:
    """A stage begins. `params` is resolved (concrete seed and size) and is what images record."""

    params: GenerationParams
    total_steps: int  # denoiser steps per pipeline call in this stage
    image_count: int
    index: int = 0  # 0-based stage of `count` (txt2img → upscale → img2img for a hires fix)
    count: int = 1
    name: str = "txt2img"


@dataclass(frozen=True)
class Step:
    batch_index: int  # which pipeline call of batch_count (0-based)
    step: int  # 1-based step just completed
    total: int
    elapsed: float  # seconds since this pipeline call started
    it_per_s: float
    # HxWx3 uint8 x0 preview of the batch's first image, or None (no preview at this step).
    preview: np.ndarray | None = field(default=None, compare=False, repr=False)
    stage: int = 0


@dataclass(frozen=True)
class ImageResult:
    """One finished image, not yet saved: the service saves it, then reports its record."""

    image: Any = field(compare=False, repr=False)  # a PIL.Image.Image
    params: GenerationParams  # this image's own: its seed, batch_size 1, batch_count 1
    index: int  # position in the whole job (0-based)
    model_name: str
    seconds: float
    # The concrete request of this one image (seed resolved, batch 1, an inpaint's strength
    # resolved), which is what its PNG records; None from a backend that only knows params.
    request: Request | None = field(default=None, compare=False)


BackendEvent = ModelLoading | ModelReady | StageStarted | Step | ImageResult | EngineNotice


class JobError(Exception):
    """A job failed for a reason the user can act on; `str()` is the message shown as is."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class BlobSource(Protocol):
    """Where a backend reads a request's input blobs (the library's BlobStore): PNG bytes by
    sha256; raises KeyError, ValueError or OSError for a blob it lacks or cannot read."""

    def get(self, digest: str) -> bytes: ...


class DeviceInfo(Protocol):
    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def label(self) -> str: ...


class Backend(Protocol):
    """What the EngineService runs requests on.

    A backend may also set `concurrent_jobs: int` (absent: 1): how many `execute` calls the
    service may run at once, each on its own thread. Only a backend whose jobs are independent
    of each other (the Ray Serve one: one job per replica) sets it above 1.
    """

    @property
    def choice(self) -> DeviceInfo: ...

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]: ...

    def close(self) -> None: ...
