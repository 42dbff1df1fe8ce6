"""The typed event stream an engine emits about models and jobs; immutable, any thread.

One type per fact. The engine thread creates them; the GUI or CLI handles them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ldstudio.core.params import GenerationParams

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class ImageRecord:
    """One saved image: where it is and exactly what made it (params carry this image's seed)."""

    path: Path
    params: GenerationParams
    seed: int
    index: int
    width: int
    height: int
    model_name: str
    device: str
    dtype: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "seed": self.seed,
            "index": self.index,
            "width": self.width,
            "height": self.height,
            "model": self.model_name,
            "device": self.device,
            "dtype": self.dtype,
            "seconds": round(self.seconds, 4),
            "params": self.params.to_dict(),
        }


@dataclass(frozen=True)
class ModelLoading:
    model: str
    device: str
    dtype: str


@dataclass(frozen=True)
class ModelReady:
    model: str
    family: str
    device: str
    dtype: str
    seconds: float
    cached: bool  # True when the already-loaded pipeline was reused


@dataclass(frozen=True)
class JobStarted:
    job_id: int
    params: GenerationParams  # resolved: concrete seed, concrete size
    device: str
    dtype: str
    total_steps: int  # steps per pipeline call
    image_count: int


@dataclass(frozen=True)
class StepProgress:
    job_id: int
    batch_index: int  # which pipeline call of batch_count (0-based)
    step: int  # 1-based step just completed
    total: int
    elapsed: float  # seconds since this pipeline call started
    it_per_s: float
    # HxWx3 uint8 of the predicted clean image (x0) of the batch's first image, or None when
    # no preview was made at this step (method "none" or between preview intervals).
    preview: np.ndarray | None = field(default=None, compare=False, repr=False)
    stage: int = 0  # which stage of the job (see StageStarted)


@dataclass(frozen=True)
class StageStarted:
    """A job with several stages (txt2img → upscale → img2img) enters stage `index` of `count`."""

    job_id: int
    index: int
    count: int
    name: str
    total_steps: int


@dataclass(frozen=True)
class JobCancelling:
    """The running job's cancel was asked; it stops after its current step (maybe minutes)."""

    job_id: int


@dataclass(frozen=True)
class JobFinished:
    job_id: int
    records: tuple[ImageRecord, ...]
    seconds: float


@dataclass(frozen=True)
class JobFailed:
    job_id: int
    message: str  # one readable sentence for the user, with a hint where one helps
    detail: str  # technical detail (exception type and text, traceback tail)


@dataclass(frozen=True)
class JobCancelled:
    job_id: int
    step: int  # last completed step when the cancel was honoured
    saved: tuple[ImageRecord, ...] = ()  # images of earlier batch_count rounds already on disk


@dataclass(frozen=True)
class EngineNotice:
    """Something the user should know that is not a failure (a one-time warm-up, a retry)."""

    message: str
    job_id: int | None = None


@dataclass(frozen=True)
class EngineReady:
    """The backend is built; jobs run on it. `label` reads e.g. "CPU · fp32"."""

    label: str
    device: str
    dtype: str


@dataclass(frozen=True)
class EngineFailed:
    """The backend could not be built: no job can run; queued jobs fail with this message."""

    message: str


Event = (
    EngineReady
    | EngineFailed
    | ModelLoading
    | ModelReady
    | JobStarted
    | StepProgress
    | StageStarted
    | JobCancelling
    | JobFinished
    | JobFailed
    | JobCancelled
    | EngineNotice
)
