"""Reading generation parameters that any tool wrote into a PNG, JPEG or WebP; any thread.

`read_file(path)` / `read_image(image)` return a `ReadResult` for ldstudio's own images and for
AUTOMATIC1111 / Forge / SD.Next / Krita (`parameters`), ComfyUI (`prompt` / `workflow`),
InvokeAI (`invokeai_metadata`), Fooocus (`fooocus_scheme`) and NovelAI (`Software` +
`Comment`); JPEG and WebP carry A1111 text in the EXIF UserComment (0x9286). See
`shared/FORMATS.md` for the formats.

`ReadResult.fields` holds what maps onto `GenerationParams` (sampler names translated to
ldstudio's, e.g. ComfyUI `dpmpp_2m` + `karras` -> "DPM++ 2M Karras"); everything else the tool
wrote stays in `ReadResult.extra`. `ReadResult.request` is the job as a Request: ldstudio's own,
whole; from A1111 text, txt2img or (img2img keys present) an inpaint request whose settings come
from A1111's keys and whose source image and mask are unknown (`inputs` empty).

Malformed metadata never raises: what cannot be parsed is reported in `warnings` and the
result falls back to "no generation metadata found". Only a file
that is missing (FileNotFoundError) or not an image at all (`UnreadableImage`: also a FIFO,
socket or device, and a decompression bomb) raises.

No file's content can make reading slow (imports and library reconciles read every file): each
reader is linear in its input, a text value over MAX_TEXT_BYTES is not read, ComfyUI graph
walks are memoised and bounded, and an image over Pillow's pixel limit is not decoded. What a
bound left out is always named in `warnings`.
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings as _warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from ldstudio.core.a1111_keys import (
    HIRES_KEYS,
    INPAINT_KEYS,
    a1111_embeddings,
    a1111_hires,
    a1111_inpaint,
    a1111_prompt_fields,
)
from ldstudio.core.a1111_keys import as_float as _as_float
from ldstudio.core.a1111_keys import as_int as _as_int
from ldstudio.core.hires import HiresSettings
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.metadata import (
    LDSTUDIO_KEY,
    PARAMETERS_KEY,
    a1111_pairs,
    parse_a1111_parameters,
)
from ldstudio.core.models.embeddings import EmbeddingUse
from ldstudio.core.params import SCHEDULERS, GenerationParams
from ldstudio.core.request import KIND_INPAINT, Request, request_from_chunk

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
NO_METADATA = "no generation metadata found"
# Text metadata read per value (UTF-8 bytes). Real parameters are a few KB and ComfyUI graphs
# a few hundred; the cap bounds the work on hostile files, and what it leaves out is reported.
MAX_TEXT_BYTES = 1 << 20

# Pillow warns (DecompressionBombWarning) about images over Image.MAX_IMAGE_PIXELS on stderr,
# from any thread, with words a user cannot act on. read_file says the same in its result, so
# the raw warning is silenced; over twice the limit Pillow refuses and read_file explains why.
_warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

SOURCE_LABELS: dict[str, str] = {
    "ldstudio": "ldstudio",
    "a1111": "AUTOMATIC1111 / Forge / SD.Next / Krita",
    "comfyui": "ComfyUI",
    "invokeai": "InvokeAI",
    "fooocus": "Fooocus",
    "novelai": "NovelAI",
    "none": "none",
}

# The GenerationParams fields a reader may fill; the rest (batch, previews) are ldstudio's own.
PARAM_FIELDS = (
    "prompt",
    "negative_prompt",
    "model",
    "scheduler",
    "steps",
    "guidance_scale",
    "width",
    "height",
    "seed",
)


# For each tool, the keys of `ReadResult.extra` a reader turned into a field: such a key was
# applied when its field is in `fields` (a sampler without an ldstudio equivalent is not).
_EXTRA_FIELDS: dict[str, dict[str, str]] = {
    "a1111": {"Model": "model", "Sampler": "scheduler", "Schedule type": "scheduler"},
    "fooocus": {
        "Model": "model",
        "Sampler": "scheduler",
        "Schedule type": "scheduler",
        "prompt": "prompt",
        "negative_prompt": "negative_prompt",
        "steps": "steps",
        "guidance_scale": "guidance_scale",
        "seed": "seed",
        "base_model": "model",
        "resolution": "width",
        "sampler": "scheduler",
        "scheduler": "scheduler",
    },
    "invokeai": {
        "positive_prompt": "prompt",
        "negative_prompt": "negative_prompt",
        "steps": "steps",
        "cfg_scale": "guidance_scale",
        "seed": "seed",
        "width": "width",
        "height": "height",
        "model": "model",
        "scheduler": "scheduler",
    },
    "novelai": {
        "steps": "steps",
        "scale": "guidance_scale",
        "seed": "seed",
        "width": "width",
        "height": "height",
        "sampler": "scheduler",
        "noise_schedule": "scheduler",
    },
    "comfyui": {"sampler_name": "scheduler", "scheduler": "scheduler"},
}
# The metadata itself, not a setting: ComfyUI's graphs, the model name ldstudio writes beside
# its own parameters.
_NOT_SETTINGS = frozenset({"prompt_graph", "workflow", "model_name"})
# ComfyUI weighs `(word:1.2)` against the empty prompt, without A1111's mean restoration:
# an image read from it reuses with that emphasis, so the same text means the same there.
COMFY_EMPHASIS = "comfy"


def unapplied_values(result: ReadResult) -> list[tuple[str, str]]:
    """Every value the tool wrote that `fields` does not carry, as (name, value) text.

    Restoring parameters lists these, so nothing an image holds is dropped without a word
    (Variation seed, Clip skip, Hires settings, Denoising strength, …).
    """
    mapped = _EXTRA_FIELDS.get(result.source, {})
    inpaint_applied = result.inpaint is not None and result.source != "ldstudio"
    hires_applied = (
        result.request is not None
        and result.request.hires is not None
        and result.source != "ldstudio"
    )
    values = []
    for key, value in result.extra.items():
        if key in _NOT_SETTINGS or (key in mapped and mapped[key] in result.fields):
            continue
        if inpaint_applied and key in INPAINT_KEYS:
            continue
        if hires_applied and key in HIRES_KEYS:
            continue
        if value is None or value == "":
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        values.append((key, text if len(text) <= 80 else text[:79] + "…"))
    return values


class UnreadableImage(ValueError):
    """The file exists but is not an image Pillow can open."""


@dataclass(frozen=True)
class ReadResult:
    """What a reader found in one image.

    `source` is a key of SOURCE_LABELS ("none" when nothing was found); `fields` uses
    GenerationParams names; `extra` keeps the tool's other values (and the raw text/graph);
    `params` is set when `fields` make a valid GenerationParams (always for ldstudio images).
    `inpaint`: the img2img/inpaint settings the metadata holds (None for txt2img); `request`:
    the job, set with `params` (see the module docstring); `face`: txt2img, img2img, inpaint
    or outpaint as the metadata says ("" when it holds no parameters). `embeddings`: the
    textual-inversion embeddings A1111's `TI hashes` names, as found in the model folders.
    """

    source: str
    fields: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    params: GenerationParams | None = None
    warnings: tuple[str, ...] = ()
    # The A1111-style text when the image carried one: what export writes into JPEG/WebP EXIF.
    parameters_text: str | None = None
    # Set by read_file: the file's format ("PNG", "JPEG", "WEBP") and its size in pixels.
    image_format: str | None = None
    image_size: tuple[int, int] | None = None
    inpaint: InpaintSettings | None = None
    request: Request | None = None
    face: str = ""
    embeddings: tuple[EmbeddingUse, ...] = ()

    @property
    def found(self) -> bool:
        return self.source != "none"

    @property
    def label(self) -> str:
        return SOURCE_LABELS[self.source]

    @property
    def message(self) -> str:
        if not self.found:
            return NO_METADATA
        return f"generation metadata from {self.label}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "source": self.source,
            "source_label": self.label,
            "message": self.message,
            "fields": self.fields,
            "params": self.params.to_dict() if self.params else None,
            "face": self.face,
            "inputs": dict(self.request.inputs) if self.request else {},
            "inpaint": self.inpaint.to_dict() if self.inpaint else None,
            "extra": self.extra,
            "embeddings": [use.to_dict() for use in self.embeddings],
            "warnings": list(self.warnings),
        }


# --- sampler names -------------------------------------------------------------------------

# ComfyUI / Fooocus / NovelAI ("k_" stripped) sampler names; Karras variants are chosen by the
# scheduler argument.
_COMFY_SAMPLERS: dict[str, str] = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
    "lcm": "LCM",
}
_COMFY_KARRAS: dict[str, str] = {
    "dpmpp_2m": "DPM++ 2M Karras",
    "dpmpp_sde": "DPM++ SDE Karras",
    "dpmpp_sde_gpu": "DPM++ SDE Karras",
}
_INVOKE_SAMPLERS: dict[str, str] = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras",
    "dpmpp_sde_k": "DPM++ SDE Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
    "lcm": "LCM",
}
_OURS_LOWER = {name.lower(): name for name in SCHEDULERS}


def map_a1111_sampler(sampler: str, schedule: str = "") -> str | None:
    """ldstudio's name for an A1111 sampler (+ newer `Schedule type`), or None if we lack it."""
    name = sampler.strip().lower()
    if schedule.strip().lower() == "karras" and not name.endswith("karras"):
        name = f"{name} karras"
    return _OURS_LOWER.get(name)


def map_comfy_sampler(sampler: str, scheduler: str = "") -> str | None:
    """ldstudio's name for a ComfyUI-style sampler + scheduler pair, or None if we lack it."""
    name = sampler.strip().lower()
    if scheduler.strip().lower() == "karras" and name in _COMFY_KARRAS:
        return _COMFY_KARRAS[name]
    return _COMFY_SAMPLERS.get(name)


# --- small coercions: metadata values are whatever a tool chose to write ----------------------
# (as_int and as_float live in a1111_keys.py, which the A1111 key parsing needs first)


def _as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _json_object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def too_large(what: str, size: int) -> str:
    """The message for metadata over MAX_TEXT_BYTES."""
    return (
        f"{what}: metadata too large ({size:,} bytes; at most {MAX_TEXT_BYTES:,} are read); "
        "not read"
    )


def _oversize(value: str) -> int | None:
    """The UTF-8 size of `value` when it is over MAX_TEXT_BYTES, else None."""
    if len(value) <= MAX_TEXT_BYTES // 4:
        return None  # at most 4 bytes a character: no need to encode
    size = len(value.encode("utf-8", errors="surrogatepass"))
    return size if size > MAX_TEXT_BYTES else None


def _put(fields: dict[str, Any], name: str, value: Any) -> None:
    if value is not None and value != "":
        fields[name] = value


def _finish(
    source: str,
    fields: dict[str, Any],
    extra: dict[str, Any],
    warnings: list[str],
    parameters_text: str | None = None,
    inpaint: InpaintSettings | None = None,
    face: str = "",
    hires: HiresSettings | None = None,
    embeddings: tuple[EmbeddingUse, ...] = (),
) -> ReadResult:
    """Build the result; `params` only when the mapped fields form a valid GenerationParams.

    With `inpaint`, the request is an inpaint one without inputs (the source is not known);
    with `hires`, a txt2img request with that hires fix.
    """
    params: GenerationParams | None = None
    if isinstance(fields.get("prompt"), str):
        try:
            params = GenerationParams.from_dict(dict(fields))
        except (ValueError, TypeError) as exc:
            warnings.append(f"parameters do not form valid ldstudio settings: {exc}")
    request: Request | None = None
    if params is not None:
        request = (
            Request.txt2img(params, hires)
            if inpaint is None
            else Request(params=params, kind=KIND_INPAINT, inpaint=inpaint)
        )
    return ReadResult(
        source=source,
        fields=fields,
        extra=extra,
        params=params,
        warnings=tuple(warnings),
        parameters_text=parameters_text,
        inpaint=inpaint,
        request=request,
        face=(face or "txt2img") if params is not None else "",
        embeddings=embeddings,
    )


# --- one reader per tool ---------------------------------------------------------------------


def _read_ldstudio(text: Mapping[str, str]) -> ReadResult | None:
    raw = text.get(LDSTUDIO_KEY)
    if raw is None:
        return None
    try:
        request, missing = request_from_chunk(raw)
    except (ValueError, TypeError):
        return None  # fall through to the `parameters` text ldstudio writes beside it
    params = request.params
    fields = {name: getattr(params, name) for name in PARAM_FIELDS}
    extra: dict[str, Any] = {}
    warnings = list(missing)
    embeddings: tuple[EmbeddingUse, ...] = ()
    parameters_text = text.get(PARAMETERS_KEY)
    if isinstance(parameters_text, str):
        try:
            written = parse_a1111_parameters(parameters_text)
        except ValueError:
            written = {}
        model_name = written.get("Model")
        if model_name:
            extra["model_name"] = model_name
        # The request holds the prompt; only the text says which embedding files it used.
        embeddings = a1111_embeddings(written, warnings)
    return ReadResult(
        source="ldstudio",
        fields=fields,
        extra=extra,
        params=params,
        warnings=tuple(warnings),
        parameters_text=parameters_text if isinstance(parameters_text, str) else None,
        inpaint=request.inpaint,
        request=request,
        face=request.face,
        embeddings=embeddings,
    )


def parse_a1111_text(text: str, source: str = "a1111") -> ReadResult:
    """A ReadResult from A1111 `parameters` text (also used for EXIF UserComment and Fooocus)."""
    warnings: list[str] = []
    parsed = parse_a1111_parameters(text)
    fields: dict[str, Any] = {}
    _put(fields, "prompt", parsed.pop("prompt", ""))
    fields.setdefault("prompt", "")
    _put(fields, "negative_prompt", parsed.pop("negative_prompt", ""))
    _put(fields, "steps", _as_int(parsed.pop("Steps", None)))
    _put(fields, "guidance_scale", _as_float(parsed.pop("CFG scale", None)))
    _put(fields, "seed", _as_int(parsed.pop("Seed", None)))
    for name in ("width", "height"):
        _put(fields, name, parsed.pop(name, None))
    parsed.pop("Size", None)
    model = parsed.get("Model")
    _put(fields, "model", model if isinstance(model, str) else None)
    sampler = parsed.get("Sampler")
    if isinstance(sampler, str) and sampler:
        mapped = map_a1111_sampler(sampler, str(parsed.get("Schedule type", "")))
        if mapped is None:
            warnings.append(f"sampler {sampler!r} has no ldstudio equivalent; kept as extra")
        _put(fields, "scheduler", mapped)
    fields.update(a1111_prompt_fields(parsed, warnings))
    embeddings = a1111_embeddings(parsed, warnings)
    inpaint, face = a1111_inpaint(parsed, warnings)
    hires = a1111_hires(parsed, warnings) if inpaint is None else None
    return _finish(
        source,
        fields,
        parsed,
        warnings,
        parameters_text=text,
        inpaint=inpaint,
        face=face,
        hires=hires,
        embeddings=embeddings,
    )


def _read_a1111(text: Mapping[str, str]) -> ReadResult | None:
    raw = text.get(PARAMETERS_KEY)
    if not isinstance(raw, str) or not raw.strip():
        return None
    return parse_a1111_text(raw)


def _read_fooocus(text: Mapping[str, str]) -> ReadResult | None:
    scheme = text.get("fooocus_scheme")
    raw = text.get(PARAMETERS_KEY)
    if scheme is None or not isinstance(raw, str):
        return None
    if scheme.strip().lower() == "a1111":
        return parse_a1111_text(raw, source="fooocus")
    data = _json_object(raw)
    if data is None:
        return None
    warnings: list[str] = []
    fields: dict[str, Any] = {}
    _put(fields, "prompt", _as_text(data.get("prompt")) or "")
    fields.setdefault("prompt", "")
    _put(fields, "negative_prompt", _as_text(data.get("negative_prompt")))
    _put(fields, "steps", _as_int(data.get("steps")))
    _put(fields, "guidance_scale", _as_float(data.get("guidance_scale")))
    _put(fields, "seed", _as_int(data.get("seed")))
    _put(fields, "model", _as_text(data.get("base_model")))
    # Stripped first: `\s*\(?\s*` over a long run of spaces backtracks quadratically.
    resolution = str(data.get("resolution", "")).strip()
    size = re.fullmatch(r"\(?\s*(\d+)\s*[,x×]\s*(\d+)\s*\)?", resolution)
    if size:
        fields["width"], fields["height"] = int(size.group(1)), int(size.group(2))
    sampler = _as_text(data.get("sampler"))
    if sampler:
        mapped = map_comfy_sampler(sampler, str(data.get("scheduler", "")))
        if mapped is None:
            warnings.append(f"sampler {sampler!r} has no ldstudio equivalent; kept as extra")
        _put(fields, "scheduler", mapped)
    return _finish("fooocus", fields, data, warnings)


def _read_invokeai(text: Mapping[str, str]) -> ReadResult | None:
    data = _json_object(text.get("invokeai_metadata"))
    if data is None:
        return None
    warnings: list[str] = []
    fields: dict[str, Any] = {}
    _put(fields, "prompt", _as_text(data.get("positive_prompt")) or "")
    fields.setdefault("prompt", "")
    _put(fields, "negative_prompt", _as_text(data.get("negative_prompt")))
    _put(fields, "steps", _as_int(data.get("steps")))
    _put(fields, "guidance_scale", _as_float(data.get("cfg_scale")))
    _put(fields, "seed", _as_int(data.get("seed")))
    _put(fields, "width", _as_int(data.get("width")))
    _put(fields, "height", _as_int(data.get("height")))
    model = data.get("model")
    if isinstance(model, dict):
        model = model.get("name") or model.get("model_name")
    _put(fields, "model", _as_text(model))
    scheduler = _as_text(data.get("scheduler"))
    if scheduler:
        mapped = _INVOKE_SAMPLERS.get(scheduler.lower())
        if mapped is None:
            warnings.append(f"scheduler {scheduler!r} has no ldstudio equivalent; kept as extra")
        _put(fields, "scheduler", mapped)
    return _finish("invokeai", fields, data, warnings)


def _read_novelai(text: Mapping[str, str]) -> ReadResult | None:
    if str(text.get("Software", "")).strip().lower() != "novelai":
        return None
    comment = _json_object(text.get("Comment")) or {}
    warnings: list[str] = []
    fields: dict[str, Any] = {}
    _put(fields, "prompt", _as_text(text.get("Description")) or _as_text(comment.get("prompt")))
    fields.setdefault("prompt", "")
    _put(fields, "negative_prompt", _as_text(comment.get("uc")))
    _put(fields, "steps", _as_int(comment.get("steps")))
    _put(fields, "guidance_scale", _as_float(comment.get("scale")))
    _put(fields, "seed", _as_int(comment.get("seed")))
    _put(fields, "width", _as_int(comment.get("width")))
    _put(fields, "height", _as_int(comment.get("height")))
    _put(fields, "model", _as_text(text.get("Source")))
    sampler = _as_text(comment.get("sampler"))
    if sampler:
        name = sampler.removeprefix("k_")
        mapped = map_comfy_sampler(name, str(comment.get("noise_schedule", "")))
        if mapped is None:
            warnings.append(f"sampler {sampler!r} has no ldstudio equivalent; kept as extra")
        _put(fields, "scheduler", mapped)
    extra = {k: v for k, v in comment.items() if k not in ("prompt", "uc")}
    return _finish("novelai", fields, extra, warnings)


# ComfyUI ---------------------------------------------------------------------------------------

_COMFY_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
# Graphs are small (tens of nodes, a few links deep); the bounds only stop hostile metadata.
# Every walk is memoised by node, so each node is looked at about once per question asked.
_MAX_HOPS = 64  # links followed in a row from one input
_MAX_VISITS = 20_000  # node visits per graph, all walks together


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int)


class _ComfyGraph:
    """The executed `prompt` graph: {node_id: {"class_type", "inputs"}}; links are [id, slot].

    `cut` names the bounds a walk ran into (what was not read), for the result's warnings.
    """

    def __init__(self, graph: dict[str, Any]) -> None:
        self.nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
        self.visits = 0
        self.cut: set[str] = set()
        self._found: dict[tuple[str, tuple[str, ...]], dict[str, Any] | None] = {}
        self._texts: dict[str, str | None] = {}

    def node(self, link: Any) -> dict[str, Any] | None:
        if not _is_link(link):
            return None
        node = self.nodes.get(str(link[0]))
        return node if isinstance(node, dict) else None

    @staticmethod
    def inputs(node: dict[str, Any]) -> dict[str, Any]:
        inputs = node.get("inputs")
        return inputs if isinstance(inputs, dict) else {}

    def _visit(self, hops: int) -> bool:
        """Count one node visit; False once the walk is too deep or the budget is spent."""
        if hops > _MAX_HOPS:
            self.cut.add(f"links more than {_MAX_HOPS} deep were not followed")
            return False
        self.visits += 1
        if self.visits > _MAX_VISITS:
            self.cut.add(f"the walk stopped after {_MAX_VISITS:,} node visits")
            return False
        return True

    def value(self, value: Any, names: tuple[str, ...]) -> Any:
        """A scalar input; a link is followed to the first of `names` (or any scalar) upstream."""
        seen: set[str] = set()
        while _is_link(value):
            node_id = str(value[0])
            node = self.nodes.get(node_id)
            if node is None or node_id in seen or not self._visit(len(seen)):
                return None  # a dangling link, a cycle, or a bound
            seen.add(node_id)
            inputs = self.inputs(node)
            for name in (*names, "value", "text", "string", "seed", "noise_seed", "int", "float"):
                if name in inputs:
                    value = inputs[name]
                    break
            else:
                return None
        return value

    def find(self, link: Any, classes: tuple[str, ...], hops: int = 0) -> dict[str, Any] | None:
        """Follow `link` upstream, through the first linked input of each node, to a class."""
        node = self.node(link)
        if node is None:
            return None
        key = (str(link[0]), classes)
        if key in self._found:  # looked at before, or being looked at (a cycle): same answer
            return self._found[key]
        if not self._visit(hops):
            return None
        self._found[key] = None
        found: dict[str, Any] | None = None
        if str(node.get("class_type", "")) in classes:
            found = node
        else:
            for value in self.inputs(node).values():
                if _is_link(value):
                    found = self.find(value, classes, hops + 1)
                    if found is not None:
                        break
        self._found[key] = found
        return found

    def text(self, link: Any, hops: int = 0) -> str | None:
        """Prompt text reached from a conditioning link (through combine/control nodes)."""
        node = self.node(link)
        if node is None:
            return None
        key = str(link[0])
        if key in self._texts:
            return self._texts[key]
        if not self._visit(hops):
            return None
        self._texts[key] = None
        found = self._node_text(node, hops)
        self._texts[key] = found
        return found

    def _node_text(self, node: dict[str, Any], hops: int) -> str | None:
        inputs = self.inputs(node)
        for key in ("text", "text_g", "text_l", "prompt"):
            if key in inputs:
                value = self.value(inputs[key], ("text", "string", "value"))
                if isinstance(value, str):
                    return value
        for key in ("conditioning", "conditioning_1", "positive", "conditioning_to"):
            if _is_link(inputs.get(key)):
                return self.text(inputs[key], hops + 1)
        for value in inputs.values():
            if _is_link(value):
                found = self.text(value, hops + 1)
                if found is not None:
                    return found
        return None


def _comfy_sampler_node(graph: _ComfyGraph) -> dict[str, Any] | None:
    def order(item: tuple[str, dict[str, Any]]) -> tuple[int, str]:
        key = item[0]
        return (int(key), key) if key.isdigit() else (1 << 62, key)

    samplers = [
        (k, n) for k, n in graph.nodes.items() if str(n.get("class_type")) in _COMFY_SAMPLER_NODES
    ]
    samplers.sort(key=order)
    # A hires-fix graph has a second sampler with denoise < 1: the first full pass made the image.
    for _key, node in samplers:
        denoise = _as_float(graph.value(graph.inputs(node).get("denoise", 1.0), ("denoise",)))
        if denoise is None or denoise >= 1.0:
            return node
    return samplers[0][1] if samplers else None


def _read_comfy_prompt(data: dict[str, Any], workflow: Any) -> ReadResult | None:
    graph = _ComfyGraph(data)
    sampler_node = _comfy_sampler_node(graph)
    if sampler_node is None:
        return None
    inputs = graph.inputs(sampler_node)
    warnings: list[str] = []
    fields: dict[str, Any] = {}
    guider = graph.node(inputs.get("guider"))
    cond_source = graph.inputs(guider) if guider else inputs
    positive = cond_source.get("positive", cond_source.get("conditioning"))
    fields["prompt"] = graph.text(positive) or ""
    _put(fields, "negative_prompt", graph.text(cond_source.get("negative")))
    seed_value = inputs.get("seed", inputs.get("noise_seed"))
    noise = graph.node(inputs.get("noise"))
    if seed_value is None and noise is not None:
        seed_value = graph.inputs(noise).get("noise_seed")
    _put(fields, "seed", _as_int(graph.value(seed_value, ("seed", "noise_seed"))))
    sigmas = graph.node(inputs.get("sigmas"))
    steps_source = graph.inputs(sigmas) if sigmas else inputs
    _put(fields, "steps", _as_int(graph.value(steps_source.get("steps"), ("steps",))))
    cfg = cond_source.get("cfg", inputs.get("cfg"))
    _put(fields, "guidance_scale", _as_float(graph.value(cfg, ("cfg",))))
    sampler_select = graph.node(inputs.get("sampler"))
    sampler_name = graph.value(
        (graph.inputs(sampler_select) if sampler_select else inputs).get("sampler_name"),
        ("sampler_name",),
    )
    scheduler = graph.value(steps_source.get("scheduler", ""), ("scheduler",))
    if isinstance(sampler_name, str):
        mapped = map_comfy_sampler(sampler_name, scheduler if isinstance(scheduler, str) else "")
        if mapped is None:
            warnings.append(
                f"sampler {sampler_name!r} / {scheduler!r} has no ldstudio equivalent; "
                "kept as extra"
            )
        _put(fields, "scheduler", mapped)
    model_link = (graph.inputs(guider) if guider else inputs).get("model")
    loader = graph.find(
        model_link, ("CheckpointLoaderSimple", "CheckpointLoader", "UNETLoader", "unCLIPCheckpoint")
    )
    if loader is not None:
        loader_inputs = graph.inputs(loader)
        _put(
            fields,
            "model",
            _as_text(loader_inputs.get("ckpt_name", loader_inputs.get("unet_name"))),
        )
    latent = graph.find(
        inputs.get("latent_image"),
        ("EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo"),
    )
    if latent is not None:
        latent_inputs = graph.inputs(latent)
        _put(fields, "width", _as_int(graph.value(latent_inputs.get("width"), ("width",))))
        _put(fields, "height", _as_int(graph.value(latent_inputs.get("height"), ("height",))))
    extra: dict[str, Any] = {
        "sampler_name": sampler_name,
        "scheduler": scheduler,
        "denoise": graph.value(inputs.get("denoise"), ("denoise",)),
        "prompt_graph": data,
    }
    if workflow is not None:
        extra["workflow"] = workflow
    if graph.cut:
        warnings.append(
            f"ComfyUI graph: {'; '.join(sorted(graph.cut))}; values reached only through "
            "them are missing"
        )
    fields["emphasis"] = COMFY_EMPHASIS  # its prompt's weights mean what ComfyUI means
    return _finish("comfyui", fields, {k: v for k, v in extra.items() if v is not None}, warnings)


def _read_comfy_workflow(workflow: dict[str, Any]) -> ReadResult | None:
    """Editor-graph only images: KSampler widgets plus the prompts on its linked inputs."""
    nodes = [n for n in workflow.get("nodes", []) if isinstance(n, dict)]
    by_id = {n.get("id"): n for n in nodes}
    links: dict[Any, Any] = {}
    for link in workflow.get("links", []):
        if isinstance(link, list) and len(link) >= 3:
            links[link[0]] = link[1]  # link id -> source node id
    sampler = next((n for n in nodes if n.get("type") in ("KSampler", "KSamplerAdvanced")), None)
    if sampler is None:
        return None
    widgets = sampler.get("widgets_values")
    widgets = widgets if isinstance(widgets, list) else []
    advanced = sampler.get("type") == "KSamplerAdvanced"
    # KSampler: seed, control, steps, cfg, sampler, scheduler, denoise.
    # KSamplerAdvanced: add_noise, seed, control, steps, cfg, sampler, scheduler, start, end, ...
    offset = 1 if advanced else 0
    padded = widgets + [None] * 8

    def prompt_for(name: str) -> str | None:
        for slot in sampler.get("inputs", []) if isinstance(sampler.get("inputs"), list) else []:
            if isinstance(slot, dict) and slot.get("name") == name:
                node = by_id.get(links.get(slot.get("link")))
                if isinstance(node, dict):
                    values = node.get("widgets_values")
                    if isinstance(values, list) and values and isinstance(values[0], str):
                        return values[0]
        return None

    fields: dict[str, Any] = {"prompt": prompt_for("positive") or ""}
    _put(fields, "negative_prompt", prompt_for("negative"))
    _put(fields, "seed", _as_int(padded[offset]))
    _put(fields, "steps", _as_int(padded[offset + 2]))
    _put(fields, "guidance_scale", _as_float(padded[offset + 3]))
    warnings: list[str] = []
    sampler_name, scheduler = padded[offset + 4], padded[offset + 5]
    if isinstance(sampler_name, str):
        mapped = map_comfy_sampler(sampler_name, scheduler if isinstance(scheduler, str) else "")
        if mapped is None:
            warnings.append(f"sampler {sampler_name!r} has no ldstudio equivalent; kept as extra")
        _put(fields, "scheduler", mapped)
    fields["emphasis"] = COMFY_EMPHASIS
    return _finish(
        "comfyui",
        fields,
        {"sampler_name": sampler_name, "scheduler": scheduler, "workflow": workflow},
        warnings,
    )


def _read_comfyui(text: Mapping[str, str]) -> ReadResult | None:
    prompt = _json_object(text.get("prompt"))
    workflow = _json_object(text.get("workflow"))
    if prompt is not None:
        result = _read_comfy_prompt(prompt, workflow)
        if result is not None:
            return result
    if workflow is not None:
        return _read_comfy_workflow(workflow)
    return None


# ldstudio before A1111 (ldstudio writes both, and its JSON is exact); Fooocus before A1111
# (it reuses `parameters`); ComfyUI before A1111 (some nodes write both).
_READERS: tuple[Callable[[Mapping[str, str]], ReadResult | None], ...] = (
    _read_ldstudio,
    _read_fooocus,
    _read_invokeai,
    _read_novelai,
    _read_comfyui,
    _read_a1111,
)


def decode_user_comment(raw: Any) -> str | None:
    """EXIF UserComment: an 8-byte charset prefix, then text (A1111 writes UNICODE UTF-16BE)."""
    if isinstance(raw, str):
        return raw.rstrip("\0") or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            text = body.decode("utf-16", errors="replace")
        else:
            # piexif/A1111 write big-endian; some writers use little-endian. ASCII-range text
            # reveals the order: the zero byte of each code unit comes first in big-endian.
            even_zeros = body[0::2].count(0)
            odd_zeros = body[1::2].count(0)
            codec = "utf-16-be" if even_zeros >= odd_zeros else "utf-16-le"
            text = body[: len(body) - len(body) % 2].decode(codec, errors="replace")
    elif prefix.startswith(b"ASCII"):
        text = body.decode("ascii", errors="replace")
    else:
        text = body.decode("utf-8", errors="replace")
    return text.rstrip("\0") or None


def text_metadata(image: Image.Image) -> dict[str, str]:
    """All text an image carries: PNG text chunks, JPEG comment, EXIF UserComment (`parameters`).

    A comment or UserComment over MAX_TEXT_BYTES is left out (read_image reports it).
    """
    return _image_text(image)[0]


def _image_text(
    image: Image.Image, *, after_pixels: bool = True
) -> tuple[dict[str, str], list[str]]:
    """(text_metadata, what was left out and why). `after_pixels=False` reads only the PNG
    text chunks before the image data, which needs no decoding (Pillow's `text` decodes)."""
    text: dict[str, str] = {}
    skipped: list[str] = []
    png_text = getattr(image, "text", None) if after_pixels else None
    if isinstance(png_text, dict):
        text.update({str(k): v for k, v in png_text.items() if isinstance(v, str)})
    for key, value in image.info.items():
        if isinstance(key, str) and isinstance(value, str) and key not in text:
            text[key] = value
    if PARAMETERS_KEY not in text:
        comment = image.info.get("comment")
        if isinstance(comment, bytes):
            comment = comment.decode("utf-8", errors="replace")
        if isinstance(comment, str):
            size = _oversize(comment)
            if size is not None:
                skipped.append(too_large("JPEG comment", size))
            elif looks_like_a1111(comment):
                text[PARAMETERS_KEY] = comment
    if PARAMETERS_KEY not in text:
        try:
            user_comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
        except Exception:  # a broken EXIF block is just "no EXIF"
            user_comment = None
        decoded = decode_user_comment(user_comment)
        if decoded:
            size = _oversize(decoded)
            if size is not None:
                skipped.append(too_large("EXIF UserComment", size))
            elif looks_like_a1111(decoded):
                text[PARAMETERS_KEY] = decoded
    return text, skipped


def looks_like_a1111(text: str) -> bool:
    """Whether free text (a JPEG comment, a camera's UserComment) is A1111 `parameters`.

    A PNG chunk named `parameters` says so by its name; a comment field does not, and cameras
    and editors write their own text there ("Created with GIMP").
    """
    last = text.strip().rsplit("\n", 1)[-1]
    return "\nNegative prompt:" in f"\n{text}" or len(a1111_pairs(last, limit=3)) >= 3


def read_text(text: Mapping[str, str], *, skipped: tuple[str, ...] | list[str] = ()) -> ReadResult:
    """Run every tool's reader over an image's text metadata; the first that recognises it wins.

    A value over MAX_TEXT_BYTES is not read: a warning says so. `skipped` are earlier warnings
    of the same kind (what the caller left out), kept first in the result.
    """
    warnings: list[str] = list(skipped)
    usable: dict[str, str] = {}
    for key, value in text.items():
        size = _oversize(value) if isinstance(value, str) else None
        if size is None:
            usable[key] = value
        else:
            warnings.append(too_large(key, size))
    for reader in _READERS:
        try:
            result = reader(usable)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            # Malformed metadata must never crash a reader: report it and try the next format.
            warnings.append(f"{reader.__name__.removeprefix('_read_')}: unreadable ({exc})")
            continue
        if result is not None:
            if warnings:
                return replace(result, warnings=(*warnings, *result.warnings))
            return result
    return ReadResult(source="none", warnings=tuple(warnings))


def read_image(image: Image.Image) -> ReadResult:
    """Generation metadata of an open image."""
    text, skipped = _image_text(image)
    return read_text(text, skipped=skipped)


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def _kind(mode: int) -> str | None:
    """What a file of this mode is, when it is not a regular file (None when it is)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def not_a_regular_file(path: Path) -> str | None:
    """Why `path` cannot be read as a file (a FIFO, a socket, a device, a dangling symbolic
    link, ...), or None for a regular file (or a link to one). Never opens it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        return "no such file"
    except OSError as exc:  # a link loop, a name too long, no permission
        return f"cannot be looked at ({exc.strerror or exc})"
    kind = _kind(mode)
    return None if kind is None else f"{kind}, not a regular file"


def _bomb_message(path: Path, handle: Any, exc: Exception) -> str:
    """Pillow refused an image as a possible decompression bomb: say how big, and the limit."""
    from PIL import JpegImagePlugin, WebPImagePlugin

    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    size = None
    for factory in (
        PngImagePlugin.PngImageFile,
        JpegImagePlugin.JpegImageFile,
        WebPImagePlugin.WebPImageFile,
    ):
        try:
            handle.seek(0)
            size = factory(handle).size  # the plugins read the header; only Image.open checks
            break
        except Exception:
            continue
    what = f"{size[0]:,}×{size[1]:,} pixels" if size else str(exc)
    return (
        f"{path}: image is {what}, over the limit of {limit:,} pixels ({limit / 1e6:.0f} "
        "megapixels) ldstudio opens; a file this size is refused as a possible decompression "
        "bomb"
    )


def read_file(path: Path) -> ReadResult:
    """Generation metadata of an image file. FileNotFoundError / UnreadableImage if it is none.

    Only regular files are opened (a FIFO would block forever). An image over Pillow's
    MAX_IMAGE_PIXELS is not decoded: its metadata before the pixels is read, and a warning
    says what was not; over twice the limit it is refused (UnreadableImage).
    """
    why = not_a_regular_file(path)
    if why == "no such file":
        raise FileNotFoundError(f"{path}: no such file")
    if why is not None and why.startswith("a symbolic link"):
        raise FileNotFoundError(f"{path}: {why}")
    if why == "a folder, not a regular file":
        raise UnreadableImage(f"{path}: is a folder; give an image file (PNG, JPEG or WebP)")
    if why is not None:
        raise UnreadableImage(f"{path}: is {why}; give an image file (PNG, JPEG or WebP)")
    try:
        # O_NONBLOCK: a file swapped for a FIFO since the check above must not block the open.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise UnreadableImage(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise UnreadableImage(f"{path}: is {kind}; give an image file (PNG, JPEG or WebP)")
        return _read_open(path, handle)


def _read_open(path: Path, handle: Any) -> ReadResult:
    try:
        with Image.open(handle) as image:
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            oversized = limit is not None and width * height > limit
            if not oversized:
                image.load()  # PNG text chunks after the image data are read only by load()
            text, skipped = _image_text(image, after_pixels=not oversized)
            image_format = image.format or "?"
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(_bomb_message(path, handle, exc)) from None
    except ValueError as exc:
        if "MAX_TEXT" not in str(exc):
            raise UnreadableImage(
                f"{path}: not a readable image ({exc}); allowed: PNG, JPEG or WebP files"
            ) from None
        # Pillow refuses the whole image over a compressed text chunk it will not unpack.
        raise UnreadableImage(
            f"{path}: metadata too large: its PNG text chunks unpack to more than Pillow reads "
            f"({PngImagePlugin.MAX_TEXT_CHUNK:,} bytes a chunk, "
            f"{PngImagePlugin.MAX_TEXT_MEMORY:,} in all); the image cannot be opened"
        ) from None
    except Exception as exc:  # Pillow raises a zoo (struct.error, zlib.error, ...)
        raise UnreadableImage(
            f"{path}: not a readable image ({exc}); allowed: PNG, JPEG or WebP files"
        ) from None
    if oversized:
        skipped.insert(
            0,
            f"image is {width:,}×{height:,} pixels, over the {limit:,} pixels Pillow decodes "
            "without a decompression-bomb warning: its pixels were not decoded, so metadata "
            "stored after them (if any) was not read",
        )
    result = read_text(text, skipped=skipped)
    return replace(result, image_format=image_format, image_size=(width, height))
