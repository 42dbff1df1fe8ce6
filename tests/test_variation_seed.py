"""A1111's variation seed and Seed resize from on the engine: strength 0 is the plain seed bit
for bit, strength 1 is the variation seed's image, in between a blend; resizing keeps the
seed's noise centred."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ldstudio.core.backend import ImageResult
from ldstudio.core.jobs import CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def engine() -> Any:
    from ldstudio.engine.backend import DiffusersBackend

    backend = DiffusersBackend(device="cpu")
    yield backend
    backend.close()


def image(engine: Any, params: GenerationParams) -> np.ndarray:
    events = engine.execute(Request.txt2img(params).resolved(), CancelToken())
    [result] = [e for e in events if isinstance(e, ImageResult)]
    assert result.params.replace(width=None, height=None) == params.replace(
        batch_size=1, batch_count=1
    )  # recorded as run
    return np.asarray(result.image)


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M"])
def test_strength_0_is_the_seed_and_1_is_the_variation_seed(
    engine: Any, tiny_model: Path, sampler: str
) -> None:
    base = GenerationParams(
        prompt="a red circle", model=str(tiny_model), steps=3, seed=10, scheduler=sampler
    )
    plain = image(engine, base)
    other = image(engine, base.replace(seed=99))
    assert np.array_equal(image(engine, base.replace(variation_seed=99)), plain)
    zero = base.replace(variation_seed=99, variation_strength=0.0)
    assert np.array_equal(image(engine, zero), plain)
    one = base.replace(variation_seed=99, variation_strength=1.0)
    assert np.array_equal(image(engine, one), other)
    half = image(engine, base.replace(variation_seed=99, variation_strength=0.5))
    assert not np.array_equal(half, plain) and not np.array_equal(half, other)


def test_slerp_keeps_the_norm_and_the_ends() -> None:
    from ldstudio.engine.noise import seed_noise, slerp

    a, b = seed_noise(1, 16, 16), seed_noise(2, 16, 16)
    assert torch.equal(slerp(0.0, a, b), a) and torch.equal(slerp(1.0, a, b), b)
    mid = slerp(0.5, a, b)
    assert abs(float(mid.norm()) - float(a.norm())) / float(a.norm()) < 0.05


def test_seed_resize_from_centres_the_smaller_noise() -> None:
    from ldstudio.engine.noise import resized_seed_noise, seed_noise

    small = seed_noise(5, 8, 8)
    big = resized_seed_noise(5, 12, 10, (8, 8))
    assert torch.equal(big[..., 1:9, 2:10], small)  # centred: (12-8)/2, (10-8)/2
    crop = resized_seed_noise(5, 4, 4, (8, 8))
    assert torch.equal(crop, small[..., 2:6, 2:6])


def test_variation_counts_up_with_the_image_in_a_batch(engine: Any, tiny_model: Path) -> None:
    from ldstudio.engine.noise import seed_noise, txt2img_noise

    params = GenerationParams(
        prompt="x", seed=10, batch_size=2, variation_seed=50, variation_strength=1.0
    )
    noise = txt2img_noise(params, 2, 8, 8)
    assert noise is not None
    assert torch.equal(noise[0:1], seed_noise(52, 8, 8))
    assert torch.equal(noise[1:2], seed_noise(53, 8, 8))
    assert txt2img_noise(params.replace(variation_strength=0.0), 0, 8, 8) is None


def test_an_ancestral_sampler_keeps_the_seeds_step_noise(engine: Any, tiny_model: Path) -> None:
    """Euler a draws fresh noise each step from the seed's generator: a subtle variation
    changes only the start, so it stays close to the seed's image."""
    base = GenerationParams(prompt="a red circle", model=str(tiny_model), steps=4, seed=10)
    plain = image(engine, base).astype(int)
    subtle = image(engine, base.replace(variation_seed=99, variation_strength=0.05)).astype(int)
    strong = image(engine, base.replace(seed=99)).astype(int)
    assert np.abs(subtle - plain).mean() < np.abs(strong - plain).mean() / 2


# -- canvas jobs (img2img, inpaint, outpaint, a refine) ----------------------------------------


def test_a_canvas_jobs_start_noise_is_slerped_towards_the_variation_seeds() -> None:
    from ldstudio.engine.inpaint import _noise, _varied
    from ldstudio.engine.noise import slerp

    base = GenerationParams(prompt="x", seed=5, variation_seed=40, variation_strength=0.0)
    for canvas in (True, False):
        own = _noise([5, 6], (16, 8), 8, 8, canvas)
        other = _noise([40, 41], (16, 8), 8, 8, canvas)  # counts up with the image
        assert torch.equal(_varied(own, base, 0, (16, 8), 8, 8, canvas), own)
        one = base.replace(variation_strength=1.0)
        assert torch.equal(_varied(own, one, 0, (16, 8), 8, 8, canvas), other)
        half = _varied(own, base.replace(variation_strength=0.5), 0, (16, 8), 8, 8, canvas)
        assert torch.allclose(half[1:], slerp(0.5, own[1:], other[1:]))


def test_img2img_takes_a_variation_seed_and_refuses_seed_resize_from(
    tiny_model: Path,
) -> None:
    import hashlib
    import io

    from PIL import Image

    from ldstudio.core.inpaint import InpaintSettings
    from ldstudio.engine.backend import DiffusersBackend

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buffer, "PNG")
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()

    class Blobs:
        def get(self, wanted: str) -> bytes:
            assert wanted == digest
            return buffer.getvalue()

    backend = DiffusersBackend(device="cpu", blobs=Blobs())
    base = GenerationParams(prompt="a red circle", model=str(tiny_model), steps=3, seed=10)

    def made(params: GenerationParams) -> np.ndarray:
        request = Request.inpainting(params, InpaintSettings(strength=0.8), digest).resolved()
        events = backend.execute(request, CancelToken())
        [result] = [e for e in events if isinstance(e, ImageResult)]
        assert result.params.variation_seed == params.variation_seed  # recorded as run
        return np.asarray(result.image)

    try:
        plain = made(base)
        assert np.array_equal(made(base.replace(variation_seed=99)), plain)  # strength 0
        varied = made(base.replace(variation_seed=99, variation_strength=0.5))
        assert not np.array_equal(varied, plain)
        again = made(base.replace(variation_seed=99, variation_strength=0.5))
        assert np.array_equal(varied, again)
    finally:
        backend.close()
    resized = base.replace(seed_resize_from=(128, 128))
    with pytest.raises(ValueError, match="seed_resize_from: only txt2img"):
        Request.inpainting(resized, InpaintSettings(), digest).validate()
