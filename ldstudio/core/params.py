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
        return self

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
