"""The safetensors file format, read and checked from its header alone; any thread.

A `.safetensors` file starts with an 8-byte little-endian length and a JSON header naming every
tensor's dtype, shape and byte range, so reading a few kilobytes tells what a file of gigabytes
holds. Pickle-based files (`.ckpt`, `.pt`, `.bin`, `.pth`) are never opened beyond their size:
unpickling can run arbitrary code.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


class ModelFileError(Exception):
    """A model file or folder that cannot be read or used; the message names it and what is
    wrong."""


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


def pickle_refusal(path: Path) -> str:
    return (
        f"{path}: {path.suffix} files are Python pickles; opening one can run any code hidden "
        "in it, so ldstudio does not load them. Use a .safetensors version of the model, or "
        f"convert this file once with `ldstudio models convert {path}` (it reads tensors only, "
        "refusing anything else)."
    )


def checked_header(path: Path) -> SafetensorsHeader:
    """The parsed header of a .safetensors file ldstudio will load; ModelFileError otherwise.

    Refuses pickle formats by name before anything opens them: diffusers' own loader would
    hand any non-.safetensors file to torch.load.
    """
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelFileError(pickle_refusal(path))
    if suffix not in SAFETENSORS_SUFFIXES:
        raise ModelFileError(
            f"{path}: ldstudio loads single-file models as .safetensors; {suffix or 'no suffix'} "
            "is not supported"
        )
    return read_safetensors_header(path)
