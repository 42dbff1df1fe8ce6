"""TimelineStore: the preview frames of recent jobs, bounded in memory; GUI thread (export: any).

Frames are the engine's previews of each step (for a batch, its images tiled side by side).
Memory bound: the last `max_jobs` jobs (default 5) and at most `max_bytes` of frames in total
(default 256 MiB); the oldest job is dropped first. latent2rgb previews of a 512×512 image are
64×64×3 = 12 KiB per step, so the bound only bites with full-VAE previews of large images.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ldstudio.core.atomic import atomic_file

DEFAULT_MAX_JOBS = 5
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
ANIMATION_FORMATS = ("webp", "gif")


@dataclass
class Timeline:
    """The frames of one pipeline call: (step, HxWx3 uint8) in step order."""

    job_id: int
    batch_index: int
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)
    total_steps: int = 0  # the call's step count ("Step 5 of 15"); 0 when unknown

    @property
    def nbytes(self) -> int:
        return sum(frame.nbytes for _, frame in self.frames)


class TimelineStore:
    def __init__(self, max_jobs: int = DEFAULT_MAX_JOBS, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_jobs = max_jobs
        self.max_bytes = max_bytes
        self._jobs: OrderedDict[int, dict[int, Timeline]] = OrderedDict()
        self._bytes = 0

    def add_frame(
        self, job_id: int, batch_index: int, step: int, frame: np.ndarray, total_steps: int = 0
    ) -> None:
        batches = self._jobs.get(job_id)
        if batches is None:
            batches = self._jobs[job_id] = {}
        timeline = batches.setdefault(batch_index, Timeline(job_id, batch_index))
        timeline.total_steps = total_steps or timeline.total_steps
        timeline.frames.append((step, frame))
        self._bytes += frame.nbytes
        self._evict()

    def get(self, job_id: int, batch_index: int) -> Timeline | None:
        return self._jobs.get(job_id, {}).get(batch_index)

    def job_ids(self) -> list[int]:
        return list(self._jobs)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def _evict(self) -> None:
        while self._jobs and (len(self._jobs) > self.max_jobs or self._bytes > self.max_bytes):
            if len(self._jobs) == 1:
                # A single job over the byte bound: thin it by dropping its oldest frames.
                batches = next(iter(self._jobs.values()))
                longest = max(batches.values(), key=lambda t: len(t.frames))
                if len(longest.frames) <= 1:
                    return
                _, dropped = longest.frames.pop(0)
                self._bytes -= dropped.nbytes
                continue
            _, batches = self._jobs.popitem(last=False)
            self._bytes -= sum(t.nbytes for t in batches.values())


def export_animation(
    frames: list[np.ndarray],
    final_image: Path | None,
    target: Path,
    frame_ms: int = 120,
    hold_ms: int = 1500,
) -> Path:
    """Write an animated WebP or GIF (by `target`'s suffix) of the denoising; any thread.

    Previews are at latent resolution, so every frame is scaled up smoothly to the final image's
    size; the final image ends the animation and is held for `hold_ms`.
    """
    kind = target.suffix.lower().lstrip(".")
    if kind not in ANIMATION_FORMATS:
        raise ValueError(
            f"animation file: {target.name!r} has an unsupported type; allowed: "
            f"{', '.join('.' + k for k in ANIMATION_FORMATS)}"
        )
    if not frames:
        raise ValueError("animation: there are no preview frames for this image")
    images = [Image.fromarray(frame, "RGB") for frame in frames]
    if final_image is not None:
        with Image.open(final_image) as final:
            images.append(final.convert("RGB"))
    width, height = images[-1].size
    # Never export something smaller than 256 px on its long side: tiny animations are useless.
    scale = max(1.0, 256 / max(width, height))
    size = (round(width * scale), round(height * scale))
    images = [im.resize(size, Image.Resampling.BICUBIC) for im in images]
    durations = [frame_ms] * (len(images) - 1) + [hold_ms]
    nearest = next(parent for parent in target.parents if parent.exists())
    if not nearest.is_dir():
        raise ValueError(f"animation file: {nearest} is a file, so {target.name} cannot go in it")
    with atomic_file(target) as handle:
        images[0].save(
            handle,
            format="WEBP" if kind == "webp" else "GIF",
            save_all=True,
            append_images=images[1:],
            duration=durations,
            loop=0,
            **({"lossless": False, "quality": 90} if kind == "webp" else {}),
        )
    return target
