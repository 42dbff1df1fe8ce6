"""InpaintSettings: how an `inpaint` request works on its source image; pure data, any thread.

One job kind has three faces: img2img is an inpaint with the whole image masked (no mask input),
inpaint repaints where the mask says, outpaint extends the canvas and masks the new area. Every
setting keeps AUTOMATIC1111's meaning (its img2img tab), so a migrating user's numbers mean the
same here; `strength` "auto" and `soft` are ours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

INPAINT_AREAS: tuple[str, ...] = ("whole", "masked")  # A1111: "Whole picture", "Only masked"
# A1111's "Masked content": what the masked area starts from before noise is added.
MASKED_CONTENTS: tuple[str, ...] = ("original", "fill", "latent_noise", "latent_nothing")
STRENGTH_RANGE = (0.0, 1.0)
MASK_BLUR_RANGE = (0, 64)
MASK_PADDING_RANGE = (0, 256)
OUTPAINT_RANGE = (0, 2048)
OUTPAINT_MULTIPLE = 8  # one latent pixel: the canvas noise and the latents stay aligned
OUTPAINT_SIDES: tuple[str, ...] = ("left", "top", "right", "bottom")
# "auto" strength: an inpainting (9-channel) model repaints a masked area from scratch, which
# is what it was trained for; everything else keeps A1111's img2img default.
AUTO_STRENGTH_INPAINTING_MODEL = 1.0
AUTO_STRENGTH = 0.75
# The canvas (source + outpaint) limit: an 8192² RGBA PNG is at most 256 MiB, within the blob
# store's 512 MiB and under Pillow's decompression-bomb limit.
MAX_CANVAS_SIDE = 8192


@dataclass(frozen=True)
class InpaintSettings:
    """Everything an inpaint request adds to GenerationParams.

    `strength` None is "auto" (see `resolved_strength`); the engine records the value it used.
    `outpaint` is (left, top, right, bottom) in pixels added around the source.
    """

    strength: float | None = None
    mask_blur: int = 4
    inpaint_area: str = "whole"
    mask_padding: int = 32
    masked_content: str = "original"
    invert_mask: bool = False
    outpaint: tuple[int, int, int, int] = (0, 0, 0, 0)
    # Soft inpainting: on 4-channel models the blurred mask is honoured step by step
    # (differential diffusion) instead of binarised as diffusers' pipelines do.
    soft: bool = True

    def validate(self) -> InpaintSettings:
        """Raise ValueError naming the field, the bad value and what is allowed; return self."""
        if self.strength is not None:
            _check_number("strength", self.strength, STRENGTH_RANGE)
        _check_int("mask_blur", self.mask_blur, MASK_BLUR_RANGE)
        if self.inpaint_area not in INPAINT_AREAS:
            raise ValueError(
                f"inpaint_area: {self.inpaint_area!r} is not supported; allowed: "
                f"{', '.join(INPAINT_AREAS)}"
            )
        _check_int("mask_padding", self.mask_padding, MASK_PADDING_RANGE)
        if self.masked_content not in MASKED_CONTENTS:
            raise ValueError(
                f"masked_content: {self.masked_content!r} is not supported; allowed: "
                f"{', '.join(MASKED_CONTENTS)}"
            )
        if not isinstance(self.invert_mask, bool):
            raise ValueError(f"invert_mask: {self.invert_mask!r} is not true or false")
        if not isinstance(self.soft, bool):
            raise ValueError(f"soft: {self.soft!r} is not true or false")
        if not (isinstance(self.outpaint, tuple) and len(self.outpaint) == len(OUTPAINT_SIDES)):
            raise ValueError(
                f"outpaint: {self.outpaint!r} is not four amounts; allowed: (left, top, right, "
                f"bottom) in pixels"
            )
        for side, amount in zip(OUTPAINT_SIDES, self.outpaint, strict=True):
            check_outpaint(side, amount)
        return self

    @property
    def outpainting(self) -> bool:
        return any(self.outpaint)

    def resolved_strength(self, *, inpainting_model: bool, masked: bool) -> float:
        """The strength the job runs at: the user's, or auto's rule (visible in the UI)."""
        if self.strength is not None:
            return float(self.strength)
        if inpainting_model and masked:
            return AUTO_STRENGTH_INPAINTING_MODEL
        return AUTO_STRENGTH

    def replace(self, **changes: Any) -> InpaintSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["outpaint"] = list(self.outpaint)
        return data

    @classmethod
    def from_dict(cls, data: object) -> InpaintSettings:
        """Build and validate; unknown keys (from newer versions) are ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"inpaint: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("outpaint"), list):
            values["outpaint"] = tuple(values["outpaint"])
        return cls(**values).validate()


def canvas_size_problem(
    size: tuple[int, int], settings: InpaintSettings, *, masked: bool, sized: bool
) -> str | None:
    """Why a source of `size` cannot make this job, or None: the canvas (source + outpaint) is
    over MAX_CANVAS_SIDE, or the whole picture runs at its own size (not `sized`, and "whole
    picture" or nothing `masked`) outside the model sizes allowed. The text follows the
    source's name: "is 5000x300; allowed: ..."."""
    from ldstudio.core.params import SIZE_RANGE  # params does not import this module

    left, top, right, bottom = settings.outpaint
    canvas = (size[0] + left + right, size[1] + top + bottom)
    described = f"{size[0]}x{size[1]}"
    if settings.outpainting:
        described += f" ({canvas[0]}x{canvas[1]} with outpaint {left},{top},{right},{bottom})"
    if max(canvas) > MAX_CANVAS_SIDE:
        return f"is {described}; allowed: at most {MAX_CANVAS_SIDE} pixels a side"
    low, high = SIZE_RANGE
    whole = settings.inpaint_area == "whole" or not (masked or settings.outpainting)
    if whole and not sized and not low <= min(canvas) <= max(canvas) <= high:
        return (
            f"is {described}, and the whole picture runs at that size; allowed: {low} to "
            f"{high} pixels a side"
        )
    return None


def check_outpaint(side: str, amount: object) -> None:
    """ValueError naming the side, the value and what is allowed (forms show it as typed)."""
    low, high = OUTPAINT_RANGE
    allowed = f"allowed: multiples of {OUTPAINT_MULTIPLE} from {low} to {high} pixels"
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise ValueError(f"outpaint {side}: {amount!r} is not an integer; {allowed}")
    if not low <= amount <= high or amount % OUTPAINT_MULTIPLE:
        raise ValueError(f"outpaint {side}: {amount} is not allowed; {allowed}")


def _check_int(name: str, value: object, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not an integer; allowed: {low} to {high}")
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range; allowed: {low} to {high}")


def _check_number(name: str, value: object, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not a number; allowed: {low:g} to {high:g}")
    if not low <= value <= high:  # also rejects NaN
        raise ValueError(f"{name}: {value} is out of range; allowed: {low:g} to {high:g}")
