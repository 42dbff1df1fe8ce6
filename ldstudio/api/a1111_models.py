"""AUTOMATIC1111 API bodies as ldstudio Requests, and A1111's sampler and scheduler names;
pure functions over the server's context, called on a worker thread (images are decoded).

A field A1111 has and ldstudio honours is mapped (its meaning kept: `n_iter` is batch_count,
`subseed` the variation seed, `inpainting_fill` the masked content, ...). A field asking for
something ldstudio cannot do (`restore_faces`, `tiling`, scripts, a refiner, a second pass with
another sampler or prompt) is refused with a message naming it, never ignored. Every other
field (A1111's sampler knobs such as `eta`, save flags, a client's own keys) is accepted and
named in the reply's `info["ldstudio_unused"]`, so nothing is dropped without a word. A field
left out takes ldstudio's default (the model's native size, 20 steps, Euler a), not A1111's.
"""

from __future__ import annotations

import base64
import binascii
import io
import secrets
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps

from ldstudio.api.context import Options, ServerContext, clip_skip
from ldstudio.core.hires import HiresSettings
from ldstudio.core.inpaint import MAX_CANVAS_SIDE, InpaintSettings, canvas_size_problem
from ldstudio.core.params import RANDOM_SEED, SCHEDULERS, SEED_MAX, GenerationParams
from ldstudio.core.readers import map_a1111_sampler
from ldstudio.core.request import Request

# /sdapi/v1/schedulers: A1111's schedule types ldstudio has ("automatic" is the sampler's own).
SCHEDULER_TYPES: tuple[tuple[str, str], ...] = (("automatic", "Automatic"), ("karras", "Karras"))
LATENT_UPSCALER = "Latent"
DEFAULT_SAMPLER = GenerationParams(prompt="").scheduler
IMAGE_UPSCALERS = ("Lanczos",)
# A1111's `inpainting_fill` numbers: what the masked area starts from.
INPAINTING_FILL = ("fill", "original", "latent_noise", "latent_nothing")
# Our field names in validation messages, as the A1111 body spells them.
_BODY_NAMES = {
    "guidance_scale": "cfg_scale",
    "batch_count": "n_iter",
    "scheduler": "sampler_name",
    "variation_seed": "subseed",
    "variation_strength": "subseed_strength",
    "clip_skip": "CLIP_stop_at_last_layers",
    "hires scale": "hr_scale",
    "hires steps": "hr_second_pass_steps",
    "hires strength": "denoising_strength",
    "hires width": "hr_resize_x",
    "hires height": "hr_resize_y",
    "hires size": "hr_resize_x/hr_resize_y",
    "strength": "denoising_strength",
    "mask_padding": "inpaint_full_res_padding",
}
# Fields read by the mapping (the rest is reported unused).
_COMMON = frozenset(
    {
        "prompt",
        "negative_prompt",
        "styles",
        "seed",
        "subseed",
        "subseed_strength",
        "seed_resize_from_h",
        "seed_resize_from_w",
        "sampler_name",
        "sampler_index",
        "scheduler",
        "batch_size",
        "n_iter",
        "steps",
        "cfg_scale",
        "width",
        "height",
        "override_settings",
        "send_images",
    }
)
_HIRES = frozenset(
    {"enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y"}
)
# Checked by `_refuse_second_pass`: allowed when they ask for what ldstudio does anyway.
_SECOND_PASS = frozenset(
    {"hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt"}
)
_MASK = frozenset(
    {
        "mask",
        "mask_blur",
        "inpainting_fill",
        "inpaint_full_res",
        "inpaint_full_res_padding",
        "inpainting_mask_invert",
    }
)
# (field, what it asks for): refused unless empty/false, or (second pass) the same as the first.
_CANNOT = (
    ("restore_faces", "face restoration"),
    ("tiling", "tiling (seamless textures)"),
    ("script_name", "A1111 scripts"),
    ("alwayson_scripts", "A1111 extensions (alwayson_scripts)"),
    ("refiner_checkpoint", "a refiner model"),
    ("firstpass_image", "a given first-pass image"),
)
_OVERRIDES = frozenset({"sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"})


@dataclass
class Mapped:
    """A request built from a body, with what the body held that ldstudio did not use."""

    request: Request
    unused: list[str] = field(default_factory=list)
    model_title: str = ""
    send_images: bool = True


def sampler_list() -> list[dict[str, Any]]:
    return [{"name": name, "aliases": [name.lower()], "options": {}} for name in SCHEDULERS]


def scheduler_list() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "label": label,
            "aliases": None,
            "default_rho": 7.0 if name == "karras" else -1,
            "need_inner_model": False,
        }
        for name, label in SCHEDULER_TYPES
    ]


def sampler_from(sampler: object, scheduler: object) -> str:
    """Our sampler for A1111's `sampler_name` and `scheduler`; ValueError listing those allowed."""
    if not isinstance(sampler, str) or not sampler.strip():
        raise ValueError(f"sampler_name: {sampler!r} is not a sampler; allowed: {_samplers()}")
    schedule = "" if scheduler is None else scheduler
    types = {name: name for name, _ in SCHEDULER_TYPES} | {
        label.lower(): name for name, label in SCHEDULER_TYPES
    }
    if not isinstance(schedule, str) or (schedule and schedule.lower() not in types):
        allowed = ", ".join(name for name, _ in SCHEDULER_TYPES)
        raise ValueError(f"scheduler: {schedule!r} is not available; allowed: {allowed}")
    kind = types.get(schedule.lower(), "automatic") if schedule else "automatic"
    mapped = map_a1111_sampler(sampler, "karras" if kind == "karras" else "")
    if mapped is None:
        with_schedule = f" with scheduler {schedule!r}" if kind == "karras" else ""
        raise ValueError(
            f"sampler_name: {sampler!r}{with_schedule} is not available; allowed: {_samplers()}"
        )
    return mapped


def txt2img(body: dict[str, Any], ctx: ServerContext) -> Mapped:
    """The request a /sdapi/v1/txt2img body asks for; ValueError naming the field."""
    used = set(_COMMON)
    params, mapped = _params(body, ctx)
    hires = None
    if _flag(body, "enable_hr"):
        used |= _HIRES | {"denoising_strength"}
        hires = _hires(body, params, ctx)
    _refuse_second_pass(body, params, ctx, mapped.model_title)
    used |= _SECOND_PASS
    mapped.request = _validated(Request.txt2img(params, hires))
    mapped.unused = _unused(body, used) + mapped.unused
    return mapped


def img2img(body: dict[str, Any], ctx: ServerContext) -> Mapped:
    """The request a /sdapi/v1/img2img body asks for, its image (and mask) stored in the
    library's blob store; ValueError naming the field."""
    used = set(_COMMON) | {"init_images", "denoising_strength"}
    params, mapped = _params(body, ctx)
    images = body.get("init_images")
    if not isinstance(images, list) or len(images) != 1:
        count = len(images) if isinstance(images, list) else "no"
        raise ValueError(f"init_images: {count} images; allowed: exactly one base64 image")
    image = decode_image(images[0], "init_images[0]")
    if image.mode not in ("RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    mask_text = body.get("mask")
    values: dict[str, Any] = {"strength": _number(body, "denoising_strength", None)}
    mask_png = None
    if mask_text is not None:
        used |= _MASK
        mask = decode_image(mask_text, "mask")
        if mask.size != image.size:
            raise ValueError(
                f"mask: {_wxh(mask.size)} but init_images[0] is {_wxh(image.size)}; allowed: a "
                "mask of the image's size"
            )
        from ldstudio.core.masking import mask_from_image

        levels = mask_from_image(mask)
        values["invert_mask"] = _int(body, "inpainting_mask_invert", 0) == 1
        lowest, highest = levels.getextrema()
        if (highest == 0 and not values["invert_mask"]) or (
            lowest == 255 and values["invert_mask"]
        ):
            raise ValueError("mask: marks nothing to repaint; allowed: white where to repaint")
        mask_png = _png(levels)
        values["mask_blur"] = _int(body, "mask_blur", InpaintSettings().mask_blur)
        fill = _int(body, "inpainting_fill", 1)
        if not 0 <= fill < len(INPAINTING_FILL):
            raise ValueError(
                f"inpainting_fill: {fill} is not allowed; allowed: 0 (fill), 1 (original), "
                "2 (latent noise), 3 (latent nothing)"
            )
        values["masked_content"] = INPAINTING_FILL[fill]
        values["inpaint_area"] = "masked" if _flag(body, "inpaint_full_res") else "whole"
        values["mask_padding"] = _int(body, "inpaint_full_res_padding", 32)
    settings = _settings(lambda: InpaintSettings(**values).validate())
    problem = canvas_size_problem(
        image.size, settings, masked=mask_png is not None, sized=params.width is not None
    )
    if problem is not None:
        raise ValueError(f"init_images[0]: {problem}")
    blobs = ctx.library.blobs
    digest = blobs.put(_png(image))
    mask_digest = blobs.put(mask_png) if mask_png is not None else None
    mapped.request = _validated(Request.inpainting(params, settings, digest, mask_digest))
    mapped.unused = _unused(body, used) + mapped.unused
    return mapped


def decode_base64(text: object, what: str) -> bytes:
    """The bytes of a base64 image, with or without a `data:image/...;base64,` prefix."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{what}: expected a base64 image (text)")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not valid base64") from None


def decode_image(text: object, what: str) -> Image.Image:
    """A base64 image (see `decode_base64`), decoded and upright (EXIF orientation applied)."""
    raw = decode_base64(text, what)
    try:
        with Image.open(io.BytesIO(raw)) as opened:
            if max(opened.size) > MAX_CANVAS_SIDE:
                raise ValueError(
                    f"{what}: {_wxh(opened.size)}; allowed: at most {MAX_CANVAS_SIDE} pixels a side"
                )
            opened.load()
            return ImageOps.exif_transpose(opened)
    except ValueError:
        raise
    except Exception as exc:  # Pillow raises a zoo (bomb errors, struct.error, ...)
        raise ValueError(
            f"{what}: not a readable image ({exc}); allowed: PNG, JPEG, WebP"
        ) from None


# -- the shared fields -------------------------------------------------------------------------


def _params(body: dict[str, Any], ctx: ServerContext) -> tuple[GenerationParams, Mapped]:
    for name, what in _CANNOT:
        if body.get(name):
            raise ValueError(f"{name}: ldstudio has no {what}; allowed: leave it empty or false")
    overrides = body.get("override_settings") or {}
    if not isinstance(overrides, dict):
        raise ValueError("override_settings: expected a JSON object of A1111 option names")
    options = ctx.current_options()
    chosen = _override_options(overrides, options, ctx)
    model = chosen.checkpoint
    is_bundled = model.path == ctx.catalogue.bundled().path
    prompt, negative, styles = _styles(body)
    values: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": negative,
        "styles": styles,
        # The bundled model is "" in every request, as the window and the CLI write it.
        "model": "" if is_bundled else str(model.path),
        "vae": "" if chosen.vae is None else str(chosen.vae.path),
        "clip_skip": chosen.clip_skip,
        "scheduler": sampler_from(
            _sampler_name(body),
            body.get("scheduler"),
        ),
        "seed": _seed(body, "seed"),
    }
    for key, name in (
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("n_iter", "batch_count"),
        ("width", "width"),
        ("height", "height"),
    ):
        if body.get(key) is not None:
            values[name] = _int(body, key, 0)
    if body.get("cfg_scale") is not None:
        values["guidance_scale"] = _number(body, "cfg_scale", 7.0)
    strength = _number(body, "subseed_strength", 0.0) or 0.0
    if strength > 0:
        subseed = _seed(body, "subseed")
        values["variation_seed"] = (
            secrets.randbelow(SEED_MAX + 1) if subseed == RANDOM_SEED else subseed
        )
        values["variation_strength"] = strength
    resize = (_int(body, "seed_resize_from_w", 0), _int(body, "seed_resize_from_h", 0))
    if resize[0] > 0 and resize[1] > 0:  # A1111 uses it only with both sides
        values["seed_resize_from"] = resize
    # The seed is drawn here, not by the engine: the reply reports it even for a job that
    # saved nothing, and the job runs exactly as an in-process one with that seed.
    params = _settings(lambda: GenerationParams(**values).resolved())
    unused = [f"override_settings.{key}" for key in overrides if key not in _OVERRIDES]
    send = body.get("send_images", True)
    return params, Mapped(
        Request.txt2img(params), unused, model.name, send is not False and send != 0
    )


def _override_options(overrides: dict[str, Any], options: Options, ctx: ServerContext) -> Options:
    chosen = Options(options.checkpoint, options.vae, options.clip_skip)
    if overrides.get("sd_model_checkpoint"):
        chosen.checkpoint = ctx.checkpoint(
            overrides["sd_model_checkpoint"], "override_settings.sd_model_checkpoint"
        )
    if overrides.get("sd_vae") is not None:
        chosen.vae = ctx.vae(overrides["sd_vae"], "override_settings.sd_vae")
    if overrides.get("CLIP_stop_at_last_layers") is not None:
        chosen.clip_skip = clip_skip(
            overrides["CLIP_stop_at_last_layers"], "override_settings.CLIP_stop_at_last_layers"
        )
    return chosen


def _styles(body: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    prompt = body.get("prompt", "")
    negative = body.get("negative_prompt", "") or ""
    if not isinstance(prompt, str) or not isinstance(negative, str):
        raise ValueError("prompt, negative_prompt: expected text")
    names = body.get("styles") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("styles: expected a list of style names")
    if not names:
        return prompt, negative, ()
    from ldstudio.cli.common import BadInput
    from ldstudio.cli.styles import known_styles
    from ldstudio.core.prompts import apply_styles

    try:
        known = {style.name.lower(): style for style in known_styles()}
    except BadInput as exc:
        raise ValueError(f"styles: {exc}") from None
    chosen = []
    for name in names:
        style = known.get(name.lower())
        if style is None:
            allowed = ", ".join(sorted(s.name for s in known.values())) or (
                "none (import a styles.csv on the server: `ldstudio styles import FILE`)"
            )
            raise ValueError(f"styles: {name!r} is not a known style; allowed: {allowed}")
        chosen.append(style)
    prompt, negative = apply_styles(prompt, negative, chosen)
    return prompt, negative, tuple(style.name for style in chosen)


def _hires(body: dict[str, Any], params: GenerationParams, ctx: ServerContext) -> HiresSettings:
    name = body.get("hr_upscaler") or LATENT_UPSCALER
    if not isinstance(name, str):
        raise ValueError(f"hr_upscaler: {name!r} is not an upscaler name")
    upscalers = ctx.catalogue.upscalers()
    if name.lower() == LATENT_UPSCALER.lower():
        upscaler = "latent"
    elif name.lower() in (n.lower() for n in IMAGE_UPSCALERS):
        upscaler = "lanczos"
    else:
        try:
            upscaler = str(ctx.catalogue.find(upscalers, name, "hr_upscaler").path)
        except ValueError:
            allowed = ", ".join([LATENT_UPSCALER, *IMAGE_UPSCALERS, *(m.name for m in upscalers)])
            raise ValueError(
                f"hr_upscaler: {name!r} is not available; allowed: {allowed}"
            ) from None
    values: dict[str, Any] = {
        "upscaler": upscaler,
        "scale": _number(body, "hr_scale", 2.0),
        "steps": _int(body, "hr_second_pass_steps", 0),
        "strength": _number(body, "denoising_strength", None),
    }
    x, y = _int(body, "hr_resize_x", 0), _int(body, "hr_resize_y", 0)
    if x > 0 or y > 0:
        if (x <= 0 or y <= 0) and (params.width is None or params.height is None):
            raise ValueError(
                "hr_resize_x/hr_resize_y: one side alone needs width and height (the first "
                "pass's size) to keep the aspect; give both sides, or width and height"
            )
        width, height = params.width or 0, params.height or 0
        if x <= 0:
            x = round(y * width / height / 8) * 8
        if y <= 0:
            y = round(x * height / width / 8) * 8
        values["width"], values["height"] = x, y
    settings: HiresSettings = _settings(lambda: HiresSettings(**values).validate())
    return settings


def _refuse_second_pass(
    body: dict[str, Any], params: GenerationParams, ctx: ServerContext, title: str
) -> None:
    """A second pass with another model, sampler or prompt: ldstudio's uses the first's."""
    checkpoint = body.get("hr_checkpoint_name")
    if checkpoint and ctx.checkpoint(checkpoint, "hr_checkpoint_name").name != title:
        raise ValueError(
            "hr_checkpoint_name: the second pass uses the first pass's model; allowed: leave "
            "it empty or give the same"
        )
    sampler, schedule = body.get("hr_sampler_name"), body.get("hr_scheduler")
    if sampler or schedule:
        sampler = sampler or _sampler_name(body)
        schedule = schedule or body.get("scheduler")
    if sampler and sampler_from(sampler, schedule) != params.scheduler:
        raise ValueError(
            "hr_sampler_name/hr_scheduler: the second pass uses the first pass's sampler; "
            "allowed: leave them empty or give the same"
        )
    for key, ours in (("hr_prompt", params.prompt), ("hr_negative_prompt", params.negative_prompt)):
        value = body.get(key)
        if value and value != ours:
            raise ValueError(
                f"{key}: the second pass uses the first pass's prompt; allowed: leave it empty "
                "or give the same"
            )


# -- small readers ---------------------------------------------------------------------------


def _sampler_name(body: dict[str, Any]) -> Any:
    """`sampler_name`, else webuiapi's deprecated `sampler_index`, else ldstudio's default."""
    return body.get("sampler_name") or body.get("sampler_index") or DEFAULT_SAMPLER


def _seed(body: dict[str, Any], key: str) -> int | str:
    value = body.get(key, -1)
    if value is None or value == -1:
        return RANDOM_SEED
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SEED_MAX:
        raise ValueError(
            f"{key}: {value!r} is not allowed; allowed: -1 (random) or 0 to {SEED_MAX}"
        )
    return value


def _int(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) and key == "inpainting_mask_invert":
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not an integer")
    return value


def _number(body: dict[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not a number")
    return float(value)


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool | int):
        raise ValueError(f"{key}: {value!r} is not true or false")
    return bool(value)


def _settings(build: Any) -> Any:
    """`build()` with its ValueError worded in the body's field names."""
    try:
        return build()
    except (TypeError, ValueError) as exc:
        raise ValueError(_body_words(str(exc))) from None


def _validated(request: Request) -> Request:
    return _settings(request.validate)  # type: ignore[no-any-return]


def _body_words(message: str) -> str:
    for ours, theirs in sorted(_BODY_NAMES.items(), key=lambda kv: -len(kv[0])):
        if message.startswith(f"{ours}:") or message.startswith(f"{ours} "):
            return theirs + message[len(ours) :]
    return message


def _unused(body: dict[str, Any], used: set[str]) -> list[str]:
    cannot = {name for name, _ in _CANNOT}
    return sorted(key for key in body if key not in used and key not in cannot)


def _samplers() -> str:
    return ", ".join(SCHEDULERS)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
