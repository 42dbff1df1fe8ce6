"""The ldstudio/v1 wire form of engine events: JSON-safe dicts both ways; pure, any thread.

`encode_event(event)` gives `{"type": ClassName, ...fields}`; `decode_event(data)` rebuilds the
frozen event. GenerationParams travel through their own to_dict/from_dict (so a decoded one is
validated), an ImageRecord's path as its file name only (the server's folders are none of the
client's business), and a StepProgress preview as a base64 JPEG under "preview_jpeg".
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ldstudio.core.events import (
    EngineFailed,
    EngineNotice,
    EngineReady,
    Event,
    ImageRecord,
    JobCancelled,
    JobCancelling,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StageStarted,
    StepProgress,
)
from ldstudio.core.params import GenerationParams

PREVIEW_JPEG_QUALITY = 85

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        EngineReady,
        EngineFailed,
        ModelLoading,
        ModelReady,
        JobStarted,
        StepProgress,
        StageStarted,
        JobCancelling,
        JobFinished,
        JobFailed,
        JobCancelled,
        EngineNotice,
    )
}

# Fields that are not plain JSON scalars, by name (the same name means the same thing in
# every event class).
_RECORD_TUPLES = frozenset({"records", "saved"})
_PARAMS = "params"
_PREVIEW = "preview"
_PREVIEW_KEY = "preview_jpeg"


def encode_event(event: Event) -> dict[str, Any]:
    """The JSON-safe dict of `event`: {"type": ClassName, ...fields}."""
    name = type(event).__name__
    if EVENT_TYPES.get(name) is not type(event):
        raise TypeError(f"encode_event: {name} is not an ldstudio event; allowed: {_allowed()}")
    data: dict[str, Any] = {"type": name}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if f.name == _PREVIEW:
            data[_PREVIEW_KEY] = None if value is None else encode_preview(value)
        elif f.name == _PARAMS:
            data[f.name] = value.to_dict()
        elif f.name in _RECORD_TUPLES:
            data[f.name] = [encode_record(record) for record in value]
        else:
            data[f.name] = value
    return data


def decode_event(data: dict[str, Any]) -> Event:
    """The event `data` (from encode_event) describes; ValueError naming what is wrong.

    Keys a newer version may add are ignored; a missing field that has a default takes it.
    """
    if not isinstance(data, dict):
        raise ValueError(f"event: expected a JSON object, got {type(data).__name__}")
    name = data.get("type")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"event type: {name!r} is not known; allowed: {_allowed()}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = _PREVIEW_KEY if f.name == _PREVIEW else f.name
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{name}.{key}: missing; the field is required")
            continue
        value = data[key]
        where = f"{name}.{key}"
        if f.name == _PREVIEW:
            values[f.name] = None if value is None else decode_preview(value, where)
        elif f.name == _PARAMS:
            values[f.name] = _decode_params(value, where)
        elif f.name in _RECORD_TUPLES:
            if not isinstance(value, list):
                raise ValueError(f"{where}: expected a list of image records")
            values[f.name] = tuple(
                decode_record(item, f"{where}[{i}]") for i, item in enumerate(value)
            )
        else:
            values[f.name] = _check_scalar(value, str(f.type), where)
    event: Event = cls(**values)
    return event


def encode_record(record: ImageRecord) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name == "path":
            data[f.name] = record.path.name
        elif f.name == _PARAMS:
            data[f.name] = value.to_dict()
        else:
            data[f.name] = value
    return data


def decode_record(data: Any, where: str = "ImageRecord") -> ImageRecord:
    """An ImageRecord whose `path` is the bare file name the server sent."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ImageRecord):
        if f.name not in data:
            raise ValueError(f"{where}.{f.name}: missing; the field is required")
        value = data[f.name]
        if f.name == "path":
            name = _check_scalar(value, "str", f"{where}.path")
            # A file name, never a path: a server cannot point the client elsewhere.
            if not name or Path(name).name != name or name in (".", ".."):
                raise ValueError(f"{where}.path: {name!r} is not a bare file name")
            values[f.name] = Path(name)
        elif f.name == _PARAMS:
            values[f.name] = _decode_params(value, f"{where}.params")
        else:
            values[f.name] = _check_scalar(value, str(f.type), f"{where}.{f.name}")
    return ImageRecord(**values)


def encode_preview(preview: np.ndarray) -> str:
    """Base64 JPEG (quality 85) of an HxWx3 uint8 RGB array."""
    if preview.dtype != np.uint8 or preview.ndim != 3 or preview.shape[2] != 3:
        raise ValueError(
            f"preview: expected an HxWx3 uint8 array, got {preview.dtype} {preview.shape}"
        )
    buffer = io.BytesIO()
    Image.fromarray(preview, "RGB").save(buffer, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_preview(text: Any, where: str = "preview_jpeg") -> np.ndarray:
    """The HxWx3 uint8 RGB array of a base64 JPEG from encode_preview."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a base64 JPEG string, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            if image.format != "JPEG":
                raise ValueError(f"{where}: expected a JPEG image, got {image.format}")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (binascii.Error, UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{where}: not a base64 JPEG image ({exc})") from None


def _decode_params(value: Any, where: str) -> GenerationParams:
    try:
        return GenerationParams.from_dict(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _check_scalar(value: Any, annotation: str, where: str) -> Any:
    """`value` if it fits the field's annotation (as the dataclass spells it)."""
    optional = annotation.endswith(" | None")
    kind = annotation.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: null is not allowed; expected {kind}")
    # bool is an int subclass in Python but never a count or an id on the wire.
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind not in ("int", "float", "str", "bool"):
        raise TypeError(f"{where}: the wire form has no rule for a {annotation} field")
    raise ValueError(f"{where}: {value!r} is not a {kind}")


def _allowed() -> str:
    return ", ".join(EVENT_TYPES)
