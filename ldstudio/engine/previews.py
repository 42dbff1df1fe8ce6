"""Live previews of the predicted clean image (x0) while denoising; engine thread.

Methods: `latent2rgb` (a linear latent→RGB map per model family, or fitted from the model's own
VAE), `taesd` (AutoencoderTiny from a local folder), `vae` (full decode), `none`.
Previewers only read latents; they never change what the pipeline computes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ldstudio.core import paths
from ldstudio.core.models.folders import taesd_dir as taesd_dir

log = logging.getLogger(__name__)

PREVIEW_FILE = "ldstudio_preview.json"


@dataclass(frozen=True)
class LatentRGBTable:
    """rgb = latent·weights + bias, in [-1, 1]; `scaled` says which latent it expects.

    `scaled=True`: the pipeline's latent (already multiplied by the VAE's scaling factor), as
    ComfyUI's tables are; `scaled=False`: the VAE's raw latent.
    """

    weights: tuple[tuple[float, float, float], ...]  # one row per latent channel
    bias: tuple[float, float, float]
    scaled: bool
    source: str  # "family:sd1", "model file", "fitted", ...

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "space": "latent_scaled" if self.scaled else "latent_unscaled",
            "weights": [list(row) for row in self.weights],
            "bias": list(self.bias),
            "output_range": "minus1_1",
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> LatentRGBTable:
        if data.get("format") != 1 or data.get("output_range") != "minus1_1":
            raise ValueError(f"{source}: unsupported preview table format")
        weights = tuple(tuple(float(v) for v in row) for row in data["weights"])
        if any(len(row) != 3 for row in weights):
            raise ValueError(f"{source}: each preview weight row needs 3 values (R, G, B)")
        bias = tuple(float(v) for v in data["bias"])
        if len(bias) != 3:
            raise ValueError(f"{source}: preview bias needs 3 values (R, G, B)")
        return cls(weights, (bias[0], bias[1], bias[2]), data["space"] == "latent_scaled", source)  # type: ignore[arg-type]


# Tables from ComfyUI's comfy/latent_formats.py; they act on the scaled latent.
FAMILY_TABLES: dict[str, LatentRGBTable] = {
    "sd1": LatentRGBTable(
        weights=(
            (0.3512, 0.2297, 0.3227),
            (0.3250, 0.4974, 0.2350),
            (-0.2829, 0.1762, 0.2721),
            (-0.2120, -0.2616, -0.7177),
        ),
        bias=(0.0, 0.0, 0.0),
        scaled=True,
        source="family:sd1",
    ),
    "sdxl": LatentRGBTable(
        weights=(
            (0.3651, 0.4232, 0.4341),
            (-0.2533, -0.0042, 0.1068),
            (0.1076, 0.1111, -0.0362),
            (-0.3165, -0.2492, -0.2188),
        ),
        bias=(0.1084, -0.0175, -0.0011),
        scaled=True,
        source="family:sdxl",
    ),
}
FAMILY_TABLES["sd2"] = FAMILY_TABLES["sd1"]  # SD 2.x kept SD 1.x's VAE


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """NCHW in [-1, 1] → one HxWx3 uint8 picture (a batch is tiled side by side)."""
    scaled = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = scaled.permute(0, 2, 3, 1).cpu().numpy()
    return np.ascontiguousarray(np.concatenate(list(pixels), axis=1))


class Previewer(Protocol):
    def __call__(self, x0: torch.Tensor) -> np.ndarray:
        """Scaled x0 latents (NCHW) → HxWx3 uint8."""
        ...


class LatentRGBPreviewer:
    """A matrix product per step: free compared with a UNet call."""

    def __init__(self, table: LatentRGBTable, scaling_factor: float) -> None:
        self.table = table
        self._weights = torch.tensor(table.weights, dtype=torch.float32)
        self._bias = torch.tensor(table.bias, dtype=torch.float32)
        self._divisor = 1.0 if table.scaled else scaling_factor

    def __call__(self, x0: torch.Tensor) -> np.ndarray:
        latents = x0.detach().float().cpu() / self._divisor
        rgb = torch.einsum("nchw,ck->nkhw", latents, self._weights)
        rgb = rgb + self._bias.view(1, 3, 1, 1)
        return to_uint8(rgb)


class DecoderPreviewer:
    """Decodes x0 with a VAE: the pipeline's own (exact) or a tiny one (TAESD)."""

    def __init__(self, vae: Any) -> None:
        self.vae = vae
        self._scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        self._shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)

    def __call__(self, x0: torch.Tensor) -> np.ndarray:
        latents = x0.to(self.vae.device, self.vae.dtype) / self._scale + self._shift
        return to_uint8(self.vae.decode(latents).sample)


def _fit_inputs(vae: Any, count: int, size: int) -> torch.Tensor:
    """Smooth random colour fields: cover the colour space the way photos and drawings do."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(count, 3, 4, 4, generator=gen) * 2 - 1
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return images.to(vae.device, vae.dtype)


@torch.no_grad()
def _decode(vae: Any, latents: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """VAE decodes in [-1, 1], float32 on the CPU, in batches to bound memory."""
    parts = [
        vae.decode(latents[i : i + batch].to(vae.device, vae.dtype)).sample.float().cpu()
        for i in range(0, len(latents), batch)
    ]
    return torch.cat(parts).clamp(-1, 1)


def _linear_preview(
    latents: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    rgb = torch.einsum("nchw,ck->nkhw", latents.float().cpu(), weights.float())
    return (rgb + bias.float().view(1, 3, 1, 1)).clamp(-1, 1)


@torch.no_grad()
def latent_rgb_psnr(vae: Any, latents: torch.Tensor, weights: Any, bias: Any) -> float:
    """PSNR (dB, images in [0, 1]) of the bilinearly upsampled linear preview vs the decode."""
    decoded = _decode(vae, latents)
    small = _linear_preview(latents, torch.as_tensor(weights), torch.as_tensor(bias))
    up = torch.nn.functional.interpolate(small, size=decoded.shape[-2:], mode="bilinear")
    mse = torch.mean(((up - decoded) / 2) ** 2).item()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


@torch.no_grad()
def fit_latent_rgb(vae: Any, latents: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares fit of raw (unscaled) latents → RGB of their VAE decode.

    `latents` are what the encoder emits (e.g. `vae.encode(x).latent_dist.mean`), before the
    scaling factor. Decodes are average-pooled to latent resolution before solving. Returns
    (weights C×3, bias 3, PSNR in dB on the fitting latents; measure held-out latents with
    `latent_rgb_psnr` for an honest figure).
    """
    decoded = _decode(vae, latents)
    height, width = latents.shape[-2:]
    pooled = torch.nn.functional.adaptive_avg_pool2d(decoded, (height, width))
    x = latents.double().cpu().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    y = pooled.double().permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution
    weights, bias = solution[:-1].float(), solution[-1].float()
    up = torch.nn.functional.interpolate(
        _linear_preview(latents, weights, bias), size=decoded.shape[-2:], mode="bilinear"
    )
    mse = torch.mean(((up - decoded) / 2) ** 2).item()
    return weights.numpy(), bias.numpy(), float(10 * np.log10(1.0 / max(mse, 1e-12)))


@torch.no_grad()
def fitted_table(vae: Any, model_key: str) -> LatentRGBTable:
    """A table fitted from this model's VAE, cached per model in the user cache folder."""
    digest = hashlib.sha256(model_key.encode()).hexdigest()[:16]
    cache_file = paths.cache_dir() / "previews" / f"{digest}.json"
    if cache_file.is_file():
        try:
            return LatentRGBTable.from_json(json.loads(cache_file.read_text()), "fitted (cached)")
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable preview cache %s: %s", cache_file, exc)
    images = _fit_inputs(vae, count=8, size=128)
    latents = vae.encode(images).latent_dist.mean
    weights, bias, psnr = fit_latent_rgb(vae, latents)
    table = LatentRGBTable(
        weights=tuple(tuple(float(v) for v in row) for row in weights),  # type: ignore[misc]
        bias=(float(bias[0]), float(bias[1]), float(bias[2])),
        scaled=False,
        source="fitted",
    )
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps({**table.to_json(), "psnr_db": psnr, "model": model_key}))
    log.info("fitted latent→RGB preview for %s (PSNR %.1f dB)", model_key, psnr)
    return table


def table_for_model(
    model_dir: Path | None, family: str, vae: Any, model_key: str
) -> LatentRGBTable:
    """The model's own table file, else its family's table, else one fitted from its VAE."""
    if model_dir is not None and (model_dir / PREVIEW_FILE).is_file():
        source = str(model_dir / PREVIEW_FILE)
        return LatentRGBTable.from_json(json.loads((model_dir / PREVIEW_FILE).read_text()), source)
    if family in FAMILY_TABLES and vae.config.latent_channels == 4:
        return FAMILY_TABLES[family]
    return fitted_table(vae, model_key)


def load_taesd(family: str, choice: Any) -> Any:
    """AutoencoderTiny from the local folder for this family, offline; ValueError if absent."""
    folder = taesd_dir(family)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"preview_method: 'taesd' needs TAESD weights in {folder} (a diffusers "
            "AutoencoderTiny folder with config.json and diffusion_pytorch_model.safetensors). "
            "Put them there, or use 'latent2rgb' or 'vae'."
        )
    from diffusers import AutoencoderTiny

    return AutoencoderTiny.from_pretrained(
        str(folder), local_files_only=True, dtype=choice.torch_dtype
    ).to(choice.device)
