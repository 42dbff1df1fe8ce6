"""Canvas-position noise: a latent's noise depends on the seed and its canvas position only."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ldstudio.engine.noise import TILE, canvas_noise, tile_seed  # noqa: E402


def test_a_region_sees_the_noise_of_its_canvas_positions() -> None:
    whole = canvas_noise(7, -8, -4, 40, 24)
    part = canvas_noise(7, 3, 5, 13, 9)  # not tile-aligned: cut from several tiles
    assert torch.equal(whole[..., 9:18, 11:24], part)


def test_seeds_and_tiles_are_independent() -> None:
    a, b = canvas_noise(1, 0, 0, TILE, TILE), canvas_noise(2, 0, 0, TILE, TILE)
    assert not torch.equal(a, b)
    row = canvas_noise(1, 0, 0, 2 * TILE, TILE)
    assert not torch.equal(row[..., :TILE], row[..., TILE:])
    assert len({tile_seed(1, x, y) for x in range(-3, 3) for y in range(-3, 3)}) == 36
    assert canvas_noise(1, 0, 0, 8, 8, salt=1).ne(a).all()


def test_noise_is_standard_normal_and_refuses_empty_regions() -> None:
    big = canvas_noise(3, 0, 0, 128, 128)
    assert abs(float(big.mean())) < 0.02 and abs(float(big.std()) - 1) < 0.02
    with pytest.raises(ValueError, match="0x4 latents"):
        canvas_noise(3, 0, 0, 0, 4)
