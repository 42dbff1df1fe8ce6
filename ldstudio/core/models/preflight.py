"""The checks a request's models pass before any weights load, from headers and JSON; any thread.

Torch-free, so a damaged or unsupported file is refused in milliseconds, before the seconds
torch takes to import and the minutes a large model takes to load. `preflight(params,
registry)` lists every problem of a request's model, VAE, LoRAs (given, and `<lora:name>` in
the prompt), the embeddings its prompts name and preview method, in the order the CLI reports
the first of them; the engine makes the same checks again after loading.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldstudio.core.models.detection import (
    KIND_CHECKPOINT,
    KIND_LORA,
    KIND_UPSCALER,
    KIND_VAE,
    STATUS_OK,
    SUPPORTED_TEXT,
    VARIANTS,
    Detection,
    detect,
    family_label,
    family_of_variant,
)
from ldstudio.core.models.entries import diffusers_components, resolve_model_path
from ldstudio.core.models.folders import ModelFolderStore, taesd_dir
from ldstudio.core.models.registry import ModelRegistry
from ldstudio.core.models.safetensors import (
    ModelFileError,
    checked_header,
    read_safetensors_header,
)
from ldstudio.core.models.tags import split_lora_tags
from ldstudio.core.params import GenerationParams

# What messages call a request's fields: their own names. The CLI passes its options instead
# ({"vae": "--vae", "loras": "--lora", "preview_method": "--preview"}).
FIELD_LABELS: Mapping[str, str] = {
    "vae": "vae",
    "loras": "loras",
    "preview_method": "preview_method",
}


@dataclass(frozen=True)
class Problem:
    """One reason a request cannot run, and the field at fault ("model", "vae", "loras",
    "prompt" for its `<lora:name>` tags and embeddings, "negative_prompt" for its embeddings,
    "preview_method")."""

    field: str
    message: str


def preflight(
    params: GenerationParams,
    registry: ModelRegistry | None = None,
    labels: Mapping[str, str] = FIELD_LABELS,
) -> list[str]:
    """Every problem of `params`' model files, as readable messages; [] when it can load.

    `registry` resolves `<lora:name>` tags (default: `ModelRegistry.shared()`); `labels` name
    the fields in messages (see FIELD_LABELS). Reads headers and JSON only.
    """
    return [problem.message for problem in preflight_problems(params, registry, labels)]


def preflight_problems(
    params: GenerationParams,
    registry: ModelRegistry | None = None,
    labels: Mapping[str, str] = FIELD_LABELS,
) -> list[Problem]:
    """`preflight`, each message with the field at fault."""
    registry = registry if registry is not None else ModelRegistry.shared()
    problems: list[Problem] = []

    def check_file(path: Path, kind: str, what: str, field: str) -> Detection | None:
        try:
            return checked_extra_file(path, kind, what)
        except ModelFileError as exc:
            problems.append(Problem(field, str(exc)))
            return None

    vae = check_file(Path(params.vae), KIND_VAE, labels["vae"], "vae") if params.vae else None
    loras: list[tuple[str, str, Path, Detection]] = []  # (field, what, file, detection)
    for text, _weight in params.loras:
        path = Path(text)
        found = check_file(path, KIND_LORA, labels["loras"], "loras")
        if found is not None:
            loras.append(("loras", labels["loras"], path, found))
    try:
        _text, tags = split_lora_tags(params.prompt)
    except ValueError as exc:
        problems.append(Problem("prompt", str(exc)))
        tags = []
    for name, _weight in tags:
        what = f"prompt: <lora:{name}>"
        try:
            path = registry.resolve_reference(name, (KIND_LORA,), what)
        except ValueError as exc:
            problems.append(Problem("prompt", str(exc)))
            continue
        found = check_file(path, KIND_LORA, what, "prompt")
        if found is not None:
            loras.append(("prompt", what, path, found))
    model = resolve_model_path(params.model)
    try:
        variant = check_model(model)
    except (ModelFileError, ValueError) as exc:
        problems.append(Problem("model", str(exc)))
        return problems
    if params.preview_method == "taesd" or vae is not None or loras:
        family = family_of_variant(variant) if variant else registry.family(model)
        problems += _family_problems(
            params.preview_method, vae is not None, model, variant, family, loras, labels
        )
    problems += _embedding_problems(params, registry)
    return problems


def _embedding_problems(params: GenerationParams, registry: ModelRegistry) -> list[Problem]:
    """The textual-inversion embeddings the prompts name that cannot be used: an explicit
    `embedding:name` that names none for this model, a pickle, a name of two files."""
    from ldstudio.core.models.embeddings import used_embeddings
    from ldstudio.core.prompts import prompt_schedules

    problems = []
    try:
        positive = split_lora_tags(params.prompt)[0]  # the engine encodes it without the tags
    except ValueError:
        positive = params.prompt  # the tag's problem is reported already
    for field, text in (("prompt", positive), ("negative_prompt", params.negative_prompt)):
        try:
            texts = [part for _end, part in prompt_schedules(text, params.steps)]
            used_embeddings(texts, params.model, registry)
        except ValueError as exc:
            problems.append(Problem(field, f"{field}: {exc}"))
            if "models.json" in str(exc):
                break  # one damaged file, said once
    return problems


def checked_extra_file(path: Path, kind: str, what: str) -> Detection:
    """What a standalone VAE or LoRA file (`kind`) is, checked as the engine checks it before
    applying it; ModelFileError prefixed with `what` (e.g. "--vae") otherwise."""
    if path.is_dir():
        raise ModelFileError(f"{what}: {path} is a folder; give a .safetensors {kind} file")
    try:
        found = detect(checked_header(path))
    except ModelFileError as exc:
        raise ModelFileError(f"{what}: {exc}") from None
    if found.kind != kind:
        # What a VAE file is, said: a whole checkpoint holds one, but is not one.
        hint = "; a standalone VAE file holds the autoencoder alone" if kind == KIND_VAE else ""
        raise ModelFileError(
            f"{what}: {path} is not a {kind} file (found a {found.kind} file){hint}"
        )
    return found


def _family_problems(
    preview_method: str,
    has_vae: bool,
    model: Path,
    variant: str,
    family: str,
    loras: list[tuple[str, str, Path, Detection]],
    labels: Mapping[str, str],
) -> list[Problem]:
    """What depends on the model's family: TAESD weights, a standalone VAE, LoRAs."""
    problems = []
    label = family_label(family)
    if preview_method == "taesd":
        try:
            folder = taesd_dir(family)
        except ValueError as exc:  # a family without a tiny decoder; the message says which
            problems.append(Problem("preview_method", str(exc)))
        else:
            if not (folder / "config.json").is_file():
                problems.append(
                    Problem(
                        "preview_method",
                        f"{labels['preview_method']}: 'taesd' needs TAESD weights for {label} "
                        f"models in {folder} (a diffusers AutoencoderTiny folder with "
                        "config.json and diffusion_pytorch_model.safetensors); put them there, "
                        "or use 'latent2rgb' or 'vae'",
                    )
                )
    if has_vae and not variant and family not in VARIANTS:
        problems.append(
            Problem(
                "vae",
                f"{labels['vae']}: a standalone VAE needs an SD 1.x, SD 2.x or SDXL model; "
                f"{model} is {label}",
            )
        )
    for field, what, lora, found in loras:
        if found.family and family in VARIANTS and found.family != family:
            problems.append(
                Problem(
                    field,
                    f"{what}: {lora} is for {family_label(found.family)} models; the model "
                    f"{model} is {label}",
                )
            )
    return problems


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


def checked_upscaler(path: Path, what: str) -> Detection:
    """An upscaler model file checked as the engine checks it before loading: a readable
    .safetensors upscaler of an architecture that runs here; ModelFileError prefixed with
    `what` otherwise (pickles are refused with the convert hint)."""
    found = checked_extra_file(path, KIND_UPSCALER, what)
    if found.status != STATUS_OK:
        raise ModelFileError(f"{what}: {path}: {found.message}")
    return found
