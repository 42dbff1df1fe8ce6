"""No visible tile grid (#16): the refine's blend (core.upscale.TileBlender) against a synthetic
refine that drifts each tile's tone and paints each its own detail, and bench_upscale's seam
measure, which must tell a grid (no overlap, or a plain cross-fade) from none."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from ldstudio.core.upscale import TileBlender, low_pass_radius, tile_grid

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_upscale import overlap_zones, seam_profile, seam_ratio, seam_ratio_against, texture

SIZE, TILE, OVERLAP = 512, 128, 32
Paint = Callable[[int, Image.Image], Image.Image]


def drifting_refine(detail: float = 16.0, drift: float = 25.0) -> Paint:
    """Each tile: its crop, shifted in tone by up to ±`drift` levels, plus detail of its own
    (smooth noise of `detail` levels, independent of every other tile's)."""

    def paint(index: int, crop: Image.Image) -> Image.Image:
        rng = np.random.default_rng(100 + index)
        noise = rng.normal(0, 1, (crop.height, crop.width, 3))
        noise = Image.fromarray(np.clip(128 + 40 * noise, 0, 255).astype(np.uint8), "RGB")
        smooth = np.asarray(noise.filter(ImageFilter.GaussianBlur(1.0)), np.float32) - 128
        smooth *= detail / max(float(smooth.std()), 1e-6)
        tone = rng.uniform(-drift, drift, 3)
        pixels = np.asarray(crop, np.float32) + smooth + tone
        return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")

    return paint


def blend(source: Image.Image, overlap: int, paint: Paint) -> TileBlender:
    blender = TileBlender(source, overlap)
    for index, tile in enumerate(tile_grid(source.width, source.height, TILE, overlap)):
        crop = source.crop((tile.x0, tile.y0, tile.x1, tile.y1))
        blender.add(tile, paint(index, crop))
    return blender


def zones(overlap: int) -> list[tuple[int, int]]:
    return overlap_zones(SIZE, TILE, overlap)


@pytest.fixture(scope="module")
def source() -> Image.Image:
    # A photograph-like picture with gentle detail (the refine's own detail dominates).
    picture = np.asarray(texture(SIZE, seed=1), np.float32)
    picture = 128 + 0.2 * (picture - 128)
    return Image.fromarray(np.rint(picture).astype(np.uint8), "RGB")


def test_an_unchanged_refine_gives_back_the_source(source: Image.Image) -> None:
    made = blend(source, OVERLAP, lambda _i, crop: crop).result()
    diff = np.abs(np.asarray(made, np.int16) - np.asarray(source, np.int16))
    assert diff.max() <= 1  # every tile's detail plus the shared low-pass: the source again


def test_a_refine_that_drifts_each_tiles_tone_leaves_no_step(source: Image.Image) -> None:
    made = blend(source, OVERLAP, drifting_refine(detail=0.0)).result()
    # The drift (up to ±25 levels a tile) is gone: the source's tone everywhere.
    diff = np.abs(np.asarray(made, np.int16) - np.asarray(source, np.int16))
    assert diff.max() <= 2
    assert seam_ratio(np.asarray(made), zones(OVERLAP), zones(OVERLAP)) < 1.05


def test_tiles_with_their_own_detail_blend_without_a_band(source: Image.Image) -> None:
    blender = blend(source, OVERLAP, drifting_refine())
    made = np.asarray(blender.result())
    z = zones(OVERLAP)
    assert seam_ratio(made, z, z) <= 1.10  # the goal: within 10 % along the borders
    # The tone is the source's: the tiles' drift does not show at the low-pass's scale.
    blur = ImageFilter.GaussianBlur(low_pass_radius(OVERLAP))
    low_made = np.asarray(Image.fromarray(made).filter(blur), np.float32)
    low_source = np.asarray(source.filter(blur), np.float32)
    assert np.abs(low_made - low_source).mean() < 1.5
    # What the energy restore is for: a plain feathered average of the same tiles' detail
    # loses its contrast midway across every overlap, which the measure sees.
    weights = np.maximum(blender.weights, 1e-8)[..., None]
    plain = np.clip(blender.low_source + blender.detail / weights, 0, 255).astype(np.uint8)
    assert min(seam_profile(plain, z, 1)) < 0.85
    assert seam_ratio(plain, z, z) > 1.2


def test_the_measure_sees_tiles_that_do_not_overlap(source: Image.Image) -> None:
    made = np.asarray(blend(source, 0, drifting_refine()).result())
    z = zones(0)
    assert all(start == end for start, end in z)  # single edges: the tiles abut
    assert seam_ratio(made, z, z) > 1.5
    assert seam_ratio(np.asarray(source), z, z) < 1.1  # the picture itself has no grid
    # Band by band against the unrefined picture: the same verdicts.
    picture = np.asarray(source)
    assert seam_ratio_against(picture, picture, z, z) == 1.0
    assert seam_ratio_against(made, picture, z, z) > 1.5


def test_the_blend_gain_is_one_away_from_the_overlaps(source: Image.Image) -> None:
    # One tile per image: no cross-fade anywhere, so the result is exactly the tile's detail
    # over the source's low-pass, nothing boosted.
    blender = TileBlender(source, OVERLAP)
    [tile] = tile_grid(SIZE, SIZE, SIZE, OVERLAP)
    painted = drifting_refine()(0, source)
    blender.add(tile, painted)
    expected = np.clip(np.rint(blender.low_source + blender.detail), 0, 255)
    assert np.array_equal(np.asarray(blender.result()), expected.astype(np.uint8))


def test_a_tile_image_of_the_wrong_size_is_refused(source: Image.Image) -> None:
    blender = TileBlender(source, OVERLAP)
    tile = tile_grid(SIZE, SIZE, TILE, OVERLAP)[0]
    with pytest.raises(ValueError, match="tile at 0,0: image is 64×64; expected 128×128"):
        blender.add(tile, Image.new("RGB", (64, 64)))


def test_finishing_in_strips_is_finishing_whole(
    source: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ldstudio.core.upscale as upscale

    blender = blend(source, OVERLAP, drifting_refine())
    strips = np.asarray(blender.result(), np.int16)
    monkeypatch.setattr(upscale, "_STRIP", SIZE)
    whole = np.asarray(blender.result(), np.int16)
    differ = np.abs(strips - whole)
    assert differ.max() <= 1 and (differ > 0).mean() < 1e-3  # (float sums' rounding)
