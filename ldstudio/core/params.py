"""GenerationParams: the one frozen request object that defines an image; pure data, any thread."""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from typing import Any

# Sampler names exactly as AUTOMATIC1111 writes them in its `parameters` text.
SCHEDULERS: tuple[str, ...] = (
    "Euler",
    "Euler a",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DDIM",
    "UniPC",
    "LCM",
)
PREVIEW_METHODS: tuple[str, ...] = ("latent2rgb", "taesd", "vae", "none")

SEED_MAX = 2**32 - 1
STEPS_RANGE = (1, 150)
GUIDANCE_RANGE = (0.0, 30.0)
# From 0.05: guidance on no step at all is guidance 1, which says so honestly in the metadata.
GUIDANCE_CUTOFF_RANGE = (0.05, 1.0)
SIZE_RANGE = (64, 4096)
SIZE_MULTIPLE = 8
BATCH_SIZE_RANGE = (1, 64)
BATCH_COUNT_RANGE = (1, 10_000)
PREVIEW_INTERVAL_RANGE = (1, 150)
LORA_WEIGHT_RANGE = (-10.0, 10.0)
RANDOM_SEED = "random"
# A1111's "Clip skip": 1 uses the text encoder's last layer (no skip), 2 the one before, ...
CLIP_SKIP_RANGE = (1, 12)
# How prompt weights are applied (A1111's "Emphasis" option; "comfy" is ComfyUI's way):
# "original" multiplies and restores the mean, "no-norm" only multiplies, "comfy" moves each
# token's embedding away from the empty prompt's by the weight, with no mean restoration.
EMPHASIS_MODES: tuple[str, ...] = ("original", "no-norm", "comfy")
VARIATION_STRENGTH_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class GenerationParams:
    """Everything that defines a generation.

    `model` empty means the bundled default model. `width`/`height` of None mean the model's
    native size, resolved by the engine once the model is loaded. `seed` "random" is resolved
    to a concrete seed by `resolved()` before a job starts, so every saved image records the
    seed that made it.
    """

    prompt: str
    negative_prompt: str = ""
    model: str = ""
    scheduler: str = "Euler a"
    steps: int = 20
    guidance_scale: float = 7.0
    width: int | None = None
    height: int | None = None
    seed: int | str = RANDOM_SEED
    batch_size: int = 1
    batch_count: int = 1
    preview_method: str = "latent2rgb"
    preview_interval: int = 1
    # Fraction of the steps that use classifier-free guidance; after it, one UNet pass per
    # step instead of two. 1.0 = guidance throughout (no cut-off).
    guidance_cutoff: float = 1.0
    # A standalone VAE file replacing the model's own; empty = the model's VAE.
    vae: str = ""
    # (LoRA file path, strength) pairs, applied together. `<lora:name:0.8>` tags in the
    # prompt are moved here (as resolved paths) by the engine before the job runs.
    loras: tuple[tuple[str, float], ...] = ()
    clip_skip: int = 1
    emphasis: str = "original"
    # A1111's variation seed: the noise is slerp(noise(seed), noise(variation_seed), strength);
    # None (or strength 0) is the seed's own noise, bit for bit.
    variation_seed: int | None = None
    variation_strength: float = 0.0
    # A1111's "Seed resize from": the noise made at this size, centred in the image's.
    seed_resize_from: tuple[int, int] | None = None
    # The names of the styles applied to the prompt (already in it; recorded as `Styles`).
    styles: tuple[str, ...] = ()

    def validate(self) -> GenerationParams:
        """Raise ValueError naming the field, the bad value and what is allowed; return self."""
        _check_type("prompt", self.prompt, str)
        _check_type("negative_prompt", self.negative_prompt, str)
        _check_type("model", self.model, str)
        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"scheduler: {self.scheduler!r} is not supported; allowed: {', '.join(SCHEDULERS)}"
            )
        _check_int_range("steps", self.steps, STEPS_RANGE)
        _check_float_range("guidance_scale", self.guidance_scale, GUIDANCE_RANGE)
        _check_float_range("guidance_cutoff", self.guidance_cutoff, GUIDANCE_CUTOFF_RANGE)
        _check_type("vae", self.vae, str)
        _check_loras(self.loras)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            _check_int_range(name, value, SIZE_RANGE)
            if value % SIZE_MULTIPLE:
                raise ValueError(
                    f"{name}: {value} is not a multiple of {SIZE_MULTIPLE}; allowed: multiples "
                    f"of {SIZE_MULTIPLE} from {SIZE_RANGE[0]} to {SIZE_RANGE[1]}"
                )
        if isinstance(self.seed, str):
            if self.seed != RANDOM_SEED:
                raise ValueError(
                    f"seed: {self.seed!r} is not valid; allowed: an integer from 0 to "
                    f"{SEED_MAX} or {RANDOM_SEED!r}"
                )
        else:
            _check_int_range("seed", self.seed, (0, SEED_MAX))
        _check_int_range("batch_size", self.batch_size, BATCH_SIZE_RANGE)
        _check_int_range("batch_count", self.batch_count, BATCH_COUNT_RANGE)
        if self.preview_method not in PREVIEW_METHODS:
            raise ValueError(
                f"preview_method: {self.preview_method!r} is not supported; allowed: "
                f"{', '.join(PREVIEW_METHODS)}"
            )
        _check_int_range("preview_interval", self.preview_interval, PREVIEW_INTERVAL_RANGE)
        _check_int_range("clip_skip", self.clip_skip, CLIP_SKIP_RANGE)
        if self.emphasis not in EMPHASIS_MODES:
            raise ValueError(
                f"emphasis: {self.emphasis!r} is not supported; allowed: "
                f"{', '.join(EMPHASIS_MODES)}"
            )
        if self.variation_seed is not None:
            _check_int_range("variation_seed", self.variation_seed, (0, SEED_MAX))
        _check_float_range("variation_strength", self.variation_strength, VARIATION_STRENGTH_RANGE)
        if self.seed_resize_from is not None:
            size = self.seed_resize_from
            if not (isinstance(size, tuple) and len(size) == 2):
                raise ValueError(
                    f"seed_resize_from: {size!r} is not a (width, height) pair; allowed: two "
                    f"multiples of {SIZE_MULTIPLE} from {SIZE_RANGE[0]} to {SIZE_RANGE[1]}"
                )
            for name, value in zip(("width", "height"), size, strict=True):
                _check_int_range(f"seed_resize_from {name}", value, SIZE_RANGE)
                if value % SIZE_MULTIPLE:
                    raise ValueError(
                        f"seed_resize_from {name}: {value} is not a multiple of {SIZE_MULTIPLE}"
                    )
        if not isinstance(self.styles, tuple) or not all(
            isinstance(name, str) and name for name in self.styles
        ):
            raise ValueError(f"styles: {self.styles!r} is not a tuple of style names")
        return self

    @property
    def varied(self) -> bool:
        """Whether a variation seed changes the noise at all."""
        return self.variation_seed is not None and self.variation_strength > 0

    @property
    def image_count(self) -> int:
        return self.batch_size * self.batch_count

    def resolved(self) -> GenerationParams:
        """Validated copy with a concrete seed ("random" drawn from the OS entropy pool)."""
        self.validate()
        if isinstance(self.seed, int):
            return self
        return dataclasses.replace(self, seed=secrets.randbelow(SEED_MAX + 1))

    def seed_for(self, image_index: int) -> int:
        """Seed of the image at `image_index` across the whole job: seed, seed+1, ... (mod 2^32)."""
        if not isinstance(self.seed, int):
            raise ValueError("seed_for() needs a resolved seed; call resolved() first")
        return (self.seed + image_index) % (SEED_MAX + 1)

    def replace(self, **changes: Any) -> GenerationParams:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Build and validate from a dict; unknown keys (from newer versions) are ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"params: expected a JSON object, got {type(data).__name__}")
        if "prompt" not in data:
            raise ValueError("prompt: missing; a prompt string is required")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("seed_resize_from", "styles"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        if isinstance(values.get("loras"), list):
            # JSON has no tuples: [[path, weight], ...] comes back as lists.
            values["loras"] = tuple(
                tuple(pair) if isinstance(pair, list) else pair for pair in values["loras"]
            )
        params = cls(**values)
        return params.validate()

    @classmethod
    def from_json(cls, text: str) -> GenerationParams:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"params: not valid JSON ({exc})") from None
        return cls.from_dict(data)


def field_problem(name: str, value: object) -> str:
    """What `validate()` (and so the CLI) says about one field's value; "" when it is allowed.

    Forms show this next to a field as it is typed, so they refuse with the very words of
    `ldstudio generate`, and never clamp or snap a value behind the user's back.
    """
    try:
        GenerationParams(prompt="").replace(**{name: value}).validate()
    except ValueError as exc:
        return str(exc)
    return ""


def _check_loras(loras: object) -> None:
    allowed = (
        f"allowed: (path, strength) pairs with a non-empty path and a strength from "
        f"{LORA_WEIGHT_RANGE[0]:g} to {LORA_WEIGHT_RANGE[1]:g}"
    )
    if not isinstance(loras, tuple):
        raise ValueError(f"loras: expected a tuple, got {type(loras).__name__}; {allowed}")
    for i, pair in enumerate(loras):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"loras[{i}]: {pair!r} is not a (path, strength) pair; {allowed}")
        path, weight = pair
        if not isinstance(path, str) or not path:
            raise ValueError(f"loras[{i}]: path {path!r} is not a non-empty string; {allowed}")
        _check_float_range(f"loras[{i}] strength", weight, LORA_WEIGHT_RANGE)


def _check_type(name: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{name}: expected {kind.__name__}, got {type(value).__name__} {value!r}")


def _check_int_range(name: str, value: object, bounds: tuple[int, int]) -> None:
    low, high = bounds
    # bool is an int subclass; True as a step count is a bug upstream, not a value.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(
            f"{name}: {value!r} is not an integer; allowed: integers from {low} to {high}"
        )
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range; allowed: {low} to {high}")


def _check_float_range(name: str, value: object, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not a number; allowed: {low:g} to {high:g}")
    if not low <= value <= high:  # also rejects NaN
        raise ValueError(f"{name}: {value} is out of range; allowed: {low:g} to {high:g}")
