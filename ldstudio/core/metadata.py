"""Generation metadata in image files: A1111 `parameters` text and ldstudio's JSON; any thread.

ldstudio writes two PNG text chunks: `parameters` in AUTOMATIC1111's format, so other tools
read our images, and `ldstudio` holding the whole request (kind, parameters, input blob hashes,
inpaint settings) as portable JSON, so ours read back exactly. An inpaint request adds A1111's
img2img keys to `parameters` (see `inpaint_pairs`); a txt2img image's text is what it always was.
Parsing never raises on malformed input beyond ValueError with a clear message.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image

from ldstudio import __version__
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import (
    KIND_INPAINT,
    ROLE_IMAGE,
    ROLE_MASK,
    Request,
    params_from_chunk,
    to_portable,
)

PARAMETERS_KEY = "parameters"
LDSTUDIO_KEY = "ldstudio"

# A1111's img2img keys (its processing.py words them), and ours for what it has no key for.
DENOISING_STRENGTH = "Denoising strength"
MASK_BLUR = "Mask blur"
INPAINT_AREA = "Inpaint area"
MASKED_PADDING = "Masked area padding"
MASK_PADDING_OLD = "Mask padding"  # how some tools (and the issue) name the same value
MASKED_CONTENT = "Masked content"
MASK_MODE = "Mask mode"
OUTPAINT = "Outpaint"  # ours: "left,top,right,bottom" pixels
SOFT_INPAINTING = "Soft inpainting"  # ours, written only when off (on is ldstudio's default)
# A1111's hires-fix keys (a txt2img request's second pass; with Denoising strength).
HIRES_UPSCALE = "Hires upscale"
HIRES_RESIZE = "Hires resize"
HIRES_STEPS = "Hires steps"
HIRES_UPSCALER = "Hires upscaler"
ONLY_MASKED, WHOLE_PICTURE, INPAINT_NOT_MASKED = (
    "Only masked",
    "Whole picture",
    "Inpaint not masked",
)
# InpaintSettings.masked_content -> A1111's words
MASKED_CONTENT_WORDS = {
    "original": "original",
    "fill": "fill",
    "latent_noise": "latent noise",
    "latent_nothing": "latent nothing",
}
# The request an image of another tool describes cannot name its source image and mask: A1111
# and the others record the settings, not the pictures.
SOURCE_NOT_RECORDED = (
    "source image and mask: not recorded in this image's metadata (only the inpaint settings "
    "are); choose a source image to run it again"
)

# A1111's own regex for one `Key: value` pair of the last line. Kept as the specification:
# `a1111_pairs` finds what `A1111_PAIR_RE.findall` finds, in linear time (findall takes quadratic
# time on a long line without pairs: 16 KB took 4 s, 900 KB did not finish in 2 minutes).
A1111_PAIR_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# A key: its whole run of key characters (a shorter one is never followed by ":"), then
# ":" and the spaces before the value when they follow.
_KEY = re.compile(r"\s*(\w[\w \-/]*)(?:(:)\s*)?")
_WORD_CHAR = re.compile(r"\w")
_BACKSLASHES = re.compile(r"\\*")
# A quote after an even run of backslashes (each run matched from its first backslash only, so
# the scan stays linear): the quotes that can close a quoted value.
_CLOSING_QUOTE = re.compile(r'(?<!\\)(?:\\\\)*"')
_NEEDS_QUOTES = re.compile(r"[,:\n]")


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if _NEEDS_QUOTES.search(value) else value


def a1111_parameters(
    params: GenerationParams,
    model_name: str,
    model_hash: str = "",
    request: Request | None = None,
) -> str:
    """The `parameters` text A1111 writes, for params with a concrete seed and size.

    `model_hash`: A1111's `Model hash` (see `model_hash_of`), left out when empty. `request`:
    the job the image came from; an inpaint request adds its keys (`inpaint_pairs`).
    """
    from ldstudio.core.a1111_keys import prompt_pairs  # it builds on this module's keys

    pairs: dict[str, Any] = {
        "Steps": params.steps,
        "Sampler": params.scheduler,
        "CFG scale": f"{params.guidance_scale:g}",
        "Seed": params.seed,
        "Size": f"{params.width}x{params.height}",
        "Model hash": model_hash,
        "Model": model_name,
        **_extra_network_pairs(params),
        **prompt_pairs(params),
        **inpaint_pairs(request),
        **hires_pairs(request),
        **upscale_pairs(request),
        "Version": f"ldstudio {__version__}",
    }
    line = ", ".join(f"{k}: {_quote(str(v))}" for k, v in pairs.items() if v not in ("", None))
    # A1111 keeps LoRAs in the prompt as <lora:name:strength>; readers look for them there.
    text = params.prompt + "".join(f" <lora:{Path(p).stem}:{w:g}>" for p, w in params.loras)
    if params.negative_prompt:
        text += f"\nNegative prompt: {params.negative_prompt}"
    return f"{text}\n{line}"


def hires_pairs(request: Request | None) -> dict[str, str]:
    """A1111's keys for a hires fix, in A1111's order; {} without one. The strength is the
    one the engine used (it records it in the request it reports)."""
    from ldstudio.core.hires import A1111_UPSCALER_NAMES
    from ldstudio.core.upscale import model_label

    if request is None or request.hires is None:
        return {}
    hires = request.hires
    pairs = {DENOISING_STRENGTH: f"{hires.resolved_strength():g}"}
    if hires.resized:
        pairs[HIRES_RESIZE] = f"{hires.width}x{hires.height}"
    else:
        pairs[HIRES_UPSCALE] = f"{hires.scale:g}"
    if hires.steps:
        pairs[HIRES_STEPS] = str(hires.steps)
    pairs[HIRES_UPSCALER] = A1111_UPSCALER_NAMES.get(hires.upscaler) or model_label(hires.upscaler)
    return pairs


def upscale_pairs(request: Request | None) -> dict[str, str]:
    """A1111's keys for an upscale: its SD upscale script's (a tiled img2img refine) when the
    image was refined, its Extras tab's ("Postprocess ...") when only the upscaler ran."""
    from ldstudio.core.upscale import upscaler_label

    if request is None or request.upscale is None:
        return {}
    settings = request.upscale
    upscaler = upscaler_label(settings)
    if not settings.refines:
        return {"Postprocess upscale by": str(settings.scale), "Postprocess upscaler": upscaler}
    return {
        DENOISING_STRENGTH: str(float(settings.refine_strength)),
        "SD upscale overlap": str(settings.overlap),
        "SD upscale upscaler": upscaler,
        "Postprocess upscale by": str(settings.scale),
    }


def inpaint_pairs(request: Request | None) -> dict[str, str]:
    """A1111's img2img keys for an inpaint request, as A1111 writes them; {} for txt2img.

    Mask keys only when something is masked (a mask, or an outpaint's new area). A strength
    left "auto" is not written: the engine records the one it used in the request it reports.
    """
    if request is None or request.kind != KIND_INPAINT or request.inpaint is None:
        return {}
    settings = request.inpaint
    masked = request.input(ROLE_MASK) is not None or settings.outpainting
    pairs: dict[str, str] = {}
    if settings.strength is not None:
        pairs[DENOISING_STRENGTH] = str(float(settings.strength))
    if masked:
        pairs[MASK_BLUR] = str(settings.mask_blur)
    if settings.inpaint_area == "masked":
        pairs[INPAINT_AREA] = ONLY_MASKED
        pairs[MASKED_PADDING] = str(settings.mask_padding)
    if masked:
        pairs[MASKED_CONTENT] = MASKED_CONTENT_WORDS[settings.masked_content]
    if settings.invert_mask:
        pairs[MASK_MODE] = INPAINT_NOT_MASKED
    if settings.outpainting:
        pairs[OUTPAINT] = ",".join(str(amount) for amount in settings.outpaint)
    if not settings.soft:
        pairs[SOFT_INPAINTING] = "False"
    return pairs


def model_hash_of(params: GenerationParams) -> str:
    """A1111's `Model hash` of the model `params` ran on: the first 10 hex of its content hash
    (a file's sha256, a diffusers folder's content hash; the bundled model's when `model` is
    empty); "" when it cannot be read. Cached, so only a model's first image waits for it."""
    from ldstudio.core.models import model_hash
    from ldstudio.core.models.entries import resolve_model_path

    try:
        return model_hash(resolve_model_path(params.model))
    except (OSError, ValueError, RecursionError):
        return ""


def _extra_network_pairs(params: GenerationParams) -> dict[str, str]:
    """A1111's `VAE hash`, `VAE` and `Lora hashes` keys; a hash is left out if its file is gone."""
    from ldstudio.core.models import file_hash, lora_hash

    pairs: dict[str, str] = {}
    if params.vae:
        vae = Path(params.vae)
        with contextlib.suppress(OSError):
            pairs["VAE hash"] = file_hash(vae)
        pairs["VAE"] = vae.name
    hashes = []
    for path, _weight in params.loras:
        try:
            hashes.append(f"{Path(path).stem}: {lora_hash(Path(path))}")
        except (OSError, ValueError):
            continue
    if hashes:
        pairs["Lora hashes"] = ", ".join(hashes)
    return pairs


def a1111_pairs(line: str, limit: int | None = None) -> list[tuple[str, str]]:
    """The `(key, raw value)` pairs A1111's regex finds in one line, in time linear in its length.

    Same result as `A1111_PAIR_RE.findall(line)` for a line without "\\n" (the tests compare
    both), stopping after `limit` pairs when given. It walks the line once: a start that
    cannot begin a key skips the whole run of key characters (every later start inside that
    run fails the same way) and quoted values end at closing quotes found in one pass.
    """
    pairs: list[tuple[str, str]] = []
    size = len(line)
    closers: list[int] | None = None
    pos = 0
    while pos < size:
        key = _KEY.match(line, pos)
        if key is None:  # no key can start before the next word character
            found = _WORD_CHAR.search(line, pos)
            if found is None:
                break
            pos = found.start()
            continue
        start, stop = key.span(1)
        if stop - start < 2 or key.group(2) is None:
            pos = stop
            continue
        value_at = key.end()
        end = -1
        if value_at < size and line[value_at] == '"':
            if closers is None:
                closers = [m.end() - 1 for m in _CLOSING_QUOTE.finditer(line)]
            close = _closing_quote(line, value_at + 1, closers)
            if close is not None and (close + 1 == size or line[close + 1] == ","):
                end = close + 1
        if end < 0:  # unquoted (or a quote that does not end the value): up to the next comma
            comma = line.find(",", value_at)
            end = size if comma < 0 else comma
        pairs.append((line[start:stop], line[value_at:end]))
        if limit is not None and len(pairs) >= limit:
            break
        pos = end + 1  # past the comma (or the end of the line)
    return pairs


def _closing_quote(line: str, first: int, closers: list[int]) -> int | None:
    """Where a quoted value whose content starts at `first` ends (its closing quote), or None."""
    size = len(line)
    if first >= size or line[first] == '"':
        return None  # the content needs at least one character
    after = first
    if line[first] == "\\":
        run_end = _BACKSLASHES.match(line, first).end()  # type: ignore[union-attr]
        if run_end >= size:
            return None
        if (run_end - first) % 2 == 0 and line[run_end] == '"':
            return run_end
        # An odd run escapes the character after it; an even one leaves a plain character.
        after = run_end
    # Every run of backslashes from here on lies wholly after `after`: its parity decides.
    index = bisect.bisect_right(closers, after)
    return closers[index] if index < len(closers) else None


def parse_a1111_parameters(text: str) -> dict[str, Any]:
    """Split A1111 `parameters` text into prompt, negative prompt and the key/value pairs.

    Follows A1111's reader: the last line is the parameter line only if it holds at least
    three `Key: value` pairs; otherwise it belongs to the prompt.
    """
    if not isinstance(text, str):
        raise ValueError(f"parameters: expected text, got {type(text).__name__}")
    lines = text.strip().split("\n")
    pairs: dict[str, str] = {}
    if lines:
        found = a1111_pairs(lines[-1])
        if len(found) >= 3:
            lines = lines[:-1]
            for key, value in found:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError:
                        value = value[1:-1]
                pairs[key.strip()] = value
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result: dict[str, Any] = {
        "prompt": "\n".join(prompt_lines).strip(),
        "negative_prompt": "\n".join(negative_lines).strip(),
        **pairs,
    }
    size = pairs.get("Size", "")
    if re.fullmatch(r"\d+x\d+", size):
        width, height = size.split("x")
        result["width"], result["height"] = int(width), int(height)
    return result


def png_text_chunks(
    params: GenerationParams, model_name: str, request: Request | None = None
) -> dict[str, str]:
    """The text chunks ldstudio writes into every PNG it saves.

    `request`: the job the image came from (kind, inputs, inpaint settings); its parameters
    are taken to be `params`, the image's own (its seed, batch of one). None: txt2img.
    """
    job = (
        Request.txt2img(params) if request is None else dataclasses.replace(request, params=params)
    )
    # Portable: models, VAE and LoRAs as name + sha256, no path of this machine.
    portable = to_portable(job)
    model = portable["model"]
    # The model's hash is in its reference already (the bundled model has none: "" model).
    model_hash = model["sha256"][:10] if model else model_hash_of(params)
    return {
        PARAMETERS_KEY: a1111_parameters(params, model_name, model_hash, job),
        LDSTUDIO_KEY: json.dumps(portable, ensure_ascii=False, sort_keys=True),
    }


def read_ldstudio_params(path: Path) -> GenerationParams:
    """The GenerationParams ldstudio stored in an image. ValueError when absent or malformed."""
    with Image.open(path) as image:
        text = getattr(image, "text", {}).get(LDSTUDIO_KEY)
    if text is None:
        raise ValueError(f"{path}: no ldstudio metadata (chunk {LDSTUDIO_KEY!r} is missing)")
    return params_from_chunk(text)[0]


def read_request(path: Path) -> tuple[Request | None, list[str]]:
    """The request an image was made with, and notes on what is not known or not found here.

    From ldstudio's chunk: the whole request (models resolved in this machine's folders; the
    notes name those not found). From A1111 text (or another tool's): a txt2img request, or,
    when the text holds img2img keys (Denoising strength without a hires fix, Mask blur, ...),
    an inpaint request whose settings are known but whose `inputs` are empty, since the
    source image and mask are not recorded (noted with SOURCE_NOT_RECORDED); such a request
    does not validate until a source is given. (None, [why]) when no parameters are found.
    FileNotFoundError / readers.UnreadableImage when the file is not an image.
    """
    from ldstudio.core.readers import read_file  # readers builds on this module

    result = read_file(path)
    notes = list(result.warnings)
    request = result.request
    if request is None:
        notes.append(result.message)
    elif request.kind == KIND_INPAINT and request.input(ROLE_IMAGE) is None:
        notes.append(SOURCE_NOT_RECORDED)
    return request, notes
