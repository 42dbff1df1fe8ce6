"""Finding models on disk and telling what they are from file headers alone; any thread.

Torch-free on purpose: the GUI scans folders off its thread (`run_in_executor`) without waiting
for torch to import. A `.safetensors` file starts with an 8-byte little-endian length and a JSON
header naming every tensor's dtype, shape and byte range, so a scan reads a few kilobytes per
file however large the file is. Pickle-based files (`.ckpt`, `.pt`, `.bin`, `.pth`) are never
opened beyond their size: unpickling can run arbitrary code.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ldstudio.core import paths

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# Bounds checked before a header is parsed, so a hostile or damaged file costs milliseconds, not
# seconds and gigabytes. Real files are far below them: an SDXL checkpoint has ~2,500 tensors
# in a ~300 KB header, a Flux checkpoint with its text encoders ~1,500; LoRAs with kohya's
# training metadata stay under a few MB. (safetensors' own limit, 100 MB, admits headers of
# 1.7 M tensors that take ldstudio 15 s and 1.4 GB to parse.)
MAX_HEADER_BYTES = 32 * 1024 * 1024
MAX_TENSORS = 50_000
# JSON values (counted as commas and brackets, strings included: an upper bound) per tensor:
# a 4-D tensor's entry has 10; the rest is room for metadata text.
_MAX_VALUES = 16 * MAX_TENSORS

# Bundled single-file configurations (resources/configs/<variant>), per architecture family.
VARIANTS: dict[str, tuple[str, ...]] = {
    "sd1": ("sd1",),
    "sd2": ("sd2", "sd2-v", "sd-turbo"),
    "sdxl": ("sdxl", "sdxl-turbo"),
}
VARIANT_LABELS: dict[str, str] = {
    "sd1": "SD 1.x",
    "sd2": "SD 2.x (epsilon, 512 px)",
    "sd2-v": "SD 2.x (v-prediction, 768 px)",
    "sd-turbo": "SD-Turbo",
    "sdxl": "SDXL base",
    "sdxl-turbo": "SDXL-Turbo",
}
SUPPORTED_TEXT = (
    "single-file checkpoints of SD 1.x, SD 2.x (epsilon and v-prediction), SDXL base, SD-Turbo "
    "and SDXL-Turbo in the original Stable Diffusion key layout, as .safetensors"
)

KIND_CHECKPOINT = "checkpoint"
KIND_DIFFUSERS = "diffusers"
KIND_VAE = "vae"
KIND_LORA = "lora"
KIND_UNKNOWN = "unknown"

STATUS_OK = "ok"
STATUS_UNSUPPORTED = "unsupported"
STATUS_UNSAFE = "unsafe"
STATUS_ERROR = "error"

_DTYPE_NAMES = {
    "F16": "fp16",
    "BF16": "bf16",
    "F32": "fp32",
    "F64": "fp64",
    "F8_E4M3": "fp8",
    "F8_E5M2": "fp8",
}
# Every dtype safetensors (0.8) knows, in bits per element (F4 and F6 are packed).
_DTYPE_BITS = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
_UNET = "model.diffusion_model."
_ATTN2_TO_K = re.compile(r"^model\.diffusion_model\..*\.attn2\.to_k\.weight$")
# ComfyUI's heuristic for SD 2.x v-prediction (comfy/supported_models.py, SD20.model_type):
# fine-tuning for v-prediction spreads this LayerNorm bias well beyond the epsilon models'.
_V_PRED_PROBE = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
_V_PRED_STD = 0.09


class ModelFileError(Exception):
    """A model file that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors dtype name, e.g. "F16"
    shape: tuple[int, ...]
    start: int  # byte offsets into the data section
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str]
    data_offset: int  # where the data section starts in the file

    @property
    def precision(self) -> str:
        """The float precision holding most bytes, e.g. "fp16"; "mixed fp16/fp32" if close."""
        totals: dict[str, int] = {}
        for info in self.tensors.values():
            name = _DTYPE_NAMES.get(info.dtype)
            if name is not None:
                totals[name] = totals.get(name, 0) + info.end - info.start
        if not totals:
            return "n/a"
        ranked = sorted(totals, key=lambda k: -totals[k])
        whole = sum(totals.values())
        # A few fp32 norms in an fp16 file are normal; call it mixed only when it really is.
        if len(ranked) > 1 and totals[ranked[1]] > 0.1 * whole:
            return f"mixed {ranked[0]}/{ranked[1]}"
        return ranked[0]


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parse and check a safetensors header; ModelFileError naming the file if it is bad.

    Checks what safetensors itself checks before it loads a tensor (so a file accepted here
    does not fail later in a loader): a bounded header that is a JSON map of tensor name →
    {dtype, shape, data_offsets}, byte ranges that match each shape and follow each other
    without gaps, and a data section that is exactly what the file holds, so a truncated
    download is caught here. Sizes are bounded before parsing (MAX_HEADER_BYTES, MAX_TENSORS).
    """

    def invalid(reason: str) -> ModelFileError:
        return ModelFileError(f"{path}: not a valid .safetensors file ({reason})")

    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise invalid(
                    f"{size} bytes; a safetensors file starts with an 8-byte header length"
                )
            (length,) = struct.unpack("<Q", head)
            if 8 + length > size:
                raise invalid(
                    f"its header claims {length} bytes, the file has {size}; the file is "
                    "corrupt, truncated, or not safetensors"
                )
            if length > MAX_HEADER_BYTES:
                raise invalid(
                    f"its header is {length} bytes; ldstudio reads headers of up to "
                    f"{MAX_HEADER_BYTES // (1024 * 1024)} MB, real model files have well under 1 MB"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    # Linear byte counts, before json builds a Python object per value: a header of a million
    # tiny entries is refused here in milliseconds. Counts include text inside strings, so
    # they are upper bounds; the exact count is checked again after parsing.
    claimed = raw.count(b'"data_offsets"')
    if claimed > MAX_TENSORS:
        raise invalid(_too_many_tensors(claimed))
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if values > _MAX_VALUES:
        raise invalid(
            f"its header holds about {values} JSON values; a header of at most {MAX_TENSORS} "
            f"tensors holds fewer than {_MAX_VALUES}"
        )
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise invalid(
            "the header is not UTF-8 text; the file is corrupt or not safetensors"
        ) from None
    except RecursionError:
        raise invalid(
            "the header is nested too deeply; a safetensors header is a map of tensors, "
            "3 levels deep"
        ) from None
    except ValueError:  # JSONDecodeError, or an integer of thousands of digits
        raise invalid("the header is not JSON; the file is corrupt or not safetensors") from None
    if not isinstance(header, dict):
        raise invalid(f"the header is a JSON {_json_type(header)}, not a map of tensors")
    if b"\\ud" in raw.lower():
        # An escaped surrogate: fine in pairs (emoji in metadata), refused by safetensors alone.
        try:
            json.dumps(header, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise invalid("the header holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
        except RecursionError:
            raise invalid("the header is nested too deeply") from None
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise invalid(f"__metadata__ is a JSON {_json_type(metadata)}; expected a map of text")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise invalid(
                f"__metadata__ {key!r} is a JSON {_json_type(value)}; metadata values must be text"
            )
    if len(header) > MAX_TENSORS:
        raise invalid(_too_many_tensors(len(header)))
    tensors = {name: _tensor_info(name, spec, invalid) for name, spec in header.items()}
    data_size = size - 8 - length
    data_end = 0
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if info.start != data_end:
            raise invalid(
                f"tensor {name!r} starts at byte {info.start} of the data, but the tensors "
                f"before it end at {data_end}; tensors must follow each other without gaps "
                "or overlaps"
            )
        data_end = info.end
    if data_end > data_size:
        raise ModelFileError(
            f"{path}: the file is truncated: its header describes {data_end} bytes of tensor "
            f"data but only {data_size} are present (an interrupted download?). Download it again."
        )
    if data_end < data_size:
        raise invalid(
            f"{data_size - data_end} bytes after the last tensor's data, which the header does "
            "not describe; the file is corrupt or was written by a broken tool"
        )
    return SafetensorsHeader(path=path, tensors=tensors, metadata=metadata, data_offset=8 + length)


def _too_many_tensors(count: int) -> str:
    return (
        f"its header describes {count} tensors; ldstudio reads files of up to {MAX_TENSORS} "
        "(an SDXL checkpoint has about 2,500)"
    )


def _json_type(value: object) -> str:
    names = {dict: "map", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _sizes(values: list[Any]) -> bool:
    """JSON numbers safetensors reads as sizes: whole numbers that fit 64 bits (no bools).

    Type, min and max run in C: thousands of entries per file are checked per scan."""
    return set(map(type, values)) <= {int} and (
        not values or (min(values) >= 0 and max(values) < 1 << 64)
    )


def _tensor_info(name: str, spec: Any, invalid: Callable[[str], ModelFileError]) -> TensorInfo:
    """One header entry, checked as safetensors checks it (the message: `_entry_fault`)."""
    try:
        dtype, shape, (start, end) = spec["dtype"], spec["shape"], spec["data_offsets"]
        bits = _DTYPE_BITS[dtype]
        sizes = [*shape, start, end]  # shape is checked to be a list just below
    except (TypeError, KeyError, ValueError):
        raise invalid(_entry_fault(name, spec)) from None
    if type(dtype) is not str or type(shape) is not list or not _sizes(sizes) or start > end:
        raise invalid(_entry_fault(name, spec))
    limit = (end - start) * 8
    if len(shape) <= 16:
        total = bits * math.prod(shape)
    elif 0 in shape:
        total = 0
    else:
        # Stopped as soon as it exceeds the byte range: a shape of thousands of huge numbers
        # must not turn into one enormous integer.
        total = bits
        for n in shape:
            total *= n
            if total > limit:
                break
    if total != limit:
        raise invalid(
            f"tensor {name!r} of dtype {dtype} and shape {_short(shape)} does not take the "
            f"{end - start} bytes its data_offsets [{start}, {end}] give it"
        )
    return TensorInfo(dtype, tuple(shape), start, end)


def _entry_fault(name: str, spec: object) -> str:
    """What is wrong with a header entry that failed `_tensor_info`'s checks."""
    if not isinstance(spec, dict):
        return (
            f"tensor {name!r} is a JSON {_json_type(spec)}; expected a map with dtype, shape "
            "and data_offsets"
        )
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPE_BITS:
        return f"tensor {name!r} has dtype {_short(dtype)}; allowed: {', '.join(_DTYPE_BITS)}"
    if not isinstance(shape, list) or not _sizes(shape):
        return f"tensor {name!r} has shape {_short(shape)}; expected a list of whole numbers"
    return (
        f"tensor {name!r} has data_offsets {_short(offsets)}; expected [start, end] byte "
        "offsets with start <= end"
    )


def _short(value: object) -> str:
    """A JSON value for a message: short, and without recursing into nested values."""
    if value is None:
        return "missing"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, list):
        if not all(isinstance(v, int | float) for v in value[:7]):
            return f"a list of {len(value)} values"
        items = [_short(v) for v in value[:6]] + (["..."] if len(value) > 6 else [])
        return "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        return "a map"
    text = json.dumps(value)  # a number; thousands of digits are possible
    return text if len(text) <= 24 else text[:21] + "..."


def read_small_tensor(header: SafetensorsHeader, name: str) -> np.ndarray:
    """One tensor as float32 numpy, read by seeking; for probes of a few kilobytes only."""
    info = header.tensors[name]
    with header.path.open("rb") as handle:
        handle.seek(header.data_offset + info.start)
        raw = handle.read(info.end - info.start)
    if info.dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if info.dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").copy()
    if info.dtype == "BF16":
        # bfloat16 is the top half of a float32.
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    raise ModelFileError(f"{header.path}: tensor {name} has dtype {info.dtype}; expected a float")


@dataclass(frozen=True)
class Detection:
    """What a file is, found from its key names and tensor shapes, never its file name."""

    kind: str
    family: str = ""  # "sd1" | "sd2" | "sdxl" for checkpoints and LoRAs that say so
    variant: str = ""  # the bundled config a checkpoint loads with (see VARIANTS)
    status: str = STATUS_OK
    message: str = ""  # what was found, for unsupported files


def detect(header: SafetensorsHeader) -> Detection:
    """Classify a safetensors file: checkpoint (with family and variant), VAE, LoRA, other."""
    keys = header.tensors
    if any(k.startswith(_UNET) for k in keys):
        return _detect_checkpoint(header)
    if _is_lora(keys):
        return Detection(kind=KIND_LORA, family=_lora_family(header))
    if _is_vae(keys):
        return Detection(kind=KIND_VAE)
    found = _describe_other(keys)
    return Detection(
        kind=KIND_UNKNOWN,
        status=STATUS_UNSUPPORTED,
        message=f"found {found}; supported: {SUPPORTED_TEXT}, standalone VAEs and LoRAs",
    )


def _context_dim(header: SafetensorsHeader) -> int | None:
    for name, info in header.tensors.items():
        if _ATTN2_TO_K.match(name) and len(info.shape) == 2:
            return info.shape[1]
    return None


def _detect_checkpoint(header: SafetensorsHeader) -> Detection:
    keys = header.tensors
    context = _context_dim(header)
    in_weight = keys.get(_UNET + "input_blocks.0.0.weight")
    in_channels = in_weight.shape[1] if in_weight is not None and len(in_weight.shape) == 4 else 0
    has_vae = any(k.startswith("first_stage_model.") for k in keys)
    sd1_text = any(k.startswith("cond_stage_model.transformer.") for k in keys)
    sd2_text = any(k.startswith("cond_stage_model.model.") for k in keys)
    xl_text = any(k.startswith("conditioner.embedders.1.model.") for k in keys)
    xl_refiner = not xl_text and any(k.startswith("conditioner.embedders.0.model.") for k in keys)
    label = _UNET + "label_emb.0.0.weight" in keys

    def unsupported(found: str) -> Detection:
        return Detection(
            kind=KIND_CHECKPOINT,
            status=STATUS_UNSUPPORTED,
            message=f"found {found}; supported: {SUPPORTED_TEXT}",
        )

    if any(k.startswith(_UNET + "joint_blocks.") for k in keys):
        return unsupported("a Stable Diffusion 3 (MMDiT) checkpoint")
    if any(k.startswith(_UNET + "double_blocks.") for k in keys):
        return unsupported("a Flux checkpoint")
    if context is None:
        return unsupported("a UNet without cross-attention layers (not an SD 1/2/XL checkpoint)")
    if in_channels not in (0, 4):
        return unsupported(
            f"a UNet with {in_channels} input channels (an inpainting or instruct-pix2pix "
            f"model, context width {context})"
        )
    if xl_refiner:
        return unsupported("an SDXL refiner checkpoint (refiners need a base model's latents)")
    if context == 2048 and label and xl_text:
        family = "sdxl"
    elif context == 768 and sd1_text and not label:
        family = "sd1"
    elif context == 1024 and sd2_text and not label:
        family = "sd2"
    else:
        parts = [f"cross-attention width {context}"]
        parts.append(
            "a CLIP text encoder" if sd1_text or sd2_text or xl_text else "no text encoder"
        )
        return unsupported("a UNet with " + ", ".join(parts))
    if not has_vae:
        return unsupported(
            f"a {VARIANT_LABELS[family]} checkpoint without its VAE (first_stage_model.*); "
            "single-file checkpoints must hold UNet, VAE and text encoder(s)"
        )
    return Detection(kind=KIND_CHECKPOINT, family=family, variant=_variant(header, family))


def _variant(header: SafetensorsHeader, family: str) -> str:
    """Which bundled config fits: from the file's own metadata, else the v-prediction probe.

    Turbo models have exactly the weights layout of their base model; only metadata can tell
    them apart, otherwise the user picks the variant (`ldstudio models set-variant`).
    """
    meta = {k.lower(): v.lower() for k, v in header.metadata.items()}
    described = " ".join(
        meta.get(k, "")
        for k in ("modelspec.architecture", "modelspec.title", "modelspec.implementation")
    )
    if family == "sdxl":
        return "sdxl-turbo" if "turbo" in described else "sdxl"
    if family != "sd2":
        return family
    if "turbo" in described:
        return "sd-turbo"
    prediction = meta.get("modelspec.prediction_type", meta.get("prediction_type", ""))
    if prediction.startswith("v"):
        return "sd2-v"
    if prediction.startswith("eps"):
        return "sd2"
    if "v_pred" in header.tensors:
        return "sd2-v"
    if _V_PRED_PROBE in header.tensors:
        try:
            probe = read_small_tensor(header, _V_PRED_PROBE)
        except (OSError, ModelFileError):
            return "sd2"
        if float(probe.std()) > _V_PRED_STD:
            return "sd2-v"
    return "sd2"


def _is_lora(keys: Mapping[str, Any]) -> bool:
    return any(
        k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_"))
        or ".lora_down." in k
        or ".lora_A." in k
        or ".lora.down." in k
        for k in keys
    )


def _lora_family(header: SafetensorsHeader) -> str:
    """SDXL LoRAs carry two text encoders (te1/te2) or 2048-wide attn2 inputs."""
    keys = header.tensors
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for k in keys):
        return "sdxl"
    for name, info in keys.items():
        if "attn2" in name and "to_k" in name and ("lora_down" in name or "lora_A" in name):
            width = info.shape[1] if len(info.shape) >= 2 else 0
            return {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(width, "")
    return ""


def _is_vae(keys: Mapping[str, Any]) -> bool:
    plain = {k.removeprefix("first_stage_model.") for k in keys}
    return (
        "encoder.conv_in.weight" in plain
        and "decoder.conv_out.weight" in plain
        and not any(k.startswith(("model.", "cond_stage_model.", "conditioner.")) for k in keys)
    )


def _describe_other(keys: Mapping[str, Any]) -> str:
    if any(k.startswith(("input_blocks.", "down_blocks.")) for k in keys):
        return "a UNet on its own (no VAE or text encoder)"
    if any(k.startswith("text_model.") for k in keys):
        return "a text encoder on its own"
    if any(k.startswith(("double_blocks.", "joint_blocks.", "transformer_blocks.")) for k in keys):
        return "a transformer (DiT/Flux/SD3) model"
    if len(keys) <= 4 and any(
        k in ("emb_params", "string_to_param", "clip_l", "clip_g") for k in keys
    ):
        return "a textual-inversion embedding"
    return f"{len(keys)} tensors in an unrecognised layout"


# -- entries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """One model found on disk, as the model manager and `ldstudio models list` show it."""

    path: Path
    name: str  # what `--model NAME` matches: file stem, folder name, or org/name for the HF cache
    kind: str
    source: Path  # the folder that was scanned
    size_bytes: int
    family: str = ""
    variant: str = ""
    precision: str = ""
    status: str = STATUS_OK
    error: str = ""

    @property
    def loadable(self) -> bool:
        return self.status == STATUS_OK and self.kind in (KIND_CHECKPOINT, KIND_DIFFUSERS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "family": self.family,
            "variant": self.variant,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "source": str(self.source),
            "status": self.status,
            "error": self.error,
        }


def pickle_refusal(path: Path) -> str:
    return (
        f"{path}: {path.suffix} files are Python pickles; opening one can run any code hidden "
        "in it, so ldstudio does not load them. Use a .safetensors version of the model, or "
        f"convert this file once with `ldstudio models convert {path}` (it reads tensors only, "
        "refusing anything else)."
    )


def inspect_file(path: Path, source: Path | None = None) -> ModelEntry:
    """An entry for one model file; never raises for a bad file (status/error say why)."""
    source = source if source is not None else path.parent
    try:
        size = path.stat().st_size
    except OSError as exc:
        return ModelEntry(
            path, path.stem, KIND_UNKNOWN, source, 0, status=STATUS_ERROR, error=f"{path}: {exc}"
        )
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return ModelEntry(
            path,
            path.stem,
            KIND_UNKNOWN,
            source,
            size,
            status=STATUS_UNSAFE,
            error=pickle_refusal(path),
        )
    try:
        header = read_safetensors_header(path)
    except ModelFileError as exc:
        return ModelEntry(
            path, path.stem, KIND_UNKNOWN, source, size, status=STATUS_ERROR, error=str(exc)
        )
    found = detect(header)
    return ModelEntry(
        path=path,
        name=path.stem,
        kind=found.kind,
        source=source,
        size_bytes=size,
        family=found.family,
        variant=found.variant,
        precision=header.precision,
        status=found.status,
        error=f"{path}: {found.message}" if found.message else "",
    )


def inspect_diffusers_folder(path: Path, source: Path, name: str | None = None) -> ModelEntry:
    """An entry for a diffusers folder, family from unet/config.json's cross-attention width."""
    size = _folder_size(path)
    family, precision, error = "", "", ""
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
        context = unet.get("cross_attention_dim")
        if isinstance(context, list):
            context = context[0] if context else None
        if unet.get("addition_embed_type") == "text_time":
            family = "sdxl" if context == 2048 else "sdxl-refiner"
        else:
            width = context if isinstance(context, int) else 0
            family = {768: "sd1", 1024: "sd2"}.get(width, "custom")
        weights = sorted((path / "unet").glob("*.safetensors"))
        if weights:
            precision = read_safetensors_header(weights[0]).precision
        missing = [
            k
            for k, v in index.items()
            if not k.startswith("_")
            and isinstance(v, list)
            and v
            and v[0]
            and not (path / k).is_dir()
        ]
        if missing:
            error = f"{path}: incomplete diffusers folder, missing {', '.join(missing)}"
    except RecursionError:
        error = f"{path}: unreadable diffusers folder (a JSON file in it is nested too deeply)"
    except (OSError, ValueError, AttributeError, ModelFileError) as exc:
        error = f"{path}: unreadable diffusers folder ({exc})"
    return ModelEntry(
        path=path,
        name=name or path.name,
        kind=KIND_DIFFUSERS,
        source=source,
        size_bytes=size,
        family=family,
        precision=precision,
        status=STATUS_ERROR if error else STATUS_OK,
        error=error,
    )


def _folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                # HF cache snapshots hold symlinks into blobs/: count the blob once per link.
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total


def _hf_cache_name(path: Path) -> str | None:
    """ "org/name" for `.../models--org--name/snapshots/<rev>`, else None."""
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.removeprefix("models--").replace("--", "/")
    return None


def scan_folder(root: Path, max_depth: int = 6) -> Iterator[ModelEntry]:
    """Every model under `root`, in place: single files by content, diffusers folders by index.

    Works for A1111 (`models/Stable-diffusion`, `models/VAE`, `models/Lora`), ComfyUI
    (`models/checkpoints`, `models/vae`, `models/loras`), the Hugging Face cache and plain
    folders alike, because files are classified from their headers, not their folder names.
    """
    root = root.expanduser()
    if not root.is_dir():
        yield ModelEntry(
            root,
            root.name,
            KIND_UNKNOWN,
            root,
            0,
            status=STATUS_ERROR,
            error=f"{root}: model folder does not exist or is not a folder",
        )
        return
    # Links are followed (model folders are often linked in from other disks), each real
    # folder once: a link back to a folder already seen (to itself, to a parent) would
    # otherwise repeat the walk for every combination of links up to max_depth.
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        try:
            identity = here.stat()
        except OSError:
            dirs[:] = []
            continue
        if (identity.st_dev, identity.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((identity.st_dev, identity.st_ino))
        depth = len(here.relative_to(root).parts)
        hf_name = _hf_cache_name(here)
        if (here / "model_index.json").is_file():
            # Its subfolders are the pipeline's components, not models of their own. Files
            # beside model_index.json are: many repos (SD 1.5, SDXL base) ship the single-file
            # checkpoint next to the diffusers layout.
            dirs[:] = []
            yield inspect_diffusers_folder(here, root, hf_name)
        else:
            # .cache/ and blobs/ hold partial downloads and the HF cache's content-addressed
            # copies.
            dirs[:] = sorted(
                d for d in dirs if not d.startswith(".") and d != "blobs" and depth < max_depth
            )
        for name in sorted(files):
            if name.lower().endswith(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES):
                entry = inspect_file(here / name, root)
                if hf_name:
                    entry = replace(entry, name=f"{hf_name}/{entry.path.stem}")
                yield entry


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


# -- the user's model folders -----------------------------------------------------------------


@dataclass
class ModelFolderStore:
    """The model folders the user added, the default model and per-file variant choices.

    Kept in `home_dir()/models.json`; written atomically so a crash never leaves half a file.
    """

    folders: list[str] = field(default_factory=list)
    default: str = ""
    variants: dict[str, str] = field(default_factory=dict)  # file path → bundled config name

    @staticmethod
    def file() -> Path:
        return paths.home_dir() / "models.json"

    @classmethod
    def load(cls) -> ModelFolderStore:
        path = cls.file()
        if not os.path.lexists(path):
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:  # a folder, a dangling link, no permission
            raise ValueError(
                f"{path}: cannot be read ({exc.strerror or exc}); fix or delete it"
            ) from None
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise ValueError(f"{path}: not valid JSON ({reason}); fix or delete it") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        folders, variants = data.get("folders", []), data.get("variants", {})
        if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
            raise ValueError(f'{path}: "folders" must be a list of folder paths; fix or delete it')
        if not isinstance(variants, dict) or not all(isinstance(v, str) for v in variants.values()):
            raise ValueError(
                f'{path}: "variants" must map file paths to config names; fix or delete it'
            )
        return cls(
            folders=folders,
            default=str(data.get("default", "")),
            variants=variants,
        )

    def save(self) -> None:
        path = self.file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        payload = {"folders": self.folders, "default": self.default, "variants": self.variants}
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    def add_folder(self, folder: Path) -> Path:
        resolved = folder.expanduser().resolve()
        if not resolved.is_dir():
            raise ValueError(f"model folder: {folder} does not exist or is not a folder")
        if str(resolved) not in self.folders:
            self.folders.append(str(resolved))
        return resolved

    def remove_folder(self, folder: Path) -> None:
        resolved = str(folder.expanduser().resolve())
        if resolved not in self.folders:
            raise ValueError(
                f"model folder: {folder} is not in the list ({', '.join(self.folders) or 'empty'})"
            )
        self.folders.remove(resolved)

    def set_variant(self, file: Path, variant: str, family: str) -> None:
        allowed = VARIANTS.get(family, ())
        if variant not in allowed:
            raise ValueError(
                f"variant: {variant!r} does not fit a {family or 'unknown'} model; allowed: "
                f"{', '.join(allowed) or 'none (not a single-file checkpoint)'}"
            )
        self.variants[str(file.expanduser().resolve())] = variant

    def variant_for(self, file: Path) -> str | None:
        return self.variants.get(str(file.expanduser().resolve()))


def library_roots(
    store: ModelFolderStore, extra: list[Path] | None = None, include_hf_cache: bool = True
) -> list[Path]:
    """The folders a library scan walks: the user's, `extra`, then the HF cache if present."""
    roots = [Path(f) for f in store.folders] + list(extra or [])
    if include_hf_cache and hf_cache_dir().is_dir():
        roots.append(hf_cache_dir())
    return roots


def iter_library(store: ModelFolderStore, roots: list[Path]) -> Iterator[ModelEntry]:
    """Every model under `roots`, each file once (folders may overlap), chosen variants applied."""
    seen: set[Path] = set()
    for root in roots:
        for entry in scan_folder(root):
            key = entry.path.resolve()
            if key in seen:
                continue
            seen.add(key)
            chosen = store.variant_for(entry.path) if entry.kind == KIND_CHECKPOINT else None
            if chosen and chosen in VARIANTS.get(entry.family, ()):
                entry = replace(entry, variant=chosen)
            yield entry


def scan_library(
    store: ModelFolderStore, extra: list[Path] | None = None, include_hf_cache: bool = True
) -> list[ModelEntry]:
    """Every model in the user's folders, `extra` folders and the HF cache, variants applied."""
    return list(iter_library(store, library_roots(store, extra, include_hf_cache)))


def find_model(name: str, entries: list[ModelEntry], kinds: tuple[str, ...]) -> ModelEntry:
    """The one entry `name` means (exact name, then case-insensitive); ValueError otherwise."""
    candidates = [e for e in entries if e.kind in kinds]
    for match in (
        [e for e in candidates if e.name == name],
        [e for e in candidates if e.name.lower() == name.lower()],
        [e for e in candidates if e.name.lower().split("/")[-1] == name.lower()],
    ):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            places = "; ".join(str(e.path) for e in match)
            raise ValueError(
                f"{name!r} matches {len(match)} models ({places}); give a path instead"
            )
    # Found, but not as a usable model: say what it is rather than that it does not exist.
    # (Any candidate of this name returned above: what is left is of another kind.)
    for entry in entries:
        if name.lower() in (entry.name.lower(), entry.name.lower().split("/")[-1]):
            why = entry.error or f"it is a {entry.kind}, not one of: {', '.join(kinds)}"
            raise ValueError(f"{name!r} is {entry.path}, which cannot be used here: {why}")
    known = ", ".join(sorted(e.name for e in candidates)) or "none found"
    raise ValueError(
        f"{name!r} is neither an existing path nor a known model name; known: {known}. "
        "Add folders with `ldstudio models add-folder PATH`."
    )


# -- LoRA references in prompts, and the hashes A1111 records ---------------------------------

# A1111's extra-network syntax: <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5> (text
# encoder:UNet strengths; ldstudio applies the first to both). `lyco` is the LyCORIS alias.
_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>", re.IGNORECASE)


def split_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """(prompt without `<lora:...>` tags, [(name, strength), ...]); ValueError on a bad strength."""
    found: list[tuple[str, float]] = []
    for match in _LORA_TAG.finditer(prompt):
        name, weight = match.group(1).strip(), (match.group(2) or "1").strip()
        try:
            strength = float(weight)
        except ValueError:
            raise ValueError(
                f"prompt: {match.group(0)} has strength {weight!r}; allowed: a number, "
                "e.g. <lora:name:0.8>"
            ) from None
        found.append((name, strength))
    text = _LORA_TAG.sub("", prompt)
    # Tags are usually written as ", <lora:x:1>": drop the separators they leave behind. A match
    # starts only where a whitespace run starts, so a long run is scanned once, not once per space.
    text = re.sub(r"(?<!\s)\s*,(?:\s*,)+", ",", text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip().strip(",").strip()
    return text, found


def _sha256(path: Path, skip: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(skip)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_HASHES: dict[tuple[str, int, int, str], str] = {}


def _cached_hash(path: Path, kind: str) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, kind)
    if key not in _HASHES:
        if kind == "addnet":
            # kohya's "addnet" hash: the tensor data only, so editing metadata keeps it.
            with path.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
            _HASHES[key] = _sha256(path, 8 + length)[:12]
        else:
            _HASHES[key] = _sha256(path, 0)[:10]
    return _HASHES[key]


def lora_hash(path: Path) -> str:
    """The short hash A1111 writes in `Lora hashes` (sha256 of the tensor data, 12 hex)."""
    return _cached_hash(path, "addnet")


def file_hash(path: Path) -> str:
    """The short hash A1111 writes for models and VAEs (sha256 of the file, 10 hex)."""
    return _cached_hash(path, "file")


def resolve_reference(text: str, kinds: tuple[str, ...], what: str) -> Path:
    """A path as given if it exists, else the model of one of `kinds` named `text`.

    Names are looked up in the user's model folders and the Hugging Face cache; ValueError
    (prefixed with `what`, e.g. "--model") when neither fits.
    """
    path = Path(text).expanduser()
    if path.exists():
        return path.resolve()
    looks_like_path = (
        path.is_absolute()
        or text.startswith((".", "~"))
        or path.suffix.lower() in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
    )
    try:
        entries = scan_library(ModelFolderStore.load())
        return find_model(text, entries, kinds).path.resolve()
    except ValueError as exc:
        if looks_like_path:
            raise ValueError(f"{what}: model not found: {path.resolve()} does not exist") from None
        raise ValueError(f"{what}: {exc}") from None


def parse_lora_argument(text: str) -> tuple[str, float]:
    """`PATH_OR_NAME[:STRENGTH]` → (text, strength); a path may itself contain colons."""
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return text, 1.0
