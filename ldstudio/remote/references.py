"""ServerResources: how a request names its models to a server; any thread.

`to_portable` names every model, VAE, LoRA and upscaler by name + content hash. A file on
this machine is hashed as always; a name that only the server has (chosen from the server's
model list) is named as the server lists it, with the kind and hash the server gave, so the
server finds its own file and never a path from here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ldstudio.core import paths
from ldstudio.core.models.refs import ResourceRef
from ldstudio.core.models.refs import reference as local_reference
from ldstudio.core.request import (
    KIND_CHECKPOINT,
    KIND_DIFFUSERS,
    KIND_LORA,
    KIND_UPSCALER,
    KIND_VAE,
    Request,
    to_portable,
)
from ldstudio.remote.client import ServerModel, ServerModels

_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def portable_request(request: Request, models: ServerModels) -> dict[str, Any]:
    """`request` in the portable form, its models named as the server knows them.

    The bundled model (its folder here, or its name in the server's list) is sent as the
    default model (""): every ldstudio bundles the same one, and a server resolves references
    only among its scanned model folders.
    """
    model = request.params.model
    if model and _is_bundled(model, models):
        request = dataclasses.replace(request, params=request.params.replace(model=""))
    return to_portable(request, ServerResources(models))


def _is_bundled(model: str, models: ServerModels) -> bool:
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve() == paths.bundled_model_dir().resolve()
    found = ServerResources(models).find(model, KIND_DIFFUSERS)
    return (
        found is not None
        and found.name == paths.DEFAULT_MODEL_NAME
        and found.kind == KIND_DIFFUSERS
    )


class ServerResources:
    """The `Resources` of ldstudio.core.request for a job sent to a server with `models`."""

    def __init__(self, models: ServerModels) -> None:
        self.models = models

    def reference(self, path: Path, kind: str) -> ResourceRef:
        """ValueError when neither this machine nor the server has it (the request then names
        it without a hash, and the server says it does not have it)."""
        if path.exists():
            return local_reference(path, kind)
        found = self.find(str(path), kind)
        if found is None:
            raise ValueError(f"{path}: neither here nor on the server")
        return ResourceRef(kind=found.kind, name=found.name, sha256=found.sha256 or "")

    def resolve(self, ref: ResourceRef) -> Path | None:
        return None  # a request sent to a server is never read back through this

    def find(self, text: str, kind: str) -> ServerModel | None:
        """The server's entry of that kind named `text` (a model name, or a file name)."""
        candidates = self._list(kind)
        name = Path(text).name
        stem = Path(text).stem if Path(text).suffix.lower() in _WEIGHT_SUFFIXES else name
        for wanted in (text, name, stem):
            for entry in candidates:
                if entry.name == wanted:
                    return entry
        lowered = stem.lower()
        matches = [entry for entry in candidates if entry.name.lower() == lowered]
        return matches[0] if len(matches) == 1 else None

    def _list(self, kind: str) -> tuple[ServerModel, ...]:
        if kind in (KIND_CHECKPOINT, KIND_DIFFUSERS):
            return self.models.checkpoints
        return {
            KIND_VAE: self.models.vaes,
            KIND_LORA: self.models.loras,
            KIND_UPSCALER: self.models.upscalers,
        }.get(kind, ())
