"""The checks a request's models pass before any weights load, from headers and JSON; any thread.

Torch-free, so a damaged or unsupported file is refused in milliseconds, before the seconds
torch takes to import and the minutes a large model takes to load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ldstudio.core.models.detection import (
    KIND_CHECKPOINT,
    STATUS_OK,
    SUPPORTED_TEXT,
    VARIANTS,
    detect,
)
from ldstudio.core.models.entries import diffusers_components
from ldstudio.core.models.folders import ModelFolderStore
from ldstudio.core.models.safetensors import (
    ModelFileError,
    checked_header,
    read_safetensors_header,
)


def checkpoint_variant(path: Path, store: ModelFolderStore | None = None) -> tuple[str, str]:
    """(family, variant) of a single-file checkpoint: the user's choice, else detection.

    ModelFileError naming the file when it is not a loadable checkpoint; ValueError when
    models.json (read for the user's choice unless `store` is given) is damaged.
    """
    found = detect(checked_header(path))
    if found.kind != KIND_CHECKPOINT or found.status != STATUS_OK:
        what = found.message or f"found a {found.kind} file; supported: {SUPPORTED_TEXT}"
        raise ModelFileError(f"{path}: {what}")
    chosen = (store or ModelFolderStore.load()).variant_for(path)
    if chosen and chosen in VARIANTS[found.family]:
        return found.family, chosen
    return found.family, found.variant


def check_diffusers_folder(path: Path) -> dict[str, Any]:
    """model_index.json of a diffusers folder whose every component folder exists and whose
    every weights file has a sound header; ModelFileError naming the folder otherwise."""
    if not path.exists():
        raise ModelFileError(f"model not found: {path} does not exist")
    if not path.is_dir():
        raise ModelFileError(
            f"model {path} is a file; expected a diffusers folder (a folder with "
            "model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)"
        )
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ModelFileError(
            f"model {path} is not a diffusers folder: model_index.json is missing "
            "(expected model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)"
        )
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ModelFileError(
            f"model {path}: model_index.json is not valid JSON ({reason})"
        ) from None
    except OSError as exc:
        raise ModelFileError(f"model {path}: model_index.json cannot be read ({exc})") from None
    if not isinstance(index, dict):
        raise ModelFileError(f"model {path}: model_index.json is not a JSON object")
    components = diffusers_components(index)
    missing = [name for name in components if not (path / name).is_dir()]
    if missing:
        raise ModelFileError(f"model {path} is incomplete: missing folder(s) {', '.join(missing)}")
    # The checks a single file gets, for every weights file diffusers may open: safetensors
    # would otherwise parse a damaged header itself (100 MB of it, seconds and gigabytes).
    for name in components:
        for weights in sorted((path / name).glob("*.safetensors")):
            try:
                read_safetensors_header(weights)
            except ModelFileError as exc:
                raise ModelFileError(f"model {path}: {exc}") from None
    return index


def check_model(path: Path, store: ModelFolderStore | None = None) -> str:
    """Check a model path before loading: "" for a diffusers folder, the variant for a file.

    Reads only headers and JSON; ModelFileError naming the path and what is wrong (ValueError
    for a damaged models.json, see `checkpoint_variant`).
    """
    if path.is_file():
        return checkpoint_variant(path, store)[1]
    check_diffusers_folder(path)
    return ""
