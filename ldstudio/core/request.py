"""Request: the versioned, kind-tagged job a front end submits; pure data, any thread.

Two kinds: `txt2img`, whose face is GenerationParams (so every image already in a library
keeps reading back), with an optional second pass (`HiresSettings`, A1111's hires fix), and
`inpaint`, one kind with three faces — img2img (no mask: the whole
image), inpaint, outpaint — whose extra settings are `InpaintSettings`, and `upscale`
(`UpscaleSettings`: an upscaler model, then an optional tiled refine). Input images and masks
travel as content hashes into the library's blob store (`inputs`), never as pixels or paths, so a
request round-trips through JSON, through a PNG and over a network unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ldstudio.core.hires import HiresSettings
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.params import GenerationParams
from ldstudio.core.upscale import RESAMPLERS, UpscaleSettings

if TYPE_CHECKING:
    from ldstudio.core.models.refs import ResourceRef

REQUEST_VERSION = 2  # version 1 was the bare GenerationParams dict (images made before 0.x)
KIND_TXT2IMG = "txt2img"
KIND_INPAINT = "inpaint"
KIND_UPSCALE = "upscale"
KINDS: tuple[str, ...] = (KIND_TXT2IMG, KIND_INPAINT, KIND_UPSCALE)
# The kinds made from a source image (`inputs[image]`): their results link to it.
KINDS_WITH_SOURCE: tuple[str, ...] = (KIND_INPAINT, KIND_UPSCALE)
ROLE_IMAGE, ROLE_MASK = "image", "mask"
# What each kind reads from `inputs` (blob hashes by role): required, then optional.
_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    KIND_TXT2IMG: ((), ()),
    KIND_INPAINT: ((ROLE_IMAGE,), (ROLE_MASK,)),
    KIND_UPSCALE: ((ROLE_IMAGE,), ()),
}
FACES: tuple[str, ...] = ("txt2img", "img2img", "inpaint", "outpaint", "upscale")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Request:
    """One job: what kind of work, its parameters, and the blobs it reads (role → sha256)."""

    params: GenerationParams
    kind: str = KIND_TXT2IMG
    inputs: tuple[tuple[str, str], ...] = field(default=())
    # Set exactly when kind is "inpaint".
    inpaint: InpaintSettings | None = None
    # A txt2img request's hires fix (second pass), or None.
    hires: HiresSettings | None = None
    # Set exactly when kind is "upscale".
    upscale: UpscaleSettings | None = None

    def validate(self) -> Request:
        """Raise ValueError naming what is wrong and what is allowed; return self."""
        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind!r} is not supported; allowed: {', '.join(KINDS)}")
        self.params.validate()
        required, optional = _INPUTS[self.kind]
        roles = [role for role, _digest in self.inputs]
        if len(set(roles)) != len(roles) or not (
            set(required) <= set(roles) <= set(required) | set(optional)
        ):
            need = ", ".join([*required, *(f"{role} (optional)" for role in optional)]) or "none"
            raise ValueError(f"inputs: {self.kind} takes {need}; got {', '.join(roles) or 'none'}")
        for role, digest in self.inputs:
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise ValueError(f"inputs[{role}]: {digest!r} is not a sha256 blob hash")
        if self.kind == KIND_INPAINT:
            if not isinstance(self.inpaint, InpaintSettings):
                raise ValueError("inpaint: an inpaint request needs its inpaint settings")
            self.inpaint.validate()
        elif self.inpaint is not None:
            raise ValueError(f"inpaint: settings given for a {self.kind} request")
        if self.hires is not None:
            if self.kind != KIND_TXT2IMG:
                raise ValueError(f"hires: a hires fix is for txt2img requests, not {self.kind}")
            if not isinstance(self.hires, HiresSettings):
                raise ValueError("hires: expected hires settings")
            self.hires.validate()
        if self.kind == KIND_UPSCALE:
            if not isinstance(self.upscale, UpscaleSettings):
                raise ValueError("upscale: an upscale request needs its upscale settings")
            self.upscale.validate()
            if self.params.image_count != 1:
                raise ValueError(
                    f"batch: an upscale makes one image; got {self.params.batch_size} × "
                    f"{self.params.batch_count}"
                )
        elif self.upscale is not None:
            raise ValueError(f"upscale: settings given for a {self.kind} request")
        if self.kind != KIND_TXT2IMG and self.params.seed_resize_from is not None:
            # A canvas job's noise follows the canvas position, not the picture's size.
            raise ValueError(
                f"seed_resize_from: only txt2img takes Seed resize from; this is {self.face}"
            )
        return self

    def input(self, role: str) -> str | None:
        """The blob hash of the input `role`, or None when the request has none."""
        return dict(self.inputs).get(role)

    @property
    def face(self) -> str:
        """What the user sees the job as: txt2img, img2img, inpaint or outpaint."""
        if self.kind == KIND_UPSCALE:
            return KIND_UPSCALE
        if self.kind != KIND_INPAINT or self.inpaint is None:
            return KIND_TXT2IMG
        if self.inpaint.outpainting:
            return "outpaint"
        return "inpaint" if self.input(ROLE_MASK) else "img2img"

    def resolved(self) -> Request:
        """Validated, with a concrete seed (see GenerationParams.resolved)."""
        self.validate()
        return dataclasses.replace(self, params=self.params.resolved())

    def to_dict(self) -> dict[str, Any]:
        """The local form (paths as they are here), for files that stay on this machine."""
        return {
            "kind": self.kind,
            "params": self.params.to_dict(),
            "inputs": dict(self.inputs),
            "inpaint": self.inpaint.to_dict() if self.inpaint else None,
            "hires": self.hires.to_dict() if self.hires else None,
            "upscale": self.upscale.to_dict() if self.upscale else None,
        }

    @classmethod
    def from_dict(cls, data: object) -> Request:
        """Read `to_dict`'s form back, validated; a bare params dict is a txt2img request."""
        if not isinstance(data, dict):
            raise ValueError(f"request: expected a JSON object, got {type(data).__name__}")
        if "kind" not in data:
            return cls.txt2img(GenerationParams.from_dict(data))
        inputs = data.get("inputs", {})
        if not isinstance(inputs, dict):
            raise ValueError("request: inputs: expected a JSON object of role → sha256")
        inpaint = data.get("inpaint")
        hires = data.get("hires")
        upscale = data.get("upscale")
        return cls(
            params=GenerationParams.from_dict(data.get("params")),  # type: ignore[arg-type]
            kind=str(data["kind"]),
            inputs=tuple(sorted((str(k), str(v)) for k, v in inputs.items())),
            inpaint=None if inpaint is None else InpaintSettings.from_dict(inpaint),
            hires=None if hires is None else HiresSettings.from_dict(hires),
            upscale=None if upscale is None else UpscaleSettings.from_dict(upscale),
        ).validate()

    @classmethod
    def txt2img(cls, params: GenerationParams, hires: HiresSettings | None = None) -> Request:
        return cls(params=params, hires=hires)

    @classmethod
    def inpainting(
        cls,
        params: GenerationParams,
        settings: InpaintSettings,
        image: str,
        mask: str | None = None,
    ) -> Request:
        """An inpaint request on blob `image` (and `mask`; none = img2img on the whole image)."""
        inputs = [(ROLE_IMAGE, image)] + ([(ROLE_MASK, mask)] if mask else [])
        return cls(params=params, kind=KIND_INPAINT, inputs=tuple(sorted(inputs)), inpaint=settings)

    @classmethod
    def upscaling(cls, params: GenerationParams, settings: UpscaleSettings, image: str) -> Request:
        """An upscale request on blob `image`; `params` are the refine's (prompt, model, seed,
        steps), their size unused (the output is the source × the scale)."""
        return cls(
            params=params.replace(width=None, height=None, batch_size=1, batch_count=1),
            kind=KIND_UPSCALE,
            inputs=((ROLE_IMAGE, image),),
            upscale=settings,
        )


def as_request(value: Request | GenerationParams) -> Request:
    """Front ends may hand in bare parameters: that is a txt2img request."""
    return value if isinstance(value, Request) else Request.txt2img(value)


# -- the portable form: JSON with references, never local paths --------------------------------

PORTABLE_FORMAT = "ldstudio-request"
MAX_REFERENCES = 256  # LoRAs in one request: a hostile file must not make us resolve millions
_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
# The kinds a reference carries (as ldstudio.core.models names them); spelled here so that
# importing a request (every job does) does not import the model scanner.
KIND_CHECKPOINT, KIND_DIFFUSERS, KIND_VAE, KIND_LORA = "checkpoint", "diffusers", "vae", "lora"
KIND_UPSCALER = "upscaler"


class Resources(Protocol):
    """Turns local files into references and back (the model registry: name + content hash)."""

    def reference(self, path: Path, kind: str) -> ResourceRef: ...

    def resolve(self, ref: ResourceRef) -> Path | None: ...


def to_portable(request: Request, resources: Resources | None = None) -> dict[str, Any]:
    """The request as JSON-ready data whose models, VAE and LoRAs are name + sha256.

    This is what goes into every PNG's `ldstudio` chunk and over a network: sharing an image
    shares no folder layout, and another machine finds its own copy of the same files. A file
    that cannot be read now is named without a hash.
    """
    found = resources or _registry()
    params = request.params
    model = _reference(found, params.model, _model_kind(params.model)) if params.model else None
    vae = _reference(found, params.vae, KIND_VAE) if params.vae else None
    loras = [_reference(found, path, KIND_LORA) for path, _weight in params.loras]
    settings = request.upscale
    upscaler = None
    if settings is not None and settings.upscaler and settings.upscaler not in RESAMPLERS:
        upscaler = _reference(found, settings.upscaler, KIND_UPSCALER)
        settings = settings.replace(upscaler=upscaler.name)
    hires = request.hires
    hires_upscaler = None
    if hires is not None and hires.model:
        hires_upscaler = _reference(found, hires.upscaler, KIND_UPSCALER)
        hires = hires.replace(upscaler=hires_upscaler.name)
    portable = params.replace(
        model=model.name if model else "",
        vae=vae.name if vae else "",
        loras=tuple(
            (ref.name, weight) for ref, (_p, weight) in zip(loras, params.loras, strict=True)
        ),
    )
    return {
        "format": PORTABLE_FORMAT,
        "version": REQUEST_VERSION,
        "kind": request.kind,
        "params": {**portable.to_dict(), "loras": [list(pair) for pair in portable.loras]},
        "model": model.to_dict() if model else None,
        "vae": vae.to_dict() if vae else None,
        "loras": [ref.to_dict() for ref in loras],
        "inputs": dict(request.inputs),
        "inpaint": request.inpaint.to_dict() if request.inpaint else None,
        "hires": hires.to_dict() if hires else None,
        "hires_upscaler": hires_upscaler.to_dict() if hires_upscaler else None,
        "upscale": settings.to_dict() if settings else None,
        "upscaler": upscaler.to_dict() if upscaler else None,
    }


def is_portable(data: object) -> bool:
    return isinstance(data, dict) and data.get("format") == PORTABLE_FORMAT


def from_portable(
    data: dict[str, Any], resources: Resources | None = None
) -> tuple[Request, list[str]]:
    """(request with local paths where the files were found, what was not found).

    A reference not found on this machine keeps its name (which `--model NAME` style lookups
    may still match) and is listed in the second value, worded for the user.
    ValueError naming the fault for data that is not a request of a supported version.
    """
    version = data.get("version")
    if not isinstance(version, int) or version > REQUEST_VERSION or version < 2:
        raise ValueError(
            f"request: version {version!r} is not supported; allowed: 2 to {REQUEST_VERSION}"
        )
    params = data.get("params")
    if not isinstance(params, dict):
        raise ValueError("request: params: expected a JSON object")
    inputs = data.get("inputs", {})
    if not isinstance(inputs, dict):
        raise ValueError("request: inputs: expected a JSON object of role → sha256")
    from ldstudio.core.models.refs import ResourceRef

    found = resources or _registry()
    missing: list[str] = []

    def local(ref_data: object, fallback: str, what: str, kinds: tuple[str, ...]) -> str:
        if ref_data is None:
            return fallback
        ref = ResourceRef.from_dict(ref_data)
        if ref.kind not in kinds:
            raise ValueError(
                f"request: {what}: a {ref.kind} reference; allowed: {', '.join(kinds)}"
            )
        path = found.resolve(ref)
        if path is not None:
            return str(path)
        digest = f" (sha256 {ref.sha256[:10]})" if ref.sha256 else ""
        missing.append(f"{what} {ref.name!r}{digest} is not in your model folders")
        return ref.name

    values = dict(params)
    models = (KIND_CHECKPOINT, KIND_DIFFUSERS)
    values["model"] = local(data.get("model"), str(params.get("model", "")), "model", models)
    values["vae"] = local(data.get("vae"), str(params.get("vae", "")), "VAE", (KIND_VAE,))
    loras = params.get("loras", [])
    refs = data.get("loras", [])
    if not isinstance(loras, list) or not isinstance(refs, list) or len(refs) != len(loras):
        raise ValueError("request: loras: the LoRA list and its references do not match")
    if len(refs) > MAX_REFERENCES:
        raise ValueError(f"request: loras: {len(refs)} LoRAs; allowed: at most {MAX_REFERENCES}")
    if not all(isinstance(pair, list) and len(pair) == 2 for pair in loras):
        raise ValueError("request: loras: expected [name, strength] pairs")
    values["loras"] = [
        [local(ref, str(pair[0]), "LoRA", (KIND_LORA,)), pair[1]]
        for ref, pair in zip(refs, loras, strict=True)
    ]
    inpaint = data.get("inpaint")
    hires = data.get("hires")
    upscale = data.get("upscale")
    settings = None if upscale is None else UpscaleSettings.from_dict(upscale)
    if settings is not None and data.get("upscaler") is not None:
        name = local(data.get("upscaler"), settings.upscaler, "upscaler", (KIND_UPSCALER,))
        settings = settings.replace(upscaler=name)
    second = None if hires is None else HiresSettings.from_dict(hires)
    if second is not None and data.get("hires_upscaler") is not None:
        name = local(
            data.get("hires_upscaler"), second.upscaler, "hires upscaler", (KIND_UPSCALER,)
        )
        second = second.replace(upscaler=name)
    request = Request(
        params=GenerationParams.from_dict(values),
        kind=str(data.get("kind", "")),
        inputs=tuple(sorted((str(k), str(v)) for k, v in inputs.items())),
        inpaint=None if inpaint is None else InpaintSettings.from_dict(inpaint),
        hires=second,
        upscale=settings,
    )
    return request.validate(), missing


def _reference(found: Resources, text: str, kind: str) -> ResourceRef:
    path = Path(text)
    try:
        return found.reference(path, kind)
    except (OSError, ValueError):  # gone, or not what it was: its name is all there is
        from ldstudio.core.models.refs import ResourceRef

        name = path.stem if path.suffix.lower() in _WEIGHT_SUFFIXES else path.name
        return ResourceRef(kind=kind, name=name, sha256="")


def params_from_chunk(
    text: str, resources: Resources | None = None
) -> tuple[GenerationParams, list[str]]:
    """The parameters in an `ldstudio` PNG chunk, either form, and what was not found here.

    ValueError naming the fault for text that is neither form.
    """
    request, missing = request_from_chunk(text, resources)
    return request.params, missing


def request_from_chunk(text: str, resources: Resources | None = None) -> tuple[Request, list[str]]:
    """The whole request in an `ldstudio` PNG chunk, either form, and what was not found here.

    ValueError naming the fault for text that is neither form.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"params: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("params: nested too deeply") from None
    if is_portable(data):
        return from_portable(data, resources)
    # Written before references (version 1): bare txt2img params with local paths.
    return Request.txt2img(GenerationParams.from_dict(data)), []


def _model_kind(model: str) -> str:
    return KIND_CHECKPOINT if Path(model).is_file() else KIND_DIFFUSERS


def _registry() -> Resources:
    from ldstudio.core.models import refs

    return refs  # the module is the registry's reference/resolve pair
