"""Turning what the user typed (a path or a model name) into a model file; any thread."""

from __future__ import annotations

from pathlib import Path

from ldstudio.core.models.folders import ModelFolderStore
from ldstudio.core.models.safetensors import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES
from ldstudio.core.models.scan import find_model, scan_library


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
