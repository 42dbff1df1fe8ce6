"""Running an upscaler over an image in tiles, so memory follows the tile, not the image.

Each tile is run with a margin of context (`pad`) on every side that is cut off afterwards:
a convolutional upscaler's output near a tile's edge depends on pixels beyond it, so with
enough context the tiles join without seams (the result matches a whole-image pass up to the
margin's receptive-field limit).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ldstudio.engine.upscalers.loader import LoadedUpscaler

MODEL_TILE = 256  # input pixels per tile side (×4 → 1024 output): small enough for any device
MODEL_PAD = 16  # context on each side of a tile


def tile_count(width: int, height: int, tile: int = MODEL_TILE) -> int:
    return -(-width // tile) * -(-height // tile)


def upscale_array(
    upscaler: LoadedUpscaler,
    image: np.ndarray,
    on_tile: Callable[[int, int], None] | None = None,
    tile: int = MODEL_TILE,
    pad: int = MODEL_PAD,
) -> np.ndarray:
    """`image` (H×W×3 uint8) × the upscaler's scale, as uint8; `on_tile(done, total)` after
    each tile (it may raise to cancel)."""
    height, width = image.shape[:2]
    scale = upscaler.scale
    out = np.empty((height * scale, width * scale, 3), np.uint8)
    total = tile_count(width, height, tile)
    done = 0
    source = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            py0, px0 = max(y0 - pad, 0), max(x0 - pad, 0)
            py1, px1 = min(y1 + pad, height), min(x1 + pad, width)
            piece = source[..., py0:py1, px0:px1]
            piece = piece.to(device=upscaler.device, dtype=upscaler.dtype) / 255.0
            with torch.inference_mode():
                result = upscaler.run(piece)
            cy, cx = (y0 - py0) * scale, (x0 - px0) * scale
            result = result[..., cy : cy + (y1 - y0) * scale, cx : cx + (x1 - x0) * scale]
            pixels = (result[0].float().clamp(0, 1) * 255.0).round().to(torch.uint8)
            out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = (
                pixels.permute(1, 2, 0).cpu().numpy()
            )
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return out
