"""The canvas job (img2img, inpaint, outpaint) on the diffusers engine, CPU: the bundled shapes
model for what the pictures show, tiny random models for the plumbing (9-channel included)."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ldstudio.core import masking
from ldstudio.core.backend import ImageResult, JobError, StageStarted, Step
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.jobs import Cancelled, CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "resources" / "models" / "ldstudio-shapes"
sys.path.insert(0, str(ROOT))


class Blobs:
    """A BlobStore stand-in: bytes by sha256."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.data[digest] = data
        return digest

    def get(self, digest: str) -> bytes:
        if digest not in self.data:
            raise KeyError(f"blob {digest}: not in the library's blob store")
        return self.data[digest]

    def png(self, image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return self.put(buffer.getvalue())


@pytest.fixture(scope="module")
def blobs() -> Blobs:
    return Blobs()


@pytest.fixture(scope="module")
def engine(blobs: Blobs) -> Any:
    from ldstudio.engine.backend import DiffusersBackend

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    backend = DiffusersBackend(device="cpu", blobs=blobs)
    yield backend
    backend.close()


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    values = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    values[y0:y1, x0:x1] = 255
    return Image.fromarray(values, "L")


def run(engine: Any, request: Request, cancel: CancelToken | None = None) -> list[Any]:
    return list(engine.execute(request.resolved(), cancel or CancelToken()))


def results(events: list[Any]) -> list[ImageResult]:
    return [event for event in events if isinstance(event, ImageResult)]


def canvas_request(
    blobs: Blobs,
    image: Image.Image,
    mask: Image.Image | None,
    model: Path,
    steps: int = 3,
    seed: int = 11,
    prompt: str = "a red circle",
    **settings: Any,
) -> Request:
    params = GenerationParams(prompt=prompt, model=str(model), steps=steps, seed=seed)
    return Request.inpainting(
        params,
        InpaintSettings(**settings),
        blobs.png(image),
        blobs.png(mask) if mask is not None else None,
    )


@pytest.fixture(scope="module")
def inpainting_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-inpaint", in_channels=9)


# -- pixels outside the mask ------------------------------------------------------------------


def test_unmasked_pixels_are_the_source_bit_for_bit(engine, blobs, tiny_model) -> None:
    source = noise_image(72, 56)
    mask = box_mask(72, 56, (20, 10, 50, 40))
    outside = np.asarray(mask) == 0
    hard = results(run(engine, canvas_request(blobs, source, mask, tiny_model, mask_blur=0)))[0]
    out = np.asarray(hard.image)
    assert hard.image.size == source.size
    assert np.array_equal(out[outside], np.asarray(source)[outside])
    assert not np.array_equal(out[~outside], np.asarray(source)[~outside])
    # With blur, everything beyond the blur's reach is still the source's, bit for bit.
    soft = results(run(engine, canvas_request(blobs, source, mask, tiny_model, mask_blur=3)))[0]
    reach = masking.blur_reach(3)
    far = np.ones(outside.shape, bool)
    far[10 - reach : 40 + reach, 20 - reach : 50 + reach] = False
    assert np.array_equal(np.asarray(soft.image)[far], np.asarray(source)[far])


def test_result_records_the_concrete_request(engine, blobs, tiny_model) -> None:
    source, mask = noise_image(64, 64), box_mask(64, 64, (8, 8, 24, 24))
    request = canvas_request(blobs, source, mask, tiny_model, seed="random")
    events = run(engine, request)
    started = next(e for e in events if isinstance(e, StageStarted))
    assert started.name == "inpaint" and started.total_steps == 2  # int(3 × 0.75)
    result = results(events)[0]
    assert isinstance(result.params.seed, int) and result.params.batch_size == 1
    assert result.request is not None and result.request.inpaint is not None
    assert result.request.inpaint.strength == 0.75  # auto on a 4-channel model
    assert result.request.params == result.params
    assert result.request.inputs == request.inputs


def test_strength_zero_returns_the_input(engine, blobs, tiny_model) -> None:
    source = noise_image(40, 48)
    events = run(engine, canvas_request(blobs, source, None, tiny_model, strength=0.0))
    assert not any(isinstance(e, Step) for e in events)
    (result,) = results(events)
    assert result.image.tobytes() == source.tobytes() and result.request.inpaint.strength == 0.0


def test_missing_and_damaged_blobs_are_refused_by_name(engine, blobs, tiny_model) -> None:
    request = canvas_request(blobs, noise_image(32, 32), None, tiny_model)
    missing = Request.inpainting(request.params, InpaintSettings(), "ab" * 32)
    with pytest.raises(JobError, match="source image abababababab cannot be read"):
        run(engine, missing)
    damaged = Request.inpainting(request.params, InpaintSettings(), blobs.put(b"not a png"))
    with pytest.raises(JobError, match="damaged or not an image"):
        run(engine, damaged)
    wrong = canvas_request(blobs, noise_image(32, 32), box_mask(16, 16, (0, 0, 8, 8)), tiny_model)
    with pytest.raises(JobError, match="16×16 is not the source image's size 32×32"):
        run(engine, wrong)


# -- outpaint and canvas noise ------------------------------------------------------------------


def test_outpaint_keeps_the_source_and_its_noise(engine, blobs, tiny_model, monkeypatch) -> None:
    from ldstudio.engine import inpaint

    drawn: list[Any] = []
    original = inpaint._noise

    def recording(*args: Any) -> Any:
        drawn.append(original(*args))
        return drawn[-1]

    monkeypatch.setattr(inpaint, "_noise", recording)
    source = noise_image(80, 64)
    plain = canvas_request(blobs, source, None, tiny_model, strength=1.0)
    results(run(engine, plain))
    wider = canvas_request(blobs, source, None, tiny_model, outpaint=(64, 0, 16, 8), mask_blur=2)
    (result,) = results(run(engine, wider))
    assert result.image.size == (80 + 64 + 16, 64 + 8)
    # The old region (latents 8..18 of the wider job) starts from the same noise.
    assert torch.equal(drawn[1][..., :8, 8:18], drawn[0])
    # The source's pixels beyond the blur's reach of the new area are kept exactly.
    reach = masking.blur_reach(2)
    out = np.asarray(result.image)[reach : 64 - reach, 64 + reach : 144 - reach]
    assert np.array_equal(out, np.asarray(source)[reach : 64 - reach, reach : 80 - reach])


# -- only masked ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box",
    [(0, 0, 10, 10), (190, 0, 200, 10), (0, 140, 10, 150), (190, 140, 200, 150), (95, 0, 105, 6)],
    ids=["top-left", "top-right", "bottom-left", "bottom-right", "top-edge"],
)
def test_only_masked_crop_stays_inside_and_keeps_the_aspect(box) -> None:
    from ldstudio.engine.inpaint import plan

    source, mask = noise_image(200, 150), box_mask(200, 150, box)
    settings = InpaintSettings(inpaint_area="masked", mask_padding=16, mask_blur=2)
    job = plan(source, mask, settings, None, None, native=64)
    x0, y0, x1, y1 = job.region
    assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 150
    rows, cols = np.flatnonzero(job.mask.any(axis=1)), np.flatnonzero(job.mask.any(axis=0))
    assert box[0] >= cols[0] and box[2] <= cols[-1] + 1  # the blurred mask holds the box
    # The blurred mask and the padding are inside, clamped at the image's edges.
    assert x0 <= max(0, cols[0] - 16) and x1 >= min(200, cols[-1] + 1 + 16)
    assert y0 <= max(0, rows[0] - 16) and y1 >= min(150, rows[-1] + 1 + 16)
    assert job.size[0] % 8 == 0 and job.size[1] % 8 == 0
    assert abs((x1 - x0) / (y1 - y0) - job.size[0] / job.size[1]) < 0.05
    assert job.size[0] * job.size[1] <= 2 * 64 * 64  # the model's native area, not the image's


def test_only_masked_at_a_corner_runs_and_pastes_back(engine, blobs, tiny_model) -> None:
    source, mask = noise_image(160, 120), box_mask(160, 120, (150, 110, 160, 120))
    request = canvas_request(
        blobs, source, mask, tiny_model, inpaint_area="masked", mask_blur=0, mask_padding=8
    )
    (result,) = results(run(engine, request))
    outside = np.asarray(mask) == 0
    assert result.image.size == source.size
    assert np.array_equal(np.asarray(result.image)[outside], np.asarray(source)[outside])
    assert (result.params.width, result.params.height) == (64, 64)  # native, square crop


def test_masked_contents_run(engine, blobs, tiny_model) -> None:
    source, mask = noise_image(48, 48), box_mask(48, 48, (8, 8, 40, 40))
    outside = np.asarray(mask) == 0
    images = []
    for content in ("original", "fill", "latent_noise", "latent_nothing"):
        request = canvas_request(
            blobs, source, mask, tiny_model, masked_content=content, mask_blur=0, strength=0.5
        )
        (result,) = results(run(engine, request))
        assert np.array_equal(np.asarray(result.image)[outside], np.asarray(source)[outside])
        images.append(np.asarray(result.image))
    # Each start gives another picture inside the mask.
    assert len({image.tobytes() for image in images}) == 4


# -- what the pictures show (bundled model, scored by the evaluator) ---------------------------


@pytest.mark.skipif(not (BUNDLED / "model_index.json").exists(), reason="no bundled model")
def test_img2img_low_strength_stays_and_full_strength_follows_the_prompt(engine, blobs) -> None:
    from training import shapes
    from training.evaluator import classify, load_evaluator

    scene = shapes.Scene(
        shape=shapes.SHAPES.index("circle"),
        color=shapes.COLOR_NAMES.index("red"),
        background=shapes.COLOR_NAMES.index("blue"),
        size=shapes.SIZES.index("large"),
        position=shapes.POSITIONS.index("center"),
    )
    source = Image.fromarray(shapes.render(scene, np.random.default_rng(0)))
    # The shapes model follows its prompt so hard that a contradicting one repaints the
    # picture even at strength 0.2 (diffusers' own img2img does the same): low strength is
    # tried with the source's own description, strength 1 with a new one.
    same = "a large red circle in the center on a blue background"
    prompt = "a large yellow square in the center on a green background"
    low, full = [], []
    for seed in (1, 2, 3):
        for strength, text, into in ((0.2, same, low), (1.0, prompt, full)):
            request = canvas_request(
                blobs, source, None, BUNDLED, steps=20, seed=seed, prompt=text, strength=strength
            )
            into.append(np.asarray(results(run(engine, request))[0].image))
    src = np.asarray(source).astype(int)
    assert max(np.abs(image.astype(int) - src).mean() for image in low) < 8
    evaluator = load_evaluator()
    kept = classify(evaluator, np.stack(low))
    assert (kept["shape"] == scene.shape).all() and (kept["color"] == scene.color).all()
    followed = classify(evaluator, np.stack(full))
    asked = {
        "shape": shapes.SHAPES.index("square"),
        "color": shapes.COLOR_NAMES.index("yellow"),
        "background": shapes.COLOR_NAMES.index("green"),
    }
    right = sum(int((followed[a] == v).sum()) for a, v in asked.items())
    assert right >= 8  # of 9 (3 images × 3 named attributes); the source's are none of them


# -- cancel, previews ------------------------------------------------------------------------


def test_cancel_mid_job_ends_with_cancelled_and_no_image(engine, blobs, tiny_model) -> None:
    cancel = CancelToken()
    request = canvas_request(blobs, noise_image(48, 48), None, tiny_model, steps=8, strength=1.0)
    seen: list[Any] = []
    with pytest.raises(Cancelled):
        for event in engine.execute(request.resolved(), cancel):
            seen.append(event)
            if isinstance(event, Step) and event.step == 2:
                cancel.cancel()
    assert not results(seen) and max(e.step for e in seen if isinstance(e, Step)) < 8


def test_previews_are_of_the_composited_x0(engine, blobs, tiny_model) -> None:
    source, mask = noise_image(64, 48), box_mask(64, 48, (0, 0, 32, 48))
    request = canvas_request(blobs, source, mask, tiny_model, steps=4, strength=1.0, mask_blur=0)
    request = Request.inpainting(
        request.params.replace(preview_method="latent2rgb", preview_interval=1),
        request.inpaint or InpaintSettings(),
        *[digest for _role, digest in sorted(request.inputs)],
    )
    steps = [e for e in run(engine, request) if isinstance(e, Step)]
    assert [s.step for s in steps] == [1, 2, 3, 4]
    frames = [s.preview for s in steps]
    assert all(f is not None and f.shape == (6, 8, 3) for f in frames)
    # The kept half is the source's latents at every step: the same preview pixels there.
    assert all(np.array_equal(f[:, 5:], frames[0][:, 5:]) for f in frames if f is not None)


# -- the soft mask ---------------------------------------------------------------------------


def test_soft_inpaint_thresholds_follow_the_steps() -> None:
    from ldstudio.engine.callbacks import SoftInpaint

    mask = torch.tensor([[[[0.0, 0.3, 0.6, 1.0]]]])
    soft = SoftInpaint(mask, torch.zeros(1, 4, 1, 4), torch.zeros(1, 4, 1, 4), soft=True)
    freed = [soft.keep(i, 10)[0, 0, 0].tolist() for i in range(10)]
    assert freed[0] == [False, False, False, True]
    assert freed[4] == [False, False, True, True]  # threshold 0.5
    assert freed[9] == [False, True, True, True]  # the last step frees every masked latent
    hard = SoftInpaint(mask, torch.zeros(1, 4, 1, 4), torch.zeros(1, 4, 1, 4), soft=False)
    assert hard.keep(0, 10)[0, 0, 0].tolist() == [False, False, True, True]


def test_soft_mask_repaints_less_where_it_is_light(engine, blobs, tiny_model) -> None:
    source = noise_image(64, 64)
    grey = Image.fromarray(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1)), "L")
    kwargs = dict(steps=6, strength=1.0, mask_blur=0)
    soft = results(run(engine, canvas_request(blobs, source, grey, tiny_model, **kwargs)))[0]
    change = np.abs(np.asarray(soft.image).astype(int) - np.asarray(source).astype(int))
    light, strong = change[:, 8:24].mean(), change[:, 40:56].mean()
    assert light < strong


# -- the pipeline and the models ----------------------------------------------------------------


def test_inpaint_pipeline_shares_the_weights(engine, blobs, tiny_model) -> None:
    from ldstudio.engine.pipelines import task_pipeline

    results(run(engine, canvas_request(blobs, noise_image(32, 32), None, tiny_model)))
    loaded = engine._cache.loaded
    pipe = task_pipeline(loaded, "inpaint")
    assert pipe is loaded.tasks["inpaint"]
    for name in ("unet", "vae", "text_encoder", "tokenizer"):
        assert getattr(pipe, name) is getattr(loaded.pipe, name)
    assert "prepare_latents" not in vars(pipe)  # our stand-in is gone after the call


def test_txt2img_noise_is_diffusers_own_for_the_seed(engine, tiny_model) -> None:
    """Canvas noise is for canvas jobs only: txt2img keeps seed → noise, hence its pixels."""
    from ldstudio.engine.schedulers import build_scheduler

    params = GenerationParams(prompt="a red circle", model=str(tiny_model), steps=3, seed=42)
    (ours,) = results(run(engine, Request.txt2img(params)))
    loaded = engine._cache.loaded
    pipe = loaded.pipe
    pipe.scheduler = build_scheduler(params.scheduler, loaded.base_scheduler_config, [42])
    direct = engine.on_torch_thread(
        lambda: pipe(
            prompt="a red circle",
            num_inference_steps=3,
            guidance_scale=params.guidance_scale,
            width=64,
            height=64,
            generator=[torch.Generator("cpu").manual_seed(42)],
            output_type="pil",
        ).images[0]
    )
    assert ours.image.tobytes() == direct.tobytes()


def test_nine_channel_model_is_detected_and_runs(engine, blobs, inpainting_model) -> None:
    source, mask = noise_image(48, 40), box_mask(48, 40, (8, 8, 32, 32))
    events = run(engine, canvas_request(blobs, source, mask, inpainting_model, mask_blur=0))
    loaded = engine._cache.loaded
    assert loaded.inpainting and loaded.pipe.unet.config.in_channels == 9
    (result,) = results(events)
    assert result.request.inpaint.strength == 1.0  # auto on an inpainting model
    outside = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(result.image)[outside], np.asarray(source)[outside])
    # txt2img on it: a fully masked inpaint of a blank image, recorded as txt2img.
    params = GenerationParams(prompt="a cat", model=str(inpainting_model), steps=2, seed=3)
    (image,) = results(run(engine, Request.txt2img(params)))
    assert image.image.size == (64, 64) and image.request == Request.txt2img(image.params)


def test_nine_channel_single_file_loads_with_its_unet(tmp_path) -> None:
    from diffusers import UNet2DConditionModel
    from models_support import build_tiny_pipeline, save_single_file, to_original_layout

    from ldstudio.core.models import detect
    from ldstudio.core.models.safetensors import checked_header
    from ldstudio.engine.checkpoints import load_single_file

    config = tmp_path / "config"
    pipe = build_tiny_pipeline("sd1", config)  # its config folder says 4 channels, as ours
    pipe.unet = UNet2DConditionModel.from_config(pipe.unet.config, in_channels=9)
    path = save_single_file(to_original_layout(pipe, "sd1"), tmp_path / "inpaint.safetensors")
    found = detect(checked_header(path))
    assert (found.status, found.family, found.inpainting) == ("ok", "sd1", True)
    loaded = load_single_file(path, torch.float32, "sd1", config_dir=config, bpe_dir=config / "bpe")
    assert loaded.unet.config.in_channels == 9
    assert torch.equal(loaded.unet.conv_in.weight, pipe.unet.conv_in.weight)


# -- the fake backend ------------------------------------------------------------------------


def test_fake_backend_runs_canvas_requests(blobs, tiny_model) -> None:
    from ldstudio.engine.fake import FakeBackend

    source, mask = noise_image(50, 30), box_mask(50, 30, (10, 5, 20, 15))
    request = canvas_request(blobs, source, mask, tiny_model, mask_blur=0, outpaint=(8, 0, 0, 0))
    events = list(FakeBackend(blobs=blobs).execute(request.resolved(), CancelToken()))
    (result,) = results(events)
    assert result.image.size == (58, 30)
    assert np.array_equal(np.asarray(result.image)[20:, 8:], np.asarray(source)[20:])
    assert result.request.inpaint.strength == 0.75
    with pytest.raises(JobError, match="no blob store"):
        list(FakeBackend().execute(request.resolved(), CancelToken()))
