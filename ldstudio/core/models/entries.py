"""One model on disk as the library lists it (`ModelEntry`), read from headers; any thread."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldstudio.core import paths
from ldstudio.core.models.detection import (
    KIND_CHECKPOINT,
    KIND_DIFFUSERS,
    KIND_UNKNOWN,
    KIND_UPSCALER,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSAFE,
    detect,
    is_inpainting_unet,
    unet_family,
)
from ldstudio.core.models.safetensors import (
    PICKLE_SUFFIXES,
    ModelFileError,
    pickle_refusal,
    read_safetensors_header,
)


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
    # A 9-channel UNet (SD 1.5 / 2 / SDXL inpainting): canvas jobs use it at high strength.
    inpainting: bool = False
    # Upscalers (ESRGAN family): the network ("Compact", "ESRGAN", "SwinIR", ...), its scale.
    architecture: str = ""
    scale: int = 0
    # Textual-inversion embeddings: the token vectors it holds.
    vectors: int = 0

    @property
    def loadable(self) -> bool:
        """A diffusion model that loads (checkpoint or diffusers folder); never an upscaler."""
        return self.status == STATUS_OK and self.kind in (KIND_CHECKPOINT, KIND_DIFFUSERS)

    @property
    def usable_upscaler(self) -> bool:
        """An upscaler file ldstudio can run here (its architecture is one it has)."""
        return self.status == STATUS_OK and self.kind == KIND_UPSCALER

    @property
    def upscaler_text(self) -> str:
        """E.g. "Compact ×4", "ESRGAN ×2"; "" for anything but an upscaler."""
        if self.kind != KIND_UPSCALER:
            return ""
        return f"{self.architecture} ×{self.scale}" if self.scale else self.architecture

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
            "inpainting": self.inpainting,
            "architecture": self.architecture,
            "scale": self.scale,
            "vectors": self.vectors,
        }


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
        inpainting=found.inpainting,
        error=f"{path}: {found.message}" if found.message else "",
        architecture=found.architecture,
        scale=found.scale,
        vectors=found.vectors,
    )


def diffusers_components(index: dict[str, Any]) -> list[str]:
    """The component folders a diffusers model_index.json names (`"unet": ["diffusers",
    "UNet2DConditionModel"]`); `[null, null]` marks a component the pipeline goes without."""
    return [
        name
        for name, spec in index.items()
        if not name.startswith("_") and isinstance(spec, list) and spec and spec[0] is not None
    ]


def inspect_diffusers_folder(path: Path, source: Path, name: str | None = None) -> ModelEntry:
    """An entry for a diffusers folder, family from unet/config.json's cross-attention width."""
    size = _folder_size(path)
    family, precision, error = "", "", ""
    inpainting = False
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
        family = unet_family(unet.get("cross_attention_dim"), unet.get("addition_embed_type"))
        inpainting = is_inpainting_unet(unet.get("in_channels"))
        weights = sorted((path / "unet").glob("*.safetensors"))
        if weights:
            precision = read_safetensors_header(weights[0]).precision
        missing = [k for k in diffusers_components(index) if not (path / k).is_dir()]
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
        inpainting=inpainting,
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


def hf_cache_name(path: Path) -> str | None:
    """ "org/name" for `.../models--org--name/snapshots/<rev>`, else None."""
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.removeprefix("models--").replace("--", "/")
    return None


def entry_name(path: Path) -> str:
    """The name `--model NAME` matches for a model at `path`, as a scan names it: a file's stem
    or a folder's name, prefixed with "org/name/" (a file) or replaced by "org/name" (a
    folder) inside a Hugging Face cache snapshot."""
    if path.is_dir():
        return hf_cache_name(path) or path.name
    hf_name = hf_cache_name(path.parent)
    return f"{hf_name}/{path.stem}" if hf_name else path.stem


def resolve_model_path(model: str) -> Path:
    """The folder or file a `model` parameter means: empty → the bundled model, else a path."""
    if not model:
        return paths.bundled_model_dir()
    return Path(model).expanduser().resolve()
