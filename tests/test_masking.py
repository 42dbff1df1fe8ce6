"""core.masking: the pixel rules of img2img, inpaint and outpaint (no model involved)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageFilter

from ldstudio.core import masking
from ldstudio.core.inpaint import MASK_BLUR_RANGE

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def chebyshev_dilate(painted: np.ndarray, radius: int) -> np.ndarray:
    """Brute force: pixels within `radius` (square) of a True pixel."""
    if radius == 0:
        return painted.copy()
    padded = np.pad(painted, radius)
    return sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1)).any(axis=(2, 3))


def noise(
    rng: np.random.Generator, shape: tuple[int, ...], lo: int = 0, hi: int = 256
) -> np.ndarray:
    return rng.integers(lo, hi, shape, dtype=np.uint8)


@st.composite
def rect_masks(draw: st.DrawFn, width: int, height: int) -> np.ndarray:
    """A uint8 mask of a few painted rectangles (some grey) and single pixels."""
    mask = np.zeros((height, width), np.uint8)
    for _ in range(draw(st.integers(0, 3))):
        x0 = draw(st.integers(0, width - 1))
        y0 = draw(st.integers(0, height - 1))
        x1 = draw(st.integers(x0 + 1, width))
        y1 = draw(st.integers(y0 + 1, height))
        mask[y0:y1, x0:x1] = draw(st.sampled_from([255, 255, 128, 1]))
    for _ in range(draw(st.integers(0, 3))):
        mask[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = 255
    return mask


# --- mask_from_image -------------------------------------------------------------------------


def test_mask_from_transparency_repaints_where_transparent() -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: the alpha decides, not the luminance
    rgba[..., 3] = [[255, 0, 128, 254, 1]] * 4
    mask = masking.mask_from_image(Image.fromarray(rgba))
    assert mask.mode == "L"
    assert np.asarray(mask)[0].tolist() == [0, 255, 127, 1, 254]
    la = Image.fromarray(np.dstack([np.zeros((2, 2), np.uint8), np.full((2, 2), 55, np.uint8)]))
    assert np.asarray(masking.mask_from_image(la)).tolist() == [[200, 200], [200, 200]]


def test_mask_from_opaque_image_is_its_luminance() -> None:
    rgb = np.zeros((1, 4, 3), np.uint8)
    rgb[0] = [[255, 255, 255], [0, 0, 0], [128, 128, 128], [255, 0, 0]]
    expected = [255, 0, 128, 76]  # ITU-R 601 luma of pure red
    for image in (Image.fromarray(rgb), Image.fromarray(rgb).convert("RGBA")):
        assert np.asarray(masking.mask_from_image(image))[0].tolist() == expected
    grey = Image.fromarray(np.array([[0, 7, 128, 255]], np.uint8))
    assert np.asarray(masking.mask_from_image(grey)).tolist() == [[0, 7, 128, 255]]
    assert np.asarray(masking.mask_from_image(grey.convert("1"))).tolist() == [[0, 0, 255, 255]]


def test_mask_from_palette_transparency_and_16_bit_grey() -> None:
    palette = Image.new("P", (3, 1))
    palette.putpalette([0, 0, 0, 255, 255, 255])
    palette.putdata([0, 1, 0])
    palette.info["transparency"] = 0
    assert np.asarray(masking.mask_from_image(palette)).tolist() == [[255, 0, 255]]
    deep = Image.fromarray(np.array([[0, 32768, 65535]], np.uint16))
    assert deep.mode.startswith("I")
    assert np.asarray(masking.mask_from_image(deep)).tolist() == [[0, 128, 255]]


# --- blur_reach and prepare_mask -------------------------------------------------------------


@pytest.mark.parametrize("blur", [1, 2, 3, 4, 5, 8, 13, 16, 31, 32, 47, 64])
def test_blur_reach_is_where_pillow_blur_ends(blur: int) -> None:
    reach = masking.blur_reach(blur)
    size = 2 * reach + 41
    # Worst case: everything painted but a square hole; its centre is just beyond the reach.
    worst = np.full((size, size), 255, np.uint8)
    c = size // 2
    worst[c - reach : c + reach + 1, c - reach : c + reach + 1] = 0
    blurred = np.asarray(Image.fromarray(worst).filter(ImageFilter.GaussianBlur(blur)))
    assert blurred[c, c] == 0
    # And the reach is not a loose bound: a painted edge spreads to most of it.
    edge = np.zeros((1, 4 * reach + 2), np.uint8)
    edge[0, : 2 * reach + 1] = 255
    spread = np.asarray(Image.fromarray(edge).filter(ImageFilter.GaussianBlur(blur)))[0]
    assert np.flatnonzero(spread)[-1] - 2 * reach >= 0.8 * reach


def test_blur_reach_of_no_blur() -> None:
    assert masking.blur_reach(0) == 0
    assert masking.blur_reach(4) == 12  # what a default mask blur of 4 can touch
    assert masking.blur_reach(64) == 192


def test_prepare_mask_without_blur_is_the_mask_scaled() -> None:
    values = np.array([[0, 1, 128, 255]], np.uint8)
    mask = Image.fromarray(values)
    plain = masking.prepare_mask(mask, invert=False, blur=0)
    assert plain.dtype == np.float32
    assert np.array_equal(plain, values.astype(np.float32) / 255)
    inverted = masking.prepare_mask(mask, invert=True, blur=0)
    assert np.array_equal(inverted, (255 - values).astype(np.float32) / 255)


def test_prepare_mask_blurs_like_pillow_after_inverting() -> None:
    rng = np.random.default_rng(7)
    values = np.zeros((90, 120), np.uint8)
    values[20:60, 30:80] = 255
    values[70:75, 5:9] = 128
    values[rng.integers(0, 90, 20), rng.integers(0, 120, 20)] = 255
    mask = Image.fromarray(values)
    for invert in (False, True):
        source = Image.fromarray(255 - values) if invert else mask
        expected = np.asarray(source.filter(ImageFilter.GaussianBlur(6))).astype(np.float32) / 255
        got = masking.prepare_mask(mask, invert=invert, blur=6)
        assert np.allclose(got, expected, atol=1e-6)


def test_prepare_mask_softens_the_border_and_keeps_the_core() -> None:
    values = np.zeros((300, 300), np.uint8)
    values[50:250, 50:250] = 255
    prepared = masking.prepare_mask(Image.fromarray(values), invert=False, blur=16)
    assert prepared[150, 150] == 1.0  # deep inside
    assert 0.0 < prepared[150, 48] < 0.5 < prepared[150, 52] < 1.0  # across the left edge
    assert prepared[150, 50 - masking.blur_reach(16) - 1] == 0.0
    assert prepared[0, 0] == 0.0


@PROPERTY
@given(data=st.data(), blur=st.integers(0, 9), invert=st.booleans())
def test_prepare_mask_is_exact_beyond_the_reach(
    data: st.DataObject, blur: int, invert: bool
) -> None:
    values = data.draw(rect_masks(37, 29))
    before = values.copy()
    prepared = masking.prepare_mask(Image.fromarray(values), invert=invert, blur=blur)
    assert np.array_equal(values, before)
    assert prepared.shape == values.shape and prepared.dtype == np.float32
    assert prepared.min() >= 0.0 and prepared.max() <= 1.0
    effective = 255 - values if invert else values
    reach = masking.blur_reach(blur)
    untouched = ~chebyshev_dilate(effective > 0, reach)
    assert np.all(prepared[untouched] == 0.0)
    solid = ~chebyshev_dilate(effective < 255, reach)
    assert np.all(prepared[solid] == 1.0)


def test_the_blur_probe_holds_on_this_pillow_and_can_fail() -> None:
    # Every radius the app allows is proven here, so prepare_mask skips its clip...
    low, high = MASK_BLUR_RANGE
    assert all(
        masking._blur_stays_within(b, masking.blur_reach(b)) for b in range(low + 1, high + 1)
    )
    # ...and the probe is a real check: a reach shorter than the blur's is caught.
    assert not masking._blur_stays_within(8, 2)
    assert not masking._blur_stays_within(1, 0)


@PROPERTY
@given(data=st.data(), blur=st.integers(1, 9), invert=st.booleans())
def test_prepare_mask_clips_when_the_probe_fails(
    data: st.DataObject, blur: int, invert: bool
) -> None:
    # A Pillow whose blur might spread farther gets the clip; on ours the answer is the same.
    values = data.draw(rect_masks(37, 29))
    fast = masking.prepare_mask(Image.fromarray(values), invert=invert, blur=blur)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(masking, "_blur_stays_within", lambda blur, reach: False)
        clipped = masking.prepare_mask(Image.fromarray(values), invert=invert, blur=blur)
    assert np.array_equal(fast, clipped)


def test_prepare_mask_of_an_empty_or_full_mask() -> None:
    empty = Image.new("L", (40, 30), 0)
    full = Image.new("L", (40, 30), 255)
    assert not masking.prepare_mask(empty, invert=False, blur=8).any()
    assert np.all(masking.prepare_mask(full, invert=False, blur=8) == 1.0)
    assert not masking.prepare_mask(full, invert=True, blur=8).any()
    with pytest.raises(ValueError, match="blur"):
        masking.prepare_mask(empty, invert=False, blur=-1)


# --- composite -------------------------------------------------------------------------------


@st.composite
def float_masks(draw: st.DrawFn, height: int, width: int) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, (height, width))
    soft = rng.random((height, width), dtype=np.float32)
    return np.where(kind == 0, 0.0, np.where(kind == 1, 1.0, soft)).astype(np.float32)


@PROPERTY
@given(
    data=st.data(),
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA"]),
    gen_mode=st.sampled_from(["RGB", "RGBA", "L"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_composite_keeps_the_original_bit_for_bit_outside(
    data: st.DataObject, mode: str, gen_mode: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 24)), int(rng.integers(1, 24))
    bands = len(mode)
    shape = (height, width) if bands == 1 else (height, width, bands)
    original = Image.fromarray(noise(rng, shape))
    gen_shape = (height, width) if gen_mode == "L" else (height, width, len(gen_mode))
    generated = Image.fromarray(noise(rng, gen_shape))
    mask = data.draw(float_masks(height, width))
    mask_before = mask.copy()
    original_before = np.asarray(original).copy()

    out = masking.composite(original, generated, mask)

    assert out.mode == original.mode and out.size == original.size
    assert np.array_equal(mask, mask_before)
    assert np.array_equal(np.asarray(original), original_before)
    got = np.asarray(out)
    assert np.array_equal(got[mask == 0], original_before[mask == 0])
    if mode in ("RGBA", "LA"):
        assert np.array_equal(got[..., -1], original_before[..., -1])  # alpha is the original's
    want = np.asarray(generated.convert("RGB" if mode.startswith("RGB") else "L"))
    colour = got[..., :3] if mode.startswith("RGB") else (got[..., 0] if bands == 2 else got)
    assert np.array_equal(colour[mask == 1], want[mask == 1])


@PROPERTY
@given(
    original=st.tuples(*[st.integers(0, 255)] * 3),
    generated=st.tuples(*[st.integers(0, 255)] * 3),
)
def test_composite_blend_is_monotone_in_the_mask(
    original: tuple[int, int, int], generated: tuple[int, int, int]
) -> None:
    ramp = np.linspace(0.0, 1.0, 301, dtype=np.float32)[None, :]
    base = Image.new("RGB", (301, 1), original)
    other = Image.new("RGB", (301, 1), generated)
    out = np.asarray(masking.composite(base, other, ramp)).astype(int)[0]
    for channel in range(3):
        lo, hi = sorted((original[channel], generated[channel]))
        line = out[:, channel]
        assert line.min() >= lo and line.max() <= hi
        steps = np.diff(line)
        assert np.all(steps >= 0) if generated[channel] >= original[channel] else np.all(steps <= 0)
        # Half way is half way (8-bit rounding aside).
        assert abs(line[150] - (original[channel] + generated[channel]) / 2) <= 1


def test_composite_accepts_uint8_masks_and_ignores_nan() -> None:
    base = Image.new("RGB", (3, 1), (10, 20, 30))
    other = Image.new("RGB", (3, 1), (210, 220, 230))
    out = np.asarray(masking.composite(base, other, np.array([[0, 255, 128]], np.uint8)))
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [210, 220, 230]
    assert out[0, 2].tolist() == [110, 120, 130]
    nan = np.array([[np.nan, 1.0, 0.0]], np.float32)
    out = np.asarray(masking.composite(base, other, nan))
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 2].tolist() == [10, 20, 30]


def test_composite_refuses_mismatched_inputs() -> None:
    base = Image.new("RGB", (8, 6))
    with pytest.raises(ValueError, match="8x6"):
        masking.composite(base, Image.new("RGB", (6, 8)), np.zeros((6, 8), np.float32))
    with pytest.raises(ValueError, match="mask: 6x8"):
        masking.composite(base, base, np.zeros((8, 6), np.float32))
    with pytest.raises(ValueError, match="mode: P"):
        masking.composite(base.convert("P"), base, np.zeros((6, 8), np.float32))


def test_composite_and_prepare_mask_finish_at_4096() -> None:
    # The speed goal lives in benchmarks/bench_inpaint.py; here only "no hang, right answer"
    # at the canvas's largest size (a per-pixel blur loop would take minutes).
    values = np.zeros((4096, 4096), np.uint8)
    values[300:3800, 500:3000] = 255
    mask = Image.fromarray(values)
    rng = np.random.default_rng(1)
    original = Image.fromarray(noise(rng, (4096, 4096, 3)))
    generated = Image.new("RGB", (4096, 4096), (1, 2, 3))
    start = time.perf_counter()
    prepared = masking.prepare_mask(mask, invert=False, blur=64)
    out = np.asarray(masking.composite(original, generated, prepared))
    assert time.perf_counter() - start < 30, "mask preparation and composite hang at 4096²"
    before = np.asarray(original)
    reach = masking.blur_reach(64)
    # Far outside the mask (beyond the blur's reach): the original, bit for bit.
    assert np.array_equal(out[: 300 - reach], before[: 300 - reach])
    assert np.array_equal(out[:, 3000 + reach :], before[:, 3000 + reach :])
    # Deep inside: the generated colour.
    assert (out[2000, 1500] == (1, 2, 3)).all()


def test_functions_give_the_same_answer_from_many_threads() -> None:
    rng = np.random.default_rng(3)
    original = Image.fromarray(noise(rng, (200, 240, 3)))
    generated = Image.fromarray(noise(rng, (200, 240, 3)))
    values = np.zeros((200, 240), np.uint8)
    values[40:150, 60:200] = 255

    def job(_: int) -> bytes:
        prepared = masking.prepare_mask(Image.fromarray(values), invert=False, blur=8)
        return masking.composite(original, generated, prepared).tobytes()

    serial = job(0)
    with ThreadPoolExecutor(8) as pool:
        assert all(result == serial for result in pool.map(job, range(16)))


# --- crop_region and paste_crop ----------------------------------------------------------


def one_rect(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((height, width), np.float32)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1.0
    return mask


def test_crop_region_in_the_middle_grows_to_the_aspect_about_the_centre() -> None:
    mask = one_rect(512, 512, (200, 240, 260, 260))  # 60x20 painted
    assert masking.crop_region(mask, 0, 512, 512, 1.0) == (200, 220, 260, 280)
    assert masking.crop_region(mask, 10, 512, 512, 1.0) == (190, 210, 270, 290)
    # A wide target: the box is already wider than 2:1, so the height grows to half the width.
    assert masking.crop_region(mask, 10, 512, 512, 2.0) == (190, 230, 270, 270)


def test_crop_region_at_corners_shifts_inside() -> None:
    top_left = one_rect(512, 384, (0, 0, 10, 40))
    assert masking.crop_region(top_left, 16, 512, 384, 1.0) == (0, 0, 56, 56)
    bottom_right = one_rect(512, 384, (500, 370, 512, 384))
    # Padded: (492, 362, 512, 384), 20x22; 1.5 wants 33 wide, so it shifts left from the edge.
    assert masking.crop_region(bottom_right, 8, 512, 384, 1.5) == (479, 362, 512, 384)
    right_edge = one_rect(512, 384, (508, 100, 512, 300))
    assert masking.crop_region(right_edge, 0, 512, 384, 1.0) == (312, 100, 512, 300)


def test_crop_region_clamps_to_an_image_too_small_for_the_aspect() -> None:
    mask = one_rect(600, 100, (250, 40, 350, 60))
    # Tall target on a wide, short image: the height is all of it, the width stays the box.
    assert masking.crop_region(mask, 4, 600, 100, 0.5) == (246, 0, 354, 100)
    # Wide target: 100x20 needs only 160 wide at 8:1...
    assert masking.crop_region(mask, 0, 600, 100, 8.0) == (220, 40, 380, 60)
    # ...but 100x80 would need 640 > 600: the whole width.
    tall = one_rect(600, 100, (250, 10, 350, 90))
    assert masking.crop_region(tall, 0, 600, 100, 8.0) == (0, 10, 600, 90)


def test_crop_region_refusals() -> None:
    mask = one_rect(64, 48, (1, 1, 2, 2))
    with pytest.raises(ValueError, match="nothing is painted"):
        masking.crop_region(np.zeros((48, 64)), 0, 64, 48, 1.0)
    with pytest.raises(ValueError, match="padding"):
        masking.crop_region(mask, -1, 64, 48, 1.0)
    with pytest.raises(ValueError, match="aspect"):
        masking.crop_region(mask, 0, 64, 48, 0.0)
    with pytest.raises(ValueError, match="aspect"):
        masking.crop_region(mask, 0, 64, 48, float("nan"))
    with pytest.raises(ValueError, match="48x64"):
        masking.crop_region(mask, 0, 48, 64, 1.0)


@PROPERTY
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    data=st.data(),
    padding=st.integers(0, 80),
    aspect=st.floats(0.2, 5.0),
)
def test_crop_region_geometry(
    width: int, height: int, data: st.DataObject, padding: int, aspect: float
) -> None:
    x0 = data.draw(st.integers(0, width - 1))
    y0 = data.draw(st.integers(0, height - 1))
    box = (x0, y0, data.draw(st.integers(x0 + 1, width)), data.draw(st.integers(y0 + 1, height)))
    mask = one_rect(width, height, box)
    cx0, cy0, cx1, cy1 = masking.crop_region(mask, padding, width, height, aspect)
    # Inside the image.
    assert 0 <= cx0 < cx1 <= width and 0 <= cy0 < cy1 <= height
    # Never smaller than the padded box (clamped to the image).
    px0, py0 = max(0, box[0] - padding), max(0, box[1] - padding)
    px1, py1 = min(width, box[2] + padding), min(height, box[3] + padding)
    assert cx0 <= px0 and cy0 <= py0 and cx1 >= px1 and cy1 >= py1
    w, h = cx1 - cx0, cy1 - cy0
    # A box left as it was already has the aspect (to the nearest pixel)...
    if (w, h) == (px1 - px0, py1 - py0):
        near = abs(w - h * aspect) <= 0.5 + 1e-9 or abs(h - w / aspect) <= 0.5 + 1e-9
        full = w == width if w < h * aspect else h == height  # no room to grow
        assert near or full
    # ...otherwise one axis grows, only as far as the aspect needs (or the image allows).
    assert w == px1 - px0 or h == py1 - py0
    if w > px1 - px0:
        assert w == width or abs(w - h * aspect) <= 0.5 + 1e-9
    if h > py1 - py0:
        assert h == height or abs(h - w / aspect) <= 0.5 + 1e-9
    # The grown axis is centred on the box unless an image edge pushed it.
    if w > px1 - px0 and cx0 > 0 and cx1 < width:
        assert abs((cx0 + cx1) - (px0 + px1)) <= 1
    if h > py1 - py0 and cy0 > 0 and cy1 < height:
        assert abs((cy0 + cy1) - (py0 + py1)) <= 1


def test_paste_crop_puts_the_crop_back_and_nothing_else() -> None:
    rng = np.random.default_rng(5)
    base = Image.fromarray(noise(rng, (100, 120, 4)))
    crop = Image.new("RGB", (64, 64), (9, 99, 199))  # processed at 64x64, region is 40x30
    region = (10, 20, 50, 50)
    out = np.asarray(masking.paste_crop(base, crop, region))
    before = np.asarray(base)
    assert out.shape == before.shape
    inside = np.zeros((100, 120), bool)
    inside[20:50, 10:50] = True
    assert np.array_equal(out[~inside], before[~inside])
    assert np.all(out[inside][:, :3] == [9, 99, 199])
    assert np.array_equal(out[..., 3], before[..., 3])
    with pytest.raises(ValueError, match="region"):
        masking.paste_crop(base, crop, (100, 0, 130, 10))


# --- extend_canvas ---------------------------------------------------------------------------


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["RGB", "RGBA", "L"]),
    sides=st.tuples(*[st.sampled_from([0, 1, 8, 16, 64])] * 4),
    with_mask=st.booleans(),
)
def test_extend_canvas_keeps_the_source_and_masks_the_new_area(
    seed: int, mode: str, sides: tuple[int, int, int, int], with_mask: bool
) -> None:
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    source = noise(rng, shape)
    user = noise(rng, (h, w)) if with_mask else None
    left, top, right, bottom = sides
    canvas, mask = masking.extend_canvas(
        Image.fromarray(source), None if user is None else Image.fromarray(user), sides
    )
    assert canvas.mode == mode and mask.mode == "L"
    assert canvas.size == mask.size == (w + left + right, h + top + bottom)
    out = np.asarray(canvas)
    assert np.array_equal(out[top : top + h, left : left + w], source)
    mask_values = np.asarray(mask)
    new_area = np.ones(mask_values.shape, bool)
    new_area[top : top + h, left : left + w] = False
    assert np.all(mask_values[new_area] == 255)
    expected = user if user is not None else np.zeros((h, w), np.uint8)
    assert np.array_equal(mask_values[top : top + h, left : left + w], expected)
    if new_area.any():
        # The fill mixes source colours only: never outside their range, so never black.
        colour = out if mode == "L" else out[..., :3]
        src = source if mode == "L" else source[..., :3]
        assert colour[new_area].min() >= src.min() and colour[new_area].max() <= src.max()
        if mode == "RGBA":
            assert np.all(out[..., 3][new_area] == 255)


def test_repeated_outpaints_do_not_drift_darker() -> None:
    rng = np.random.default_rng(11)
    source = noise(rng, (96, 96, 3), 150, 220)
    edge_mean = np.concatenate([source[:, -1], source[:, 0], source[0], source[-1]]).mean(axis=0)
    image = Image.fromarray(source)
    for _ in range(5):  # each result is the next source, as "Use as new source" does
        image, mask = masking.extend_canvas(image, None, (64, 64, 64, 64))
        values = np.asarray(image)
        new = np.asarray(mask) == 255
        assert np.all(np.abs(values[new].mean(axis=0) - edge_mean) < 4)
        assert values[new].min() >= 150
    assert image.size == (96 + 5 * 128, 96 + 5 * 128)


def test_extend_canvas_refusals_and_no_outpaint() -> None:
    image = Image.new("RGB", (16, 8), (1, 2, 3))
    with pytest.raises(ValueError, match="outpaint"):
        masking.extend_canvas(image, None, (0, -8, 0, 0))
    with pytest.raises(ValueError, match="mask: 8x16"):
        masking.extend_canvas(image, Image.new("L", (8, 16)), (8, 0, 0, 0))
    canvas, mask = masking.extend_canvas(image, None, (0, 0, 0, 0))
    assert canvas.tobytes() == image.tobytes() and not np.asarray(mask).any()


# --- fill_masked -----------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["RGB", "RGBA", "L"]))
def test_fill_masked_changes_nothing_outside_the_mask(
    data: st.DataObject, seed: int, mode: str
) -> None:
    rng = np.random.default_rng(seed)
    shape = (31, 23) if mode == "L" else (31, 23, len(mode))
    source = noise(rng, shape)
    mask = data.draw(float_masks(31, 23))
    out = np.asarray(masking.fill_masked(Image.fromarray(source), mask))
    assert out.shape == source.shape
    assert np.array_equal(out[mask == 0], source[mask == 0])
    if mode == "RGBA":
        assert np.array_equal(out[..., 3], source[..., 3])


def test_fill_masked_takes_the_surrounding_colours() -> None:
    source = np.zeros((120, 160, 3), np.uint8)
    source[:, :80] = (200, 40, 40)
    source[:, 80:] = (40, 40, 200)
    source[40:80, 40:120] = 0  # what the hole hides must not show
    mask = np.zeros((120, 160), np.float32)
    mask[40:80, 40:120] = 1.0
    out = np.asarray(masking.fill_masked(Image.fromarray(source), mask)).astype(int)
    hole = out[40:80, 40:120]
    assert hole.sum(axis=-1).min() >= 200  # the hidden black is gone
    assert np.all(hole[:, :5, 0] > hole[:, :5, 2] + 80)  # red next to the red side
    assert np.all(hole[:, -5:, 2] > hole[:, -5:, 0] + 80)  # blue next to the blue side


def test_fill_masked_uniform_surroundings_and_soft_pixels() -> None:
    source = np.full((64, 64, 3), (90, 140, 30), np.uint8)
    source[20:40, 20:40] = 255
    mask = np.zeros((64, 64), np.float32)
    mask[20:40, 20:40] = 1.0
    mask[10, 10] = 0.5
    source[10, 10] = (0, 0, 0)
    out = np.asarray(masking.fill_masked(Image.fromarray(source), mask)).astype(int)
    assert np.all(np.abs(out[20:40, 20:40] - (90, 140, 30)) <= 1)
    assert np.all(np.abs(out[10, 10] - np.array([45, 70, 15])) <= 2)  # half fill, half original


def test_fill_masked_with_everything_masked_is_the_mean_colour() -> None:
    source = np.zeros((10, 20, 3), np.uint8)
    source[:, 10:] = 200
    out = np.asarray(masking.fill_masked(Image.fromarray(source), np.ones((10, 20), np.float32)))
    assert np.all(np.abs(out.astype(int) - 100) <= 1)


# --- match_colour ----------------------------------------------------------------------------


def seam_case(offset: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    original = noise(rng, (80, 100, 3), 60, 190)
    generated = (original.astype(int) + offset).astype(np.uint8)
    mask = np.zeros((80, 100), np.float32)
    mask[20:60, 30:70] = 1.0
    mask[19, 30:70] = 0.3  # a soft edge is inside the mask, not part of the ring
    return original, generated, mask


def test_match_colour_removes_a_constant_shift_at_the_seam() -> None:
    original, generated, mask = seam_case((12, -15, 7))
    ring = chebyshev_dilate(mask > 0, 6) & (mask == 0)
    before = np.abs(generated[ring].astype(int) - original[ring]).mean(axis=0)
    assert np.all(before >= 7)
    matched = masking.match_colour(generated, original, mask, 6)
    assert matched.dtype == np.uint8 and matched.shape == generated.shape
    assert np.abs(matched[ring].astype(int) - original[ring]).max() <= 1
    assert np.abs(matched[mask == 1].astype(int) - original[mask == 1]).max() <= 1


def test_match_colour_measures_only_the_ring_outside_the_mask() -> None:
    original, generated, mask = seam_case((10, 10, 10))
    generated = generated.copy()
    generated[mask > 0] = 0  # whatever the model made inside does not count
    far = ~chebyshev_dilate(mask > 0, 4)
    generated[far] = 255  # nor does anything beyond the band
    matched = masking.match_colour(generated.astype(np.float32), original, mask, 4)
    assert matched.dtype == np.float32
    ring = chebyshev_dilate(mask > 0, 4) & (mask == 0)
    assert np.abs(matched[ring] - original[ring]).max() < 1e-3
    assert np.all(matched[mask == 1] == 0.0)  # shifted by -10 and clipped at 0


def test_match_colour_without_a_ring_changes_nothing() -> None:
    original, generated, _ = seam_case((5, 5, 5))
    for mask in (np.zeros((80, 100), np.float32), np.ones((80, 100), np.float32)):
        assert np.array_equal(masking.match_colour(generated, original, mask, 8), generated)
    with pytest.raises(ValueError, match="band"):
        masking.match_colour(generated, original, np.zeros((80, 100)), 0)
    with pytest.raises(ValueError, match="size"):
        masking.match_colour(generated, original[:10], np.zeros((80, 100)), 4)
