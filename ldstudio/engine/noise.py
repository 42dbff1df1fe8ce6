"""Canvas-position noise: the initial latent noise of a canvas job, drawn per tile of latents
from (seed, tile x, tile y) in canvas coordinates; any thread (CPU only).

txt2img draws its noise from one generator seeded with the seed, so the noise of a latent
depends on the image size. A canvas job (img2img, inpaint, outpaint) instead draws every 8×8
tile of latents (64 px) from its own CPU generator, seeded from a hash of the seed and the
tile's position on a canvas whose origin is the source image's top-left. Outpainting 64 px to
the left then gives the old region exactly the noise it had before, so an extension does not
re-roll what was there (the seam InvokeAI's issue #3226 calls unfixable). A `salt` draws an
independent field of the same kind (the "latent noise" masked content).
"""

from __future__ import annotations

import hashlib
import struct

import torch

from ldstudio.core.params import SEED_MAX, GenerationParams

TILE = 8  # latents per tile side: 64 px at the VAE's 8× downsampling


def tile_seed(seed: int, tile_x: int, tile_y: int, salt: int = 0) -> int:
    """A 63-bit generator seed for one tile, well mixed (neighbouring tiles are unrelated)."""
    packed = struct.pack("<qqqq", seed & 0x7FFF_FFFF_FFFF_FFFF, tile_x, tile_y, salt)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little") >> 1


def canvas_noise(
    seed: int,
    x: int,
    y: int,
    width: int,
    height: int,
    channels: int = 4,
    salt: int = 0,
) -> torch.Tensor:
    """Noise (1, channels, height, width) float32 for the latents whose top-left is (x, y).

    All in latent units on the canvas; x and y may be negative (left of or above the source).
    The same latent position always gets the same values, whatever region asks for it.
    """
    if width < 1 or height < 1:
        raise ValueError(f"noise: {width}x{height} latents; allowed: at least 1x1")
    out = torch.empty((1, channels, height, width), dtype=torch.float32)
    first_tx, last_tx = x // TILE, (x + width - 1) // TILE
    first_ty, last_ty = y // TILE, (y + height - 1) // TILE
    generator = torch.Generator("cpu")
    for ty in range(first_ty, last_ty + 1):
        for tx in range(first_tx, last_tx + 1):
            generator.manual_seed(tile_seed(seed, tx, ty, salt))
            tile = torch.randn((channels, TILE, TILE), generator=generator)
            # The overlap of this tile with the wanted region, in canvas latents.
            x0, x1 = max(x, tx * TILE), min(x + width, (tx + 1) * TILE)
            y0, y1 = max(y, ty * TILE), min(y + height, (ty + 1) * TILE)
            out[0, :, y0 - y : y1 - y, x0 - x : x1 - x] = tile[
                :, y0 - ty * TILE : y1 - ty * TILE, x0 - tx * TILE : x1 - tx * TILE
            ]
    return out


# -- txt2img noise with A1111's variation seed and "Seed resize from" -------------------------


def seed_noise(seed: int, width: int, height: int, channels: int = 4) -> torch.Tensor:
    """txt2img's noise for one image: one CPU generator over (1, channels, height, width)
    latents, what the pipeline draws from the generator it is given."""
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((1, channels, height, width), generator=generator)


def slerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from `a` (t = 0) to `b` (t = 1) over the whole tensor: keeps
    the noise's norm, so a blend of two noises is still noise the sampler expects."""
    if t <= 0.0:
        return a
    if t >= 1.0:
        return b
    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm())
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(omega.sin()) < 1e-6:  # (anti)parallel: a straight line is as good
        return (a * (1 - t) + b * t).to(a.dtype)
    mixed = (torch.sin((1 - t) * omega) * a.double() + torch.sin(t * omega) * b.double()) / (
        omega.sin()
    )
    return mixed.to(a.dtype)


def resized_seed_noise(
    seed: int, width: int, height: int, source: tuple[int, int], channels: int = 4
) -> torch.Tensor:
    """A1111's "Seed resize from": the noise the seed makes at `source` (latents, w × h),
    centred on the image's own noise (cropped where it is larger), so a seed keeps its
    composition at a nearby size."""
    out = seed_noise(seed, width, height, channels)
    small = seed_noise(seed, source[0], source[1], channels)
    w, h = min(width, source[0]), min(height, source[1])
    tx, ty = max((width - source[0]) // 2, 0), max((height - source[1]) // 2, 0)
    sx, sy = max((source[0] - width) // 2, 0), max((source[1] - height) // 2, 0)
    out[..., ty : ty + h, tx : tx + w] = small[..., sy : sy + h, sx : sx + w]
    return out


def txt2img_noise(
    params: GenerationParams, first: int, width: int, height: int, scale: int = 8
) -> torch.Tensor | None:
    """The starting noise of a txt2img batch (its images `first`, `first + 1`, ... of the job)
    when the variation seed or Seed resize from changes it (latents: width × height); None
    when neither does, so the pipeline draws the seed's noise itself exactly as before.
    `scale`: pixels per latent."""
    resize = params.seed_resize_from
    if not params.varied and resize is None:
        return None
    source = None if resize is None else (resize[0] // scale, resize[1] // scale)

    def noise(seed: int) -> torch.Tensor:
        if source is None:
            return seed_noise(seed, width, height)
        return resized_seed_noise(seed, width, height, source)

    made = []
    for index in range(first, first + params.batch_size):
        own = noise(params.seed_for(index))
        if params.varied:
            assert params.variation_seed is not None
            # The variation seed counts up with the image, as the seed does (A1111's subseed).
            other = (params.variation_seed + index) % (SEED_MAX + 1)
            own = slerp(params.variation_strength, own, noise(other))
        made.append(own)
    return torch.cat(made)
