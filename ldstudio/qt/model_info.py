"""What the UI needs to know about a diffusers model folder, read from its JSON configs; any thread.

Reading a few small JSON files is enough for the size presets and the latent-size label; the
model itself is only ever loaded by the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ldstudio.core.models import (
    KIND_CHECKPOINT,
    PICKLE_SUFFIXES,
    inspect_diffusers_folder,
    inspect_file,
)


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    native_size: int  # pixels per side the UNet was trained at
    vae_factor: int  # pixels per latent cell
    latent_channels: int

    def latent_text(self, width: int | None, height: int | None) -> str:
        """E.g. "latent 8×8×4 for a 64×64 image"."""
        w = width or self.native_size
        h = height or self.native_size
        return (
            f"latent {w // self.vae_factor}×{h // self.vae_factor}×{self.latent_channels} "
            f"for a {w}×{h} image"
        )


def is_diffusers_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def model_problem(path: Path) -> str:
    """Why `path` cannot be a model in the picker, as the model manager reports it; "" if it can.

    A diffusers folder or a single .safetensors checkpoint; reads configs and a header only.
    """
    allowed = "allowed: a .safetensors checkpoint, or a diffusers folder with model_index.json"
    if path.is_dir():
        if not is_diffusers_folder(path):
            return (
                f"{path} is not a diffusers model folder: it has no model_index.json "
                "(a diffusers folder holds model_index.json, unet/, vae/, text_encoder/, "
                f"tokenizer/ and scheduler/); {allowed}"
            )
        entry = inspect_diffusers_folder(path, path.parent)
        if entry.loadable:
            try:
                read_model_info(path)
            except ValueError as exc:
                return str(exc)
    elif not path.exists():
        return f"{path}: no such file or folder"
    elif path.suffix.lower() == ".safetensors" or path.suffix.lower() in PICKLE_SUFFIXES:
        entry = inspect_file(path)
    else:
        return f"{path.name}: {path.suffix or 'a file without suffix'} is not a model; {allowed}"
    if entry.loadable:
        return ""
    if entry.error:
        return entry.error
    return f"{path}: a {entry.kind} file, not a {KIND_CHECKPOINT}; {allowed}"


def read_model_info(path: Path) -> ModelInfo:
    """Read the UNet and VAE configs. ValueError naming the file when a value is missing."""
    if not is_diffusers_folder(path):
        raise ValueError(
            f"{path} is not a diffusers model folder: model_index.json is missing "
            "(expected model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)"
        )
    try:
        unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((path / "vae" / "config.json").read_text(encoding="utf-8"))
        factor = 2 ** (len(vae["block_out_channels"]) - 1)
        sample = unet["sample_size"]
        sample = sample[0] if isinstance(sample, list) else sample
        return ModelInfo(
            path=path,
            name=path.name,
            native_size=int(sample) * factor,
            vae_factor=factor,
            latent_channels=int(vae.get("latent_channels", 4)),
        )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{path}: unet/config.json or vae/config.json is unusable ({exc})"
        ) from None
