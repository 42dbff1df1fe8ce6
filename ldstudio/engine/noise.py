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
