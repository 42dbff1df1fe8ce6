"""Upscaler models (ESRGAN family) told from a safetensors header: architecture, scale, layout.

Torch-free, like the rest of core/models: the model manager and `ldstudio models list` show an
upscaler's architecture and scale from its key names and tensor shapes alone. The engine
(engine/upscalers) builds the network from the same `UpscalerLayout`.

The key layouts are the ones the upscaler authors published and spandrel recognises (its
architecture detectors were read for the key names; no code was taken), so a file that
spandrel loads is recognised here, and the bundled upscaler, in the Compact layout, loads in
spandrel too.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Architectures ldstudio runs with its own code (a few dozen lines each, no extra package).
ARCH_COMPACT = "Compact"  # SRVGGNetCompact: Real-ESRGAN's realesr-general / animevideo models
ARCH_ESRGAN = "ESRGAN"  # RRDBNet: ESRGAN, Real-ESRGAN x4plus/x2plus, BSRGAN, 4x-UltraSharp, ...
OWN_ARCHITECTURES = (ARCH_COMPACT, ARCH_ESRGAN)
# Architectures ldstudio recognises and runs through spandrel when it is installed.
SPANDREL_ARCHITECTURES = ("SwinIR", "DAT", "HAT", "SPAN")


@dataclass(frozen=True)
class UpscalerLayout:
    """What an upscaler file is: enough to show it and to build its network."""

    architecture: str
    scale: int  # output pixels per input pixel, per side
    in_channels: int = 3
    out_channels: int = 3
    features: int = 64  # conv width (num_feat / nf)
    blocks: int = 0  # Compact: body convs; ESRGAN: RRDB blocks
    # ESRGAN models trained for ×2/×1 pixel-unshuffle their input first (Real-ESRGAN x2plus).
    unshuffle: int = 1
    # Why ldstudio recognises the file but cannot run it here ("" when it can).
    unavailable: str = ""


def spandrel_available() -> bool:
    """Whether the optional spandrel package can be imported (checked without importing it)."""
    return importlib.util.find_spec("spandrel") is not None


def is_upscaler(keys: Mapping[str, Any]) -> bool:
    return detect_upscaler(keys) is not None


def detect_upscaler(keys: Mapping[str, Any]) -> UpscalerLayout | None:
    """The upscaler a header's tensors (name → object with `.shape`) describe, or None."""
    for probe in (_compact, _esrgan, _swinir, _dat, _hat, _span):
        found = probe(keys)
        if found is not None:
            return found
    return None


def _shape(keys: Mapping[str, Any], name: str) -> tuple[int, ...]:
    info = keys.get(name)
    return tuple(info.shape) if info is not None else ()


def _indices(keys: Mapping[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _compact(keys: Mapping[str, Any]) -> UpscalerLayout | None:
    if "body.0.weight" not in keys or "body.1.weight" not in keys:
        return None
    body = _indices(keys, r"^body\.(\d+)\.weight$")
    first, last = _shape(keys, "body.0.weight"), _shape(keys, f"body.{body[-1]}.weight")
    if len(first) != 4 or len(last) != 4 or body[-1] % 2:
        return None
    in_nc, features = first[1], first[0]
    convs = (body[-1] - 2) // 2
    produced = last[0]
    for out_nc in (in_nc, 3, 4, 1):
        if produced % out_nc == 0:
            scale = math.isqrt(produced // out_nc)
            if scale * scale * out_nc == produced and scale >= 1:
                return UpscalerLayout(ARCH_COMPACT, scale, in_nc, out_nc, features, convs)
    return None


_ESRGAN_NEW = {
    "conv_first.": "model.0.",
    "conv_body.": "model.1.sub.{nb}.",
    "trunk_conv.": "model.1.sub.{nb}.",
}


def esrgan_old_keys(keys: Mapping[str, Any]) -> dict[str, str]:
    """Old-layout ESRGAN key → this file's key (the new basicsr and BSRGAN layouts renamed
    them); identity for a file already in the old layout."""
    if "model.0.weight" in keys:
        return {k: k for k in keys}
    blocks = _indices(keys, r"^(?:body|RRDB_trunk)\.(\d+)\.")
    nb = blocks[-1] + 1 if blocks else 0
    ups = _indices(keys, r"^(?:conv_up|upconv)(\d+)\.weight$")
    top = max(ups) if ups else 0
    mapped: dict[str, str] = {}
    for key in keys:
        new = key
        m = re.match(r"^(?:body|RRDB_trunk)\.(\d+)\.(?:rdb|RDB)(\d)\.conv(\d)\.(weight|bias)$", key)
        if m:
            new = f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"
        elif m := re.match(r"^(?:conv_up|upconv)(\d+)\.(weight|bias)$", key):
            new = f"model.{3 * int(m[1])}.{m[2]}"
        elif m := re.match(r"^(?:conv_hr|HRconv)\.(weight|bias)$", key):
            new = f"model.{3 * top + 2}.{m[1]}"
        elif m := re.match(r"^conv_last\.(weight|bias)$", key):
            new = f"model.{3 * top + 4}.{m[1]}"
        else:
            for prefix, target in _ESRGAN_NEW.items():
                if key.startswith(prefix):
                    new = target.format(nb=nb) + key[len(prefix) :]
        mapped[new] = key
    return mapped


def _esrgan(keys: Mapping[str, Any]) -> UpscalerLayout | None:
    old = "model.0.weight" in keys and "model.1.sub.0.RDB1.conv1.0.weight" in keys
    new = all(
        k in keys for k in ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight")
    )
    bsrgan = all(
        k in keys
        for k in ("conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight", "trunk_conv.weight")
    )
    if not (old or new or bsrgan):
        return None
    mapped = esrgan_old_keys(keys)
    shapes = {k: _shape(keys, v) for k, v in mapped.items()}
    if any(".conv1x1." in k for k in keys):
        return UpscalerLayout(
            ARCH_ESRGAN + "+", 4, unavailable="ESRGAN+ (with 1×1 convolutions) is not supported"
        )
    top = max(int(m[1]) for k in shapes if (m := re.match(r"^model\.(\d+)\.", k)))
    first, last = shapes.get("model.0.weight", ()), shapes.get(f"model.{top}.weight", ())
    if len(first) != 4 or len(last) != 4:
        return None
    in_nc, features, out_nc = first[1], first[0], last[0]
    nb = len(_indices(shapes, r"^model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight$"))
    scale = 2 ** ((top + 1 - 5) // 3)
    unshuffle = 1
    if in_nc == out_nc * 4:
        unshuffle = 2
    elif in_nc == out_nc * 16:
        unshuffle = 4
    return UpscalerLayout(
        ARCH_ESRGAN, max(scale // unshuffle, 1), in_nc, out_nc, features, nb, unshuffle
    )


def _needs_spandrel(architecture: str, scale: int) -> UpscalerLayout:
    unavailable = (
        ""
        if spandrel_available()
        else f"{architecture} models run through the optional spandrel package, which is not "
        "installed (pip install spandrel; it needs torchvision for your torch build)"
    )
    return UpscalerLayout(architecture, scale, unavailable=unavailable)


def _pixelshuffle_scale(keys: Mapping[str, Any], prefix: str = "upsample.") -> int:
    scale = 1
    for index in _indices(keys, rf"^{re.escape(prefix)}(\d+)\.weight$"):
        shape = _shape(keys, f"{prefix}{index}.weight")
        if len(shape) == 4 and shape[1]:
            scale *= math.isqrt(shape[0] // shape[1]) or 1
    return scale


def _swinir(keys: Mapping[str, Any]) -> UpscalerLayout | None:
    if "layers.0.residual_group.blocks.0.norm1.weight" not in keys:
        return None
    if "conv_first.weight" not in keys and "conv_first.1.weight" not in keys:
        return None
    if "relative_position_index_SA" in keys or any(".conv_block.cab." in k for k in keys):
        return None  # HAT, below
    if "conv_before_upsample.0.weight" in keys and "conv_up1.weight" not in keys:
        scale = _pixelshuffle_scale(keys)
    elif "conv_up1.weight" in keys:
        scale = 2 ** len(_indices(keys, r"^conv_up(\d+)\.weight$"))
    elif "upsample.0.bias" in keys:
        scale = math.isqrt(_shape(keys, "upsample.0.bias")[0] // 3) or 1
    else:
        scale = 1
    return _needs_spandrel("SwinIR", scale)


def _dat(keys: Mapping[str, Any]) -> UpscalerLayout | None:
    if not all(
        k in keys
        for k in ("conv_first.weight", "before_RG.1.weight", "layers.0.blocks.0.ffn.fc1.weight")
    ):
        return None
    return _needs_spandrel("DAT", _pixelshuffle_scale(keys))


def _hat(keys: Mapping[str, Any]) -> UpscalerLayout | None:
    if "relative_position_index_SA" not in keys and not any(
        ".overlap_attn.qkv." in k for k in keys
    ):
        return None
    return _needs_spandrel("HAT", _pixelshuffle_scale(keys))


def _span(keys: Mapping[str, Any]) -> UpscalerLayout | None:
    if not all(
        k in keys for k in ("conv_1.sk.weight", "block_1.c1_r.sk.weight", "upsampler.0.weight")
    ):
        return None
    produced = _shape(keys, "upsampler.0.weight")[0]
    return _needs_spandrel("SPAN", math.isqrt(produced // 3) or 1)


def bundled_upscaler_path(scale: int) -> Path:
    """The bundled upscaler for ×`scale` (resources/upscalers), trained in training/upscaler.py."""
    from ldstudio.core.paths import resource_path
    from ldstudio.core.upscale import BUNDLED_UPSCALERS

    return resource_path("upscalers", f"{BUNDLED_UPSCALERS[scale]}.safetensors")


def resolve_upscaler(text: str, what: str) -> Path:
    """An upscaler model's file from what a user typed: a bundled upscaler's name
    (ldstudio-compact-x2/x4), a path, or a name in the model folders; ValueError naming
    `what` and what is known otherwise."""
    from ldstudio.core.models.detection import KIND_UPSCALER
    from ldstudio.core.models.registry import ModelRegistry
    from ldstudio.core.upscale import BUNDLED_UPSCALERS

    for scale, name in BUNDLED_UPSCALERS.items():
        if text.strip().lower() == name:
            return bundled_upscaler_path(scale)
    return ModelRegistry.shared().resolve_reference(text, (KIND_UPSCALER,), what)
