"""Speed and memory options applied to a loaded pipeline; engine thread.

`auto` choices come from the device and its memory; every choice carries the reason it was made,
so the app and the benchmarks can say what is on and why.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from ldstudio.core import paths
from ldstudio.core.options import EngineOptions
from ldstudio.engine.device import DeviceChoice

log = logging.getLogger(__name__)

GIB = 1024**3
# Below these sizes the usual SD pipelines stop fitting comfortably (diffusers' own advice).
OFFLOAD_BELOW = 6 * GIB  # model CPU offload on CUDA cards with less VRAM than this
SLICING_BELOW_CUDA = 8 * GIB
SLICING_BELOW_MPS = 32 * GIB
TILING_ABOVE_PIXELS = 1536 * 1536  # VAE decode memory grows with the pixel count


@dataclass(frozen=True)
class ResolvedOptions:
    channels_last: bool
    attention_slicing: bool
    cpu_offload: bool
    vae_tiling: str  # "on", "off" or "auto" (decided per image size at job time)
    sdpa: bool
    compile_unet: bool
    reasons: tuple[str, ...]

    def tiling_for(self, width: int, height: int) -> bool:
        if self.vae_tiling == "auto":
            return width * height > TILING_ABOVE_PIXELS
        return self.vae_tiling == "on"

    def summary(self) -> str:
        on = [
            name
            for name, value in (
                ("SDPA", self.sdpa),
                ("channels_last", self.channels_last),
                ("attention slicing", self.attention_slicing),
                ("CPU offload", self.cpu_offload),
                ("compiled UNet", self.compile_unet),
            )
            if value
        ]
        on.append(f"VAE tiling {self.vae_tiling}")
        return ", ".join(on)


def resolve(options: EngineOptions, choice: DeviceChoice, memory: int | None) -> ResolvedOptions:
    """Turn `auto` into on/off for this device. ValueError for a choice the device cannot do."""
    reasons: list[str] = []
    gpu = choice.device in ("cuda", "mps")

    def switch(name: str, value: str, auto: bool, why: str) -> bool:
        if value == "auto":
            if auto:
                reasons.append(f"{name}: on ({why})")
            return auto
        return value == "on"

    if options.cpu_offload == "on" and choice.device != "cuda":
        raise ValueError(
            f"cpu_offload: 'on' needs a CUDA GPU; this engine runs on {choice.device.upper()}. "
            "Allowed here: auto or off."
        )
    small_cuda = choice.device == "cuda" and memory is not None and memory < OFFLOAD_BELOW
    cpu_offload = switch("CPU offload", options.cpu_offload, small_cuda, "GPU has < 6 GiB")
    slicing_auto = memory is not None and (
        (choice.device == "cuda" and memory < SLICING_BELOW_CUDA)
        or (choice.device == "mps" and memory < SLICING_BELOW_MPS)
    )
    slicing = switch("attention slicing", options.attention_slicing, slicing_auto, "low memory")
    channels_last = switch(
        "channels_last", options.channels_last, choice.device == "cuda", "faster convs on CUDA"
    )
    if options.vae_tiling == "auto":
        reasons.append("VAE tiling: for images larger than 1536×1536")
    return ResolvedOptions(
        channels_last=channels_last,
        attention_slicing=slicing,
        cpu_offload=cpu_offload and gpu,
        vae_tiling=options.vae_tiling,
        sdpa=options.sdpa,
        compile_unet=options.compile_unet,
        reasons=tuple(reasons),
    )


def apply(pipe: Any, resolved: ResolvedOptions, choice: DeviceChoice) -> None:
    """Configure a freshly loaded pipeline (before it is moved to its device)."""
    if not resolved.sdpa:
        from diffusers.models.attention_processor import AttnProcessor

        pipe.unet.set_attn_processor(AttnProcessor())
    if resolved.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    if resolved.attention_slicing:
        pipe.enable_attention_slicing()
    if resolved.cpu_offload:
        pipe.enable_model_cpu_offload(device=choice.device)
    else:
        pipe.to(choice.device)
    if resolved.compile_unet:
        enable_compile_cache()
        # Regional compilation: compile the repeated transformer block once, reuse it
        # everywhere — a fraction of full-graph compile time, nearly the same speed.
        pipe.unet.compile_repeated_blocks(fullgraph=True)


MIN_VAE_TILE = 512  # pixels


def set_vae_tiling(pipe: Any, enabled: bool) -> None:
    vae = pipe.vae
    if getattr(vae, "use_tiling", False) == enabled:
        return
    if enabled:
        vae.enable_tiling()
        # diffusers tiles at the VAE config's sample_size: 64 px for the bundled model, whose
        # tiles then show as a faint grid and a colour drift. 512 px, as SD 1.x uses, hides them.
        sample, latent = (
            getattr(vae, "tile_sample_min_size", 0),
            getattr(vae, "tile_latent_min_size", 0),
        )
        if isinstance(sample, int) and isinstance(latent, int) and 0 < sample < MIN_VAE_TILE:
            factor = max(1, sample // max(latent, 1))
            vae.tile_sample_min_size = MIN_VAE_TILE
            vae.tile_latent_min_size = MIN_VAE_TILE // factor
    else:
        vae.disable_tiling()


def enable_compile_cache() -> None:
    """Keep inductor's compiled kernels in ldstudio's cache so warm-up is paid once."""
    cache = paths.cache_dir() / "torch-compile"
    cache.mkdir(parents=True, exist_ok=True)
    # Importing diffusers already makes inductor write its default (/tmp/torchinductor_<user>,
    # wiped at reboot) into TORCHINDUCTOR_CACHE_DIR, so setdefault alone never took effect.
    # Inductor re-reads the variable at compile time; only a directory the user chose stays.
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or _is_inductor_default(current):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


def _is_inductor_default(directory: str) -> bool:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # a torch without inductor's helper: leave the variable alone
        return False
    return os.path.abspath(directory) == os.path.abspath(default_cache_dir())


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor) -> list[Any]:
    """Decode final (scaled) latents to PIL images the way the SD/SDXL pipelines do.

    Used to retry a decode that ran out of memory, with tiling on.
    """
    vae = pipe.vae
    config = vae.config
    upcast = vae.dtype == torch.float16 and getattr(config, "force_upcast", False)
    original_dtype = vae.dtype
    if upcast:
        vae.to(torch.float32)
    try:
        z = latents.to(vae.device, vae.dtype)
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(z)
            std_t = torch.tensor(std).view(1, -1, 1, 1).to(z)
            z = z * std_t / config.scaling_factor + mean_t
        else:
            z = z / config.scaling_factor
        image = vae.decode(z, return_dict=False)[0]
    finally:
        if upcast:
            vae.to(original_dtype)
    return list(
        pipe.image_processor.postprocess(
            image, output_type="pil", do_denormalize=[True] * image.shape[0]
        )
    )
