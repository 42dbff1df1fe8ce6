"""What a model file is, told from its safetensors header: kind, family and variant; any thread.

The one place that knows the Stable Diffusion families: single files are classified from key
names and tensor shapes, diffusers folders and loaded pipelines from their UNet config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ldstudio.core.models.safetensors import ModelFileError, SafetensorsHeader, read_small_tensor
from ldstudio.core.models.upscalers import detect_upscaler

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
    "and SDXL-Turbo (and the inpainting versions of SD 1.x, 2.x and SDXL) in the original "
    "Stable Diffusion key layout, as .safetensors"
)

KIND_CHECKPOINT = "checkpoint"
KIND_DIFFUSERS = "diffusers"
KIND_VAE = "vae"
KIND_LORA = "lora"
KIND_UPSCALER = "upscaler"  # ESRGAN-family image upscalers (core/models/upscalers.py)
KIND_EMBEDDING = "embedding"  # textual-inversion embeddings (core/models/embeddings.py)
KIND_UNKNOWN = "unknown"

STATUS_OK = "ok"
STATUS_UNSUPPORTED = "unsupported"
STATUS_UNSAFE = "unsafe"
STATUS_ERROR = "error"

# Cross-attention width of the text conditioning, per Stable Diffusion family: CLIP ViT-L (SD
# 1.x), OpenCLIP ViT-H (SD 2.x), both CLIPs concatenated (SDXL base).
CONTEXT_FAMILIES: dict[int, str] = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
FAMILY_LABELS: dict[str, str] = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}

_UNET = "model.diffusion_model."
_ATTN2_TO_K = re.compile(r"^model\.diffusion_model\..*\.attn2\.to_k\.weight$")
# ComfyUI's heuristic for SD 2.x v-prediction (comfy/supported_models.py, SD20.model_type):
# fine-tuning for v-prediction spreads this LayerNorm bias well beyond the epsilon models'.
_V_PRED_PROBE = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
_V_PRED_STD = 0.09


# A UNet's input channels: the latents, or (inpainting models: SD 1.5/2 and SDXL inpainting)
# the latents, the mask and the masked image's latents.
LATENT_CHANNELS = 4
INPAINTING_CHANNELS = 9


def is_inpainting_unet(in_channels: object) -> bool:
    """Whether a UNet config's `in_channels` is an inpainting model's."""
    return in_channels == INPAINTING_CHANNELS


def family_label(family: str) -> str:
    """A family for messages: "SD 1.x", "SD 2.x", "SDXL", else the name quoted ('custom')."""
    return FAMILY_LABELS.get(family, repr(family))


def family_of_variant(variant: str) -> str:
    """The family a bundled config belongs to ("sd2-v" → "sd2"); ValueError for an unknown one."""
    for family, names in VARIANTS.items():
        if variant in names:
            return family
    raise ValueError(f"variant: {variant!r} is not a bundled config; allowed: {_all_variants()}")


def _all_variants() -> str:
    return ", ".join(name for names in VARIANTS.values() for name in names)


def unet_family(cross_attention_dim: object, addition_embed_type: object) -> str:
    """The family of a diffusers UNet from two values of its config (unet/config.json, or a
    loaded pipeline's `unet.config`): "sd1", "sd2", "sdxl", "sdxl-refiner" or "custom".

    SDXL's base and refiner both condition on text and image size (`addition_embed_type`
    "text_time"); the base's context is 2048 wide, the refiner's 1280 (one OpenCLIP). Without
    it, the width alone tells SD 1.x from SD 2.x; anything else is a custom model.
    """
    context = cross_attention_dim
    if isinstance(context, list | tuple):
        context = context[0] if context else None
    if addition_embed_type == "text_time":
        return "sdxl" if context == 2048 else "sdxl-refiner"
    family = CONTEXT_FAMILIES.get(context if isinstance(context, int) else 0, "custom")
    # As wide as SDXL's but without its size conditioning: not an SDXL UNet.
    return "custom" if family == "sdxl" else family


@dataclass(frozen=True)
class Detection:
    """What a file is, found from its key names and tensor shapes, never its file name."""

    kind: str
    family: str = ""  # "sd1" | "sd2" | "sdxl" for checkpoints and LoRAs that say so
    variant: str = ""  # the bundled config a checkpoint loads with (see VARIANTS)
    status: str = STATUS_OK
    # An inpainting checkpoint: its UNet reads 9 channels (latents + mask + masked image).
    inpainting: bool = False
    message: str = ""  # what was found, for unsupported files
    # Upscalers: the network architecture ("Compact", "ESRGAN", "SwinIR", ...) and its scale.
    architecture: str = ""
    scale: int = 0
    # Embeddings: how many token vectors the file holds (each takes one of a chunk's 75).
    vectors: int = 0


def detect(header: SafetensorsHeader) -> Detection:
    """Classify a safetensors file: checkpoint (with family and variant), VAE, LoRA, other."""
    keys = header.tensors
    if any(k.startswith(_UNET) for k in keys):
        return _detect_checkpoint(header)
    if _is_lora(keys):
        return Detection(kind=KIND_LORA, family=_lora_family(header))
    if _is_vae(keys):
        return Detection(kind=KIND_VAE)
    embedding = embedding_layout(keys)
    if embedding is not None:
        family, vectors = embedding
        return Detection(kind=KIND_EMBEDDING, family=family, vectors=vectors)
    upscaler = detect_upscaler(keys)
    if upscaler is not None:
        return Detection(
            kind=KIND_UPSCALER,
            status=STATUS_UNSUPPORTED if upscaler.unavailable else STATUS_OK,
            message=upscaler.unavailable,
            architecture=upscaler.architecture,
            scale=upscaler.scale,
        )
    found = _describe_other(keys)
    return Detection(
        kind=KIND_UNKNOWN,
        status=STATUS_UNSUPPORTED,
        message=(
            f"found {found}; supported: {SUPPORTED_TEXT}, standalone VAEs, LoRAs, "
            "textual-inversion embeddings and ESRGAN-family upscalers"
        ),
    )


# Token-embedding widths of the families' text encoders: CLIP ViT-L (SD 1.x, SDXL's first),
# OpenCLIP ViT-H (SD 2.x), OpenCLIP ViT-bigG (SDXL's second).
EMBEDDING_FAMILIES: dict[int, str] = {768: "sd1", 1024: "sd2"}
SDXL_EMBEDDING_WIDTHS = {"clip_l": 768, "clip_g": 1280}
# A1111 pads a chunk rather than split an embedding across two: more vectors than one chunk
# holds could never be encoded.
MAX_EMBEDDING_VECTORS = 75


def embedding_layout(keys: Mapping[str, Any]) -> tuple[str, int] | None:
    """(family, vectors) of a textual-inversion embedding's tensors; None for another layout.

    The layouts A1111 reads: `emb_params` (its own safetensors), `string_to_param.*` (the
    original .pt's dict, flattened), `clip_l` + `clip_g` (SDXL: one vector set per text
    encoder), and one lone tensor named after its token (diffusers' `learned_embeds`, only at
    a known width so that no other one-tensor file passes for one). The family is "" for an
    unknown width (a custom text encoder); each vector is a row (a 1-D tensor is one vector).
    """
    shapes = {name: tuple(getattr(info, "shape", ())) for name, info in keys.items()}
    if set(shapes) == set(SDXL_EMBEDDING_WIDTHS):
        rows = {name: _rows(shape) for name, shape in shapes.items()}
        widths_fit = all(
            shapes[name][-1:] == (width,) for name, width in SDXL_EMBEDDING_WIDTHS.items()
        )
        if (
            widths_fit
            and rows["clip_l"] == rows["clip_g"]
            and 0 < rows["clip_l"] <= MAX_EMBEDDING_VECTORS
        ):
            return "sdxl", rows["clip_l"]
        return None
    if len(shapes) != 1:
        return None
    ((name, shape),) = shapes.items()
    vectors = _rows(shape)
    if not 0 < vectors <= MAX_EMBEDDING_VECTORS:
        return None
    width = shape[-1]
    if name == "emb_params" or name.startswith("string_to_param."):
        return EMBEDDING_FAMILIES.get(width, ""), vectors
    if width in EMBEDDING_FAMILIES:
        return EMBEDDING_FAMILIES[width], vectors
    return None


def _rows(shape: tuple[int, ...]) -> int:
    """Vectors in a (vectors, width) or (width,) tensor; 0 for any other shape."""
    if len(shape) == 1:
        return 1 if shape[0] > 0 else 0
    if len(shape) == 2 and shape[1] > 0:
        return shape[0]
    return 0


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
    if in_channels not in (0, LATENT_CHANNELS, INPAINTING_CHANNELS):
        return unsupported(
            f"a UNet with {in_channels} input channels (an instruct-pix2pix or other "
            f"image-conditioned model, context width {context})"
        )
    if xl_refiner:
        return unsupported("an SDXL refiner checkpoint (refiners need a base model's latents)")
    # The width names the family; its text encoder(s) and SDXL's size embedding must agree.
    family = CONTEXT_FAMILIES.get(context, "")
    agrees = {
        "sd1": sd1_text and not label,
        "sd2": sd2_text and not label,
        "sdxl": xl_text and label,
    }
    if not agrees.get(family, False):
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
    return Detection(
        kind=KIND_CHECKPOINT,
        family=family,
        variant=_variant(header, family),
        inpainting=in_channels == INPAINTING_CHANNELS,
    )


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
            return CONTEXT_FAMILIES.get(width, "")
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
        shapes = ", ".join(f"{k} {tuple(getattr(v, 'shape', ()))}" for k, v in keys.items())
        return (
            f"a textual-inversion embedding of a shape ldstudio cannot use ({shapes}; allowed: "
            f"1 to {MAX_EMBEDDING_VECTORS} vectors of the text encoder's width, SDXL's "
            "clip_l 768 and clip_g 1280 wide with as many rows)"
        )
    return f"{len(keys)} tensors in an unrecognised layout"
