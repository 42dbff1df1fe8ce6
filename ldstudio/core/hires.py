"""HiresSettings: A1111's hires fix, a second pass after txt2img; pure data, any thread.

The first pass makes the image at its size as plain txt2img does (same seed → same image);
the result is enlarged by `upscaler` to the target size and denoised again at `strength` for
`steps` steps (0: as many as the first pass), A1111's meaning: with a hires step count those
steps really run, on a schedule stretched to steps / strength.

Upscalers: "latent" enlarges the latents themselves (bilinear, A1111's "Latent"), which loses
detail unless the second pass repaints a lot (strength ≥ 0.55); "lanczos" decodes, enlarges
the pixels with Lanczos and encodes again; anything else names an upscaler model (ESRGAN
family: its path here, its name in the portable form), which enlarges the decoded pixels
(then Lanczos to the exact size) before they are encoded again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ldstudio.core.params import SIZE_MULTIPLE, SIZE_RANGE, STEPS_RANGE

HIRES_UPSCALERS: tuple[str, ...] = ("lanczos", "latent")
HIRES_SCALE_RANGE = (1.0, 4.0)
HIRES_STRENGTH_RANGE = (0.0, 1.0)
HIRES_STEPS_RANGE = (0, STEPS_RANGE[1])  # 0: the first pass's steps
# Strength when none is given: an image upscaler keeps detail at 0.5; latent upscaling
# blurs below about 0.55 (A1111 users' "blurry below 0.5" reports), so it starts higher.
DEFAULT_STRENGTH = {"lanczos": 0.5, "latent": 0.6}
MODEL_STRENGTH = 0.5  # an upscaler model is an image upscaler
LATENT_BLURRY_BELOW = 0.5
# A1111's names in the `Hires upscaler` key, both ways.
A1111_UPSCALER_NAMES = {"lanczos": "Lanczos", "latent": "Latent"}


@dataclass(frozen=True)
class HiresSettings:
    """The second pass of a txt2img request.

    `scale` enlarges the first pass's size; `width` and `height` (both, multiples of 8) give
    the target size instead (A1111's "Resize width/height to"). `strength` None is the
    upscaler's default (DEFAULT_STRENGTH); the engine records the value it used.
    """

    scale: float = 2.0
    width: int | None = None
    height: int | None = None
    upscaler: str = "lanczos"
    strength: float | None = None
    steps: int = 0

    def validate(self) -> HiresSettings:
        """Raise ValueError naming the field, the bad value and what is allowed; return self."""
        low, high = HIRES_SCALE_RANGE
        if not _is_number(self.scale) or not low <= self.scale <= high:
            raise ValueError(
                f"hires scale: {self.scale!r} is not allowed; allowed: {low:g} to {high:g}"
            )
        if (self.width is None) != (self.height is None):
            raise ValueError(
                "hires size: give both width and height (WxH), or neither to use the scale"
            )
        for name, value in (("width", self.width), ("height", self.height)):
            if value is None:
                continue
            side_low, side_high = SIZE_RANGE
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not side_low <= value <= side_high
                or value % SIZE_MULTIPLE
            ):
                raise ValueError(
                    f"hires {name}: {value!r} is not allowed; allowed: multiples of "
                    f"{SIZE_MULTIPLE} from {side_low} to {side_high}"
                )
        if not isinstance(self.upscaler, str) or not self.upscaler.strip():
            raise ValueError(
                f"hires upscaler: {self.upscaler!r} is not available; allowed: "
                f"{', '.join(HIRES_UPSCALERS)} or an upscaler model's name"
            )
        if self.strength is not None:
            s_low, s_high = HIRES_STRENGTH_RANGE
            if not _is_number(self.strength) or not s_low < self.strength <= s_high:
                raise ValueError(
                    f"hires strength: {self.strength!r} is not allowed; allowed: above "
                    f"{s_low:g} up to {s_high:g}"
                )
        steps_low, steps_high = HIRES_STEPS_RANGE
        if (
            not isinstance(self.steps, int)
            or isinstance(self.steps, bool)
            or not steps_low <= self.steps <= steps_high
        ):
            raise ValueError(
                f"hires steps: {self.steps!r} is not allowed; allowed: {steps_low} (as many as "
                f"the first pass) to {steps_high}"
            )
        return self

    @property
    def resized(self) -> bool:
        """True when a target size is given rather than a scale."""
        return self.width is not None and self.height is not None

    @property
    def model(self) -> bool:
        """Whether the upscaler is a model file (not "lanczos" or "latent")."""
        return self.upscaler not in HIRES_UPSCALERS

    def resolved_strength(self) -> float:
        if self.strength is not None:
            return float(self.strength)
        return DEFAULT_STRENGTH.get(self.upscaler, MODEL_STRENGTH)

    def steps_for(self, first_pass_steps: int) -> int:
        """The denoising steps the second pass runs."""
        return self.steps or first_pass_steps

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The second pass's size from the first pass's: the given size, or the scale's
        (each side rounded to the nearest multiple of 8, as the latents need)."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        return _round8(width * self.scale), _round8(height * self.scale)

    def size_problem(self, width: int, height: int) -> str | None:
        """Why the second pass cannot run after a first pass of `width`×`height`, or None."""
        target = self.target_size(width, height)
        low, high = SIZE_RANGE
        if not low <= min(target) <= max(target) <= high:
            how = "hires size" if self.resized else f"hires scale {self.scale:g}"
            return (
                f"{how}: {width}x{height} becomes {target[0]}x{target[1]}; allowed: {low} to "
                f"{high} pixels a side"
            )
        return None

    def hint(self) -> str | None:
        """Advice the front ends show (not a refusal): latent upscaling at a low strength."""
        if self.upscaler == "latent" and self.resolved_strength() < LATENT_BLURRY_BELOW:
            return (
                f"Latent upscaling below strength {LATENT_BLURRY_BELOW:g} gives blurry images: "
                "use 0.55 or more, or the lanczos upscaler."
            )
        return None

    def replace(self, **changes: Any) -> HiresSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> HiresSettings:
        """Build and validate; unknown keys (from newer versions) are ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"hires: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known}).validate()


def schedule_steps(steps: int, strength: float) -> int:
    """The schedule length on which a pass at `strength` runs exactly `steps` steps (diffusers
    runs int(total × strength) of `total`): A1111's hires rule, steps / strength."""
    total = max(steps, math.ceil(steps / strength) - 1)
    while int(total * strength) < steps:
        total += 1
    return total


def _round8(value: float) -> int:
    return max(SIZE_MULTIPLE, round(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
