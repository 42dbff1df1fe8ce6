"""The server's models as the network names them; any thread (reads the kept model scan).

A request over the network names models, never paths: a checkpoint, VAE, LoRA or upscaler is
one of the models scanned in the server's model folders (the shared `ModelRegistry`) or a
bundled one. `check_request` refuses anything else — a path in a field, a path in a
`<lora:...>` tag, a reference that resolved to a file outside the model folders — with a
message naming the field and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ldstudio.core import paths
from ldstudio.core.models import (
    KIND_CHECKPOINT,
    KIND_DIFFUSERS,
    KIND_LORA,
    KIND_UPSCALER,
    KIND_VAE,
    STATUS_OK,
    ModelRegistry,
    hash_store,
    inspect_diffusers_folder,
    split_lora_tags,
)
from ldstudio.core.models.upscalers import bundled_upscaler_path
from ldstudio.core.request import Request
from ldstudio.core.upscale import BUNDLED_UPSCALERS, RESAMPLERS

SHOWN = 12  # names listed in a refusal before "..."


@dataclass(frozen=True)
class Model:
    """One model the server offers: its name on the network and its file here."""

    name: str
    kind: str
    family: str
    path: Path

    @property
    def filename(self) -> str:
        return self.path.name

    def sha256(self, compute: bool = False) -> str | None:
        """The content hash: the cached one, or (`compute`) hashed now (slow for big files)."""
        store = hash_store()
        try:
            cached = store.cached_content_sha256(self.path)
            return cached if cached or not compute else store.content_sha256(self.path)
        except (OSError, ValueError):
            return None


class ModelCatalogue:
    """The models in the scanned model folders plus the bundled ones, by kind."""

    def __init__(self, registry: ModelRegistry | None = None) -> None:
        self._registry = registry or ModelRegistry.shared()
        self._bundled: Model | None = None

    def bundled(self) -> Model:
        if self._bundled is None:  # part of the installation: read once
            folder = paths.bundled_model_dir()
            family = inspect_diffusers_folder(folder, folder).family
            self._bundled = Model(paths.DEFAULT_MODEL_NAME, KIND_DIFFUSERS, family, folder)
        return self._bundled

    def _scanned(self, kinds: tuple[str, ...]) -> list[Model]:
        return [
            Model(entry.name, entry.kind, entry.family, entry.path)
            for entry in self._registry.entries()
            if entry.kind in kinds and entry.status == STATUS_OK
        ]

    def checkpoints(self) -> list[Model]:
        return [self.bundled(), *self._scanned((KIND_CHECKPOINT, KIND_DIFFUSERS))]

    def vaes(self) -> list[Model]:
        return self._scanned((KIND_VAE,))

    def loras(self) -> list[Model]:
        return self._scanned((KIND_LORA,))

    def upscalers(self) -> list[Model]:
        bundled = [
            Model(name, KIND_UPSCALER, "", bundled_upscaler_path(scale))
            for scale, name in BUNDLED_UPSCALERS.items()
            if bundled_upscaler_path(scale).is_file()
        ]
        return bundled + self._scanned((KIND_UPSCALER,))

    def find(self, models: list[Model], text: str, what: str) -> Model:
        """The model `text` names (name, file name, or A1111's "file [hash]" title), exact
        spelling first; ValueError naming `what` and the names allowed."""
        wanted = text.strip()
        if wanted.endswith("]") and " [" in wanted:
            wanted = wanted[: wanted.rindex(" [")]
        for same in (str.__eq__, lambda a, b: a.lower() == b.lower()):
            for model in models:
                if same(model.name, wanted) or same(model.filename, wanted):
                    return model
        raise ValueError(
            f"{what}: {text!r} is not a model on this server; allowed: {_names(models)}"
        )

    def check_request(self, request: Request) -> None:
        """ValueError naming the field when the request names a file that is not one of the
        server's models (or a `<lora:...>` tag that is not a LoRA's name)."""
        params = request.params
        checkpoints = self.checkpoints()
        if params.model:
            _allowed(params.model, checkpoints, "model")
        if params.vae:
            _allowed(params.vae, self.vaes(), "vae")
        loras = self.loras()
        for i, (path, _weight) in enumerate(params.loras):
            _allowed(path, loras, f"loras[{i}]")
        _, tags = split_lora_tags(params.prompt)
        for name, _strength in tags:
            if any(sep in name for sep in "/\\") or name.startswith(("~", ".")):
                raise ValueError(
                    f"prompt: <lora:{name}> names a path; allowed: the name of a LoRA on this "
                    f"server: {_names(loras)}"
                )
            self.find(loras, name, f"prompt: <lora:{name}>")
        hires = request.hires
        if hires is not None and hires.model:
            _allowed(hires.upscaler, self.upscalers(), "hires upscaler")
        upscale = request.upscale
        if upscale is not None and upscale.upscaler and upscale.upscaler not in RESAMPLERS:
            _allowed(upscale.upscaler, self.upscalers(), "upscaler")


def _allowed(text: str, models: list[Model], what: str) -> None:
    try:
        path = Path(text).expanduser().resolve()
    except (OSError, RuntimeError):
        path = None
    if path is None or all(model.path.resolve() != path for model in models):
        raise ValueError(
            f"{what}: {Path(text).name!r} is not one of this server's models; allowed: "
            f"{_names(models)}"
        )


def _names(models: list[Model]) -> str:
    if not models:
        return "none (add a model folder on the server: `ldstudio models add-folder DIR`)"
    names = [model.name for model in models[:SHOWN]]
    return ", ".join(names) + (", ..." if len(models) > SHOWN else "")
