"""A1111's img2img and hires-fix keys as ldstudio's job settings, and the value coercions the
readers share; pure functions, any thread.

`a1111_inpaint` turns `Denoising strength`, `Mask blur`, `Inpaint area`, ... into
InpaintSettings; `a1111_hires` turns `Hires upscale`/`Hires resize`/`Hires steps`/`Hires
upscaler` (with `Denoising strength`) into HiresSettings. A value that cannot be used is named
in the caller's warnings and the default kept: nothing is dropped without a word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ldstudio.core.hires import A1111_UPSCALER_NAMES, HiresSettings
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.metadata import (
    DENOISING_STRENGTH,
    HIRES_RESIZE,
    HIRES_STEPS,
    HIRES_UPSCALE,
    HIRES_UPSCALER,
    INPAINT_AREA,
    INPAINT_NOT_MASKED,
    MASK_BLUR,
    MASK_MODE,
    MASK_PADDING_OLD,
    MASKED_CONTENT,
    MASKED_CONTENT_WORDS,
    MASKED_PADDING,
    ONLY_MASKED,
    OUTPAINT,
    SOFT_INPAINTING,
    WHOLE_PICTURE,
)

if TYPE_CHECKING:
    from ldstudio.core.models.embeddings import EmbeddingUse

# A1111 text keys that become InpaintSettings (applied when `ReadResult.inpaint` is set).
# "Soft inpainting enabled" is A1111's own soft-inpainting switch (1.8 on).
A1111_SOFT_ENABLED = "Soft inpainting enabled"
INPAINT_KEYS = frozenset(
    {
        DENOISING_STRENGTH,
        MASK_BLUR,
        INPAINT_AREA,
        MASKED_PADDING,
        MASK_PADDING_OLD,
        MASKED_CONTENT,
        MASK_MODE,
        OUTPAINT,
        SOFT_INPAINTING,
        A1111_SOFT_ENABLED,
    }
)
# Any of these says the text is an img2img/inpaint job; "Denoising strength" alone says so
# only without a hires fix (A1111 writes it for a txt2img hires pass too).
_MASK_KEYS = INPAINT_KEYS - {DENOISING_STRENGTH, SOFT_INPAINTING, A1111_SOFT_ENABLED}
_CONTENT_FROM_WORDS = {words: name for name, words in MASKED_CONTENT_WORDS.items()}
# A1111 text keys that become HiresSettings (applied when the request has a hires fix).
HIRES_KEYS = frozenset(
    {DENOISING_STRENGTH, HIRES_UPSCALE, HIRES_RESIZE, HIRES_STEPS, HIRES_UPSCALER}
)
_UPSCALER_FROM_NAMES = {name.lower(): ours for ours, name in A1111_UPSCALER_NAMES.items()}


def a1111_hires(pairs: Mapping[str, Any], warnings: list[str]) -> HiresSettings | None:
    """The hires fix A1111's `Hires …` keys describe (with Denoising strength), or None.

    A value that cannot be used is named in `warnings` and the default kept; an upscaler
    ldstudio does not have (ESRGAN models, A1111's other latent modes) is named and lanczos
    used, so "reuse" gives a hires fix of the same size and strength, and says what differs.
    """
    if not any(str(key).startswith("Hires") for key in pairs):
        return None
    settings = HiresSettings()
    values: dict[str, Any] = {}
    scale = as_float(pairs.get(HIRES_UPSCALE)) if HIRES_UPSCALE in pairs else None
    if HIRES_UPSCALE in pairs and scale is None:
        warnings.append(f"{HIRES_UPSCALE}: {pairs[HIRES_UPSCALE]!r} is not a number")
    elif scale is not None:
        values["scale"] = scale
    resize = pairs.get(HIRES_RESIZE)
    if resize is not None:
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", str(resize))
        if match and int(match[1]) and int(match[2]):
            values["width"], values["height"] = int(match[1]), int(match[2])
        else:
            warnings.append(f"{HIRES_RESIZE}: {resize!r} is not WxH; the scale is used")
    if HIRES_STEPS in pairs:
        steps = as_int(pairs[HIRES_STEPS])
        if steps is None:
            warnings.append(f"{HIRES_STEPS}: {pairs[HIRES_STEPS]!r} is not a whole number")
        else:
            values["steps"] = steps
    name = pairs.get(HIRES_UPSCALER)
    if name is not None:
        ours = _UPSCALER_FROM_NAMES.get(str(name).lower())
        if ours is None:
            warnings.append(
                f"{HIRES_UPSCALER}: {name!r} is not available in ldstudio; lanczos is used"
            )
        else:
            values["upscaler"] = ours
    if DENOISING_STRENGTH in pairs:
        strength = as_float(pairs[DENOISING_STRENGTH])
        if strength is None:
            warnings.append(f"{DENOISING_STRENGTH}: {pairs[DENOISING_STRENGTH]!r} is not a number")
        else:
            values["strength"] = strength
    for key in ("upscaler", "scale", "steps", "strength"):
        if key in values:
            try:
                settings = settings.replace(**{key: values[key]}).validate()
            except ValueError as exc:
                warnings.append(f"{exc}; the default is used")
    if "width" in values:
        try:
            settings = settings.replace(width=values["width"], height=values["height"]).validate()
        except ValueError as exc:
            warnings.append(f"{exc}; the scale is used")
    return settings


def a1111_inpaint(
    pairs: Mapping[str, Any], warnings: list[str]
) -> tuple[InpaintSettings | None, str]:
    """The InpaintSettings A1111's img2img keys describe, and the face; (None, "") for txt2img.

    A value that is not allowed is named in `warnings` and its default kept. Soft inpainting:
    ldstudio writes `Soft inpainting: False` only when off; A1111 writes `Soft inpainting
    enabled: True` only when on, so a text of another tool without it was made without.
    """
    hires = any(str(key).startswith("Hires") for key in pairs)
    if not (_MASK_KEYS & pairs.keys() or (DENOISING_STRENGTH in pairs and not hires)):
        return None, ""
    values: dict[str, Any] = {}

    def number(key: str, name: str, convert: Callable[[Any], Any]) -> None:
        if key in pairs:
            value = convert(pairs[key])
            if value is None:
                warnings.append(f"{key}: {pairs[key]!r} is not a number; the default is used")
            else:
                values[name] = value

    number(DENOISING_STRENGTH, "strength", as_float)
    number(MASK_BLUR, "mask_blur", as_int)
    number(MASK_PADDING_OLD, "mask_padding", as_int)
    number(MASKED_PADDING, "mask_padding", as_int)  # A1111's own name wins
    area = pairs.get(INPAINT_AREA)
    if area is not None:
        if area in (ONLY_MASKED, WHOLE_PICTURE):
            values["inpaint_area"] = "masked" if area == ONLY_MASKED else "whole"
        else:
            warnings.append(f"{INPAINT_AREA}: {area!r} is not {ONLY_MASKED!r} or {WHOLE_PICTURE!r}")
    content = pairs.get(MASKED_CONTENT)
    if content is not None:
        if content in _CONTENT_FROM_WORDS:
            values["masked_content"] = _CONTENT_FROM_WORDS[content]
        else:
            allowed = ", ".join(MASKED_CONTENT_WORDS.values())
            warnings.append(f"{MASKED_CONTENT}: {content!r} is not one of {allowed}")
    values["invert_mask"] = pairs.get(MASK_MODE) == INPAINT_NOT_MASKED
    outpaint = pairs.get(OUTPAINT)
    if outpaint is not None:
        amounts = [as_int(part) for part in str(outpaint).split(",")]
        if len(amounts) == 4 and all(a is not None for a in amounts):
            values["outpaint"] = tuple(amounts)
        else:
            warnings.append(f"{OUTPAINT}: {outpaint!r} is not four amounts left,top,right,bottom")
    ours = str(pairs.get("Version", "")).startswith("ldstudio")
    if SOFT_INPAINTING in pairs:
        values["soft"] = pairs[SOFT_INPAINTING] != "False"
    else:
        values["soft"] = ours or pairs.get(A1111_SOFT_ENABLED) == "True"
    settings = InpaintSettings()
    for name, value in values.items():
        try:
            settings = settings.replace(**{name: value}).validate()
        except ValueError as exc:
            warnings.append(f"{exc}; the default is used")
    if settings.outpainting:
        face = "outpaint"
    elif (_MASK_KEYS - {INPAINT_AREA, MASKED_PADDING, MASK_PADDING_OLD}) & pairs.keys():
        face = "inpaint"
    else:
        face = "img2img"
    return settings, face


# --- small coercions: metadata values are whatever a tool chose to write ----------------------


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if number == number and abs(number) != float("inf") else None


# -- prompt and seed keys (#17) --------------------------------------------------------------

CLIP_SKIP = "Clip skip"
VARIATION_SEED = "Variation seed"
VARIATION_STRENGTH = "Variation seed strength"
SEED_RESIZE_FROM = "Seed resize from"
EMPHASIS = "Emphasis"
STYLES = "Styles"
TI_HASHES = "TI hashes"
# A1111's words for the emphasis modes (its `Emphasis` key), both ways.
EMPHASIS_WORDS = {"original": "Original", "no-norm": "No norm", "comfy": "ComfyUI"}
_EMPHASIS_FROM_WORDS = {words.lower(): name for name, words in EMPHASIS_WORDS.items()}


def a1111_prompt_fields(pairs: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """GenerationParams fields from `Clip skip`, `Variation seed`, `Variation seed strength`,
    `Seed resize from`, `Emphasis` and `Styles` (popped from `pairs`); a value that cannot be
    used is named in `warnings` and left out."""
    from ldstudio.core.params import field_problem

    found: dict[str, Any] = {}

    def take(key: str, name: str, convert: Callable[[Any], Any]) -> None:
        if key not in pairs:
            return
        raw = pairs.pop(key)
        value = convert(raw)
        problem = field_problem(name, value) if value is not None else "not understood"
        if problem:
            warnings.append(f"{key}: {raw!r} cannot be used ({problem}); left out")
            return
        found[name] = value

    take(CLIP_SKIP, "clip_skip", as_int)
    take(VARIATION_SEED, "variation_seed", as_int)
    take(VARIATION_STRENGTH, "variation_strength", as_float)
    take(SEED_RESIZE_FROM, "seed_resize_from", _wxh)
    take(EMPHASIS, "emphasis", lambda raw: _EMPHASIS_FROM_WORDS.get(str(raw).strip().lower()))
    take(STYLES, "styles", _names)
    if "variation_strength" in found and "variation_seed" not in found:
        found.pop("variation_strength")  # a strength without a seed varies nothing
    return found


def prompt_pairs(params: Any) -> dict[str, str]:
    """The same keys as A1111 writes them, each only when it is not the default."""
    pairs: dict[str, str] = {}
    if params.clip_skip != 1:
        pairs[CLIP_SKIP] = str(params.clip_skip)
    if params.variation_seed is not None and params.variation_strength > 0:
        pairs[VARIATION_SEED] = str(params.variation_seed)
        pairs[VARIATION_STRENGTH] = f"{params.variation_strength:g}"
    if params.seed_resize_from is not None:
        pairs[SEED_RESIZE_FROM] = f"{params.seed_resize_from[0]}x{params.seed_resize_from[1]}"
    if params.emphasis != "original":
        pairs[EMPHASIS] = EMPHASIS_WORDS[params.emphasis]
    if params.styles:
        pairs[STYLES] = ", ".join(params.styles)
    hashes = ti_hashes(params)
    if hashes:
        pairs[TI_HASHES] = hashes
    return pairs


def ti_hashes(params: Any) -> str:
    """A1111's `TI hashes` for the embeddings `params`' prompts use on its model (found as the
    engine finds them), "name: <12 hex of the file's sha256>, ..."; "" when none. A name the
    engine refused made no image, and a file gone since leaves its hash out."""
    from ldstudio.core.models.embeddings import embedding_name, ti_hashes_text, used_embeddings
    from ldstudio.core.models.hashes import file_sha256
    from ldstudio.core.prompts import prompt_schedules

    texts = [
        text
        for prompt in (params.prompt, params.negative_prompt)
        for _end, text in prompt_schedules(prompt, params.steps)
    ]
    try:
        used = used_embeddings(texts, params.model)
    except ValueError:
        return ""
    named = []
    for entry in used:
        try:
            named.append((embedding_name(entry), file_sha256(entry.path)))
        except OSError:
            continue
    return ti_hashes_text(named)


def a1111_embeddings(pairs: dict[str, Any], warnings: list[str]) -> tuple[EmbeddingUse, ...]:
    """The embeddings `TI hashes` names (popped from `pairs`), each looked up in the model
    folders and its hash checked (`EmbeddingUse`); what is missing or differs goes to
    `warnings`. A value that is no such list stays in `pairs`, named in `warnings`."""
    from ldstudio.core.models import ModelRegistry
    from ldstudio.core.models.embeddings import check_ti_hashes, parse_ti_hashes
    from ldstudio.core.models.hashes import file_sha256

    if TI_HASHES not in pairs:
        return ()
    try:
        named = parse_ti_hashes(str(pairs[TI_HASHES]))
    except ValueError as exc:
        warnings.append(f"{exc}; kept as it is")
        return ()
    pairs.pop(TI_HASHES)
    try:
        entries = ModelRegistry.shared().entries()
    except ValueError as exc:  # a damaged models.json
        warnings.append(f"{TI_HASHES}: the embeddings cannot be looked up ({exc})")
        entries = []
    found = check_ti_hashes(named, entries, file_sha256)
    warnings.extend(f"{TI_HASHES}: {use.problem}" for use in found if use.problem)
    return tuple(found)


def _wxh(raw: Any) -> tuple[int, int] | None:
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", str(raw))
    return (int(match[1]), int(match[2])) if match else None


def _names(raw: Any) -> tuple[str, ...] | None:
    names = tuple(part.strip() for part in str(raw).split(",") if part.strip())
    return names or None
