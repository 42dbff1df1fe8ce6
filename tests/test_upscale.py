"""Upscaling any image: the settings and tile geometry (pure), the upscaler networks and their
tiled inference, the engine's upscale job (model passes, resamplers, the tiled refine) and the
request's round trip through JSON and the portable form."""

from __future__ import annotations

import hashlib
import io
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ldstudio.core.backend import ImageResult, StageStarted, Step
from ldstudio.core.events import EngineNotice, ModelLoading
from ldstudio.core.jobs import CancelToken
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import KIND_UPSCALE, ROLE_IMAGE, Request, from_portable, to_portable
from ldstudio.core.upscale import UpscaleSettings, feather, tile_grid

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHA = "a" * 64


# -- settings and geometry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scale": 3}, "upscale scale: 3 is not allowed; allowed: 2, 4"),
        ({"refine_strength": 1.5}, "refine strength: 1.5 is not allowed; allowed: 0 (no refine)"),
        ({"tile": 500}, "tile: 500 is not allowed; allowed: multiples of 8 from 128 to 2048"),
        ({"tile": 256, "overlap": 72}, "overlap: 72 is not allowed; allowed: multiples of 8 from"),
        ({"overlap": -8}, "overlap: -8 is not allowed"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        UpscaleSettings(**changes).validate()
    assert str(caught.value).startswith(message)


def test_output_larger_than_allowed_is_refused_with_the_largest_source() -> None:
    problem = UpscaleSettings(scale=4).size_problem(2100, 100)
    assert problem is not None and "8400×400" in problem and "at most 2048 px a side" in problem
    assert UpscaleSettings(scale=4).size_problem(2048, 2048) is None


@pytest.mark.parametrize(
    ("size", "tile", "overlap"), [(4096, 512, 64), (300, 128, 32), (97, 128, 32)]
)
def test_tiles_cover_the_image_and_overlap_at_least_as_asked(
    size: int, tile: int, overlap: int
) -> None:
    tiles = tile_grid(size, size // 2 + 1, tile, overlap)
    covered = np.zeros((size // 2 + 1, size), bool)
    for t in tiles:
        assert t.width <= tile and t.height <= tile
        covered[t.y0 : t.y1, t.x0 : t.x1] = True
    assert covered.all()
    xs = sorted({(t.x0, t.x1) for t in tiles})
    for (_a0, a1), (b0, _b1) in itertools.pairwise(xs):
        assert a1 - b0 >= overlap  # neighbours share at least the overlap
    assert all(t.x0 % 8 == 0 for t in tiles if t.x1 != size)  # latent-aligned starts


def test_feather_ramps_only_towards_neighbours_and_never_reaches_zero() -> None:
    inner = feather(128, 64, 64)
    assert min(inner) > 0 and inner[64] == 1.0
    assert max(inner[:16]) < 0.01  # the outer quarter of the overlap: the neighbour's
    assert feather(128, 0, 64)[:64] == [1.0] * 64  # the image border: no ramp
    # Two neighbours overlapping by the ramp add up to one across it.
    left, right = feather(128, 0, 64), feather(128, 64, 0)
    assert max(abs(left[64 + i] + right[i] - 1.0) for i in range(64)) < 2e-3


# -- the request ------------------------------------------------------------------------------


def upscale_request(settings: UpscaleSettings, image: str = SHA, **params: Any) -> Request:
    return Request.upscaling(GenerationParams(prompt="a red circle", **params), settings, image)


def test_upscale_request_round_trips_and_is_checked() -> None:
    request = upscale_request(UpscaleSettings(scale=4, upscaler="lanczos", refine_strength=0.2))
    assert request.validate().face == "upscale" and request.input(ROLE_IMAGE) == SHA
    assert Request.from_dict(request.to_dict()) == request
    with pytest.raises(ValueError, match="upscale: an upscale request needs its upscale settings"):
        Request(params=request.params, kind=KIND_UPSCALE, inputs=request.inputs).validate()
    with pytest.raises(ValueError, match="upscale: settings given for a txt2img request"):
        Request(params=request.params, upscale=UpscaleSettings()).validate()
    with pytest.raises(ValueError, match="inputs: upscale takes image; got none"):
        Request(params=request.params, kind=KIND_UPSCALE, upscale=UpscaleSettings()).validate()
    batch = request.params.replace(batch_size=2)
    with pytest.raises(ValueError, match="batch: an upscale makes one image"):
        Request(batch, KIND_UPSCALE, request.inputs, upscale=UpscaleSettings()).validate()


class _Resources:
    """A registry stand-in: files by name, hashed by their bytes."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def reference(self, path: Path, kind: str) -> Any:
        from ldstudio.core.models.refs import ResourceRef

        return ResourceRef(kind, path.stem, hashlib.sha256(path.read_bytes()).hexdigest())

    def resolve(self, ref: Any) -> Path | None:
        return self.files.get(ref.name)


def test_portable_form_names_the_upscaler_model_by_name_and_hash(tmp_path: Path) -> None:
    model = tmp_path / "4x-test.safetensors"
    model.write_bytes(b"weights")
    request = upscale_request(UpscaleSettings(scale=4, upscaler=str(model)))
    portable = to_portable(request, _Resources({}))
    assert portable["upscale"]["upscaler"] == "4x-test"  # no local path travels
    assert portable["upscaler"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    elsewhere = tmp_path / "other" / "4x-test.safetensors"
    back, missing = from_portable(portable, _Resources({"4x-test": elsewhere}))
    assert back.upscale is not None and back.upscale.upscaler == str(elsewhere) and not missing
    back, missing = from_portable(portable, _Resources({}))
    assert back.upscale is not None and back.upscale.upscaler == "4x-test"
    assert missing and "upscaler '4x-test'" in missing[0]
    # The bundled upscaler and the resamplers need no reference.
    for name in ("", "bicubic"):
        plain = to_portable(upscale_request(UpscaleSettings(upscaler=name)), _Resources({}))
        assert plain["upscaler"] is None and plain["upscale"]["upscaler"] == name


# -- networks and tiled inference -------------------------------------------------------------


def save_compact(path: Path, scale: int, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    from ldstudio.engine.upscalers.compact import Compact

    torch.manual_seed(seed)
    save_file(Compact(3, 3, 8, 2, scale).state_dict(), str(path))
    return path


def test_tiled_inference_matches_a_whole_image_pass(tmp_path: Path) -> None:
    from ldstudio.engine.upscalers.loader import load_upscaler
    from ldstudio.engine.upscalers.tiling import upscale_array

    upscaler = load_upscaler(save_compact(tmp_path / "x2.safetensors", 2))
    pixels = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    whole = upscale_array(upscaler, pixels, tile=1024)
    calls: list[tuple[int, int]] = []
    tiled = upscale_array(upscaler, pixels, lambda d, n: calls.append((d, n)), tile=32)
    assert whole.shape == (140, 180, 3)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1  # seamless tiles
    assert calls == [(i, 9) for i in range(1, 10)]


def test_esrgan_in_the_basicsr_layout_loads_as_the_old_layout(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from ldstudio.engine.upscalers.loader import load_upscaler
    from ldstudio.engine.upscalers.rrdb import RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(3, 3, 8, 1, ups=1)
    old = net.state_dict()
    renames = {
        "model.0.": "conv_first.",
        "model.1.sub.1.": "conv_body.",
        "model.3.": "conv_up1.",
        "model.5.": "conv_hr.",
        "model.7.": "conv_last.",
    }
    new = {}
    for key, value in old.items():
        renamed = key
        if key.startswith("model.1.sub.0.RDB"):
            rdb, conv = key.split(".")[4], key.split(".")[5]
            renamed = f"body.0.rdb{rdb[-1]}.{conv}.{key.split('.')[-1]}"
        for prefix, target in renames.items():
            if key.startswith(prefix):
                renamed = target + key[len(prefix) :]
        new[renamed] = value
    save_file(old, str(tmp_path / "old.safetensors"))
    save_file(new, str(tmp_path / "new.safetensors"))
    a, b = (load_upscaler(tmp_path / f"{n}.safetensors") for n in ("old", "new"))
    assert a.layout == b.layout and a.scale == 2
    x = torch.rand(1, 3, 12, 10)
    assert torch.equal(a.run(x), b.run(x))


def test_pickle_upscaler_is_refused_before_reading(tmp_path: Path) -> None:
    from ldstudio.core.backend import JobError
    from ldstudio.engine.upscalers.loader import load_upscaler

    evil = tmp_path / "4x.pth"
    evil.write_bytes(b"not read")
    with pytest.raises(JobError, match="ldstudio models convert"):
        load_upscaler(evil)


# -- the engine job ---------------------------------------------------------------------------


class Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, digest: str) -> bytes:
        return self.data[digest]

    def png(self, image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        digest = hashlib.sha256(buffer.getvalue()).hexdigest()
        self.data[digest] = buffer.getvalue()
        return digest


@pytest.fixture(scope="module")
def blobs() -> Blobs:
    return Blobs()


@pytest.fixture(scope="module")
def engine(blobs: Blobs) -> Any:
    from ldstudio.engine.backend import DiffusersBackend

    backend = DiffusersBackend(device="cpu", blobs=blobs)
    yield backend
    backend.close()


def source_image(width: int = 40, height: int = 24) -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def run(engine: Any, request: Request) -> list[Any]:
    return list(engine.execute(request.resolved(), CancelToken()))


def test_resampler_upscale_is_pillow_exactly_and_loads_no_model(engine: Any, blobs: Blobs) -> None:
    image = source_image()
    request = upscale_request(UpscaleSettings(4, "lanczos", 0.0), blobs.png(image))
    events = run(engine, request)
    [result] = [e for e in events if isinstance(e, ImageResult)]
    expected = image.resize((160, 96), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    assert not [e for e in events if isinstance(e, ModelLoading)]
    assert result.request is not None and result.request.kind == KIND_UPSCALE
    assert result.request.input(ROLE_IMAGE) == request.input(ROLE_IMAGE)
    assert result.request.params.width is None and result.params.width == 160


def test_a_x2_model_runs_twice_for_x4_and_a_x4_model_is_resized_for_x2(
    engine: Any, blobs: Blobs, tmp_path: Path
) -> None:
    image = source_image()
    digest = blobs.png(image)
    x2 = save_compact(tmp_path / "two.safetensors", 2)
    events = run(engine, upscale_request(UpscaleSettings(4, str(x2), 0.0), digest))
    [result] = [e for e in events if isinstance(e, ImageResult)]
    assert result.image.size == (160, 96)
    steps = [e for e in events if isinstance(e, Step)]
    [stage] = [e for e in events if isinstance(e, StageStarted)]
    assert [s.step for s in steps] == [1, 2] and stage.total_steps == 2 == steps[-1].total
    x4 = save_compact(tmp_path / "four.safetensors", 4)
    events = run(engine, upscale_request(UpscaleSettings(2, str(x4), 0.0), digest))
    [result] = [e for e in events if isinstance(e, ImageResult)]
    assert result.image.size == (80, 48)
    [notice] = [e for e in events if isinstance(e, EngineNotice)]
    assert "four (Compact ×4) makes 160×96; resized to 80×48 (×2) with Lanczos" in notice.message


def test_transparency_is_kept(engine: Any, blobs: Blobs) -> None:
    image = source_image().convert("RGBA")
    image.putalpha(Image.new("L", image.size, 90))
    events = run(engine, upscale_request(UpscaleSettings(2, "bicubic", 0.0), blobs.png(image)))
    [result] = [e for e in events if isinstance(e, ImageResult)]
    assert result.image.mode == "RGBA" and result.image.getchannel("A").getextrema() == (90, 90)


def test_tiled_refine_runs_every_tile_and_reports_one_progress(
    engine: Any, blobs: Blobs, tiny_model: Path
) -> None:
    image = source_image(96, 64)
    settings = UpscaleSettings(2, "lanczos", 0.5, tile=128, overlap=32)
    request = upscale_request(settings, blobs.png(image), model=str(tiny_model), steps=4)
    events = run(engine, request)
    [result] = [e for e in events if isinstance(e, ImageResult)]
    assert result.image.size == (192, 128)
    stages = [(e.index, e.count, e.name) for e in events if isinstance(e, StageStarted)]
    assert stages == [(0, 2, "upscale"), (1, 2, "refine, 2 tiles of 128 px")]
    refine = [e for e in events if isinstance(e, Step) and e.stage == 1]
    assert [s.step for s in refine] == [1, 2, 3, 4] and {s.total for s in refine} == {4}
    # The refine changed the pixels (it is not the upscaler's result), within the image.
    plain = np.asarray(image.resize((192, 128), Image.Resampling.LANCZOS), np.float32)
    assert np.abs(np.asarray(result.image, np.float32) - plain).mean() > 1.0
    assert result.request is not None and result.request.upscale == settings
    assert result.model_name == "tiny-sd"


def test_refine_is_the_same_image_for_the_same_seed(
    engine: Any, blobs: Blobs, tiny_model: Path
) -> None:
    digest = blobs.png(source_image(64, 64))
    settings = UpscaleSettings(2, "lanczos", 0.5, tile=128, overlap=32)
    made = []
    for _ in range(2):
        request = upscale_request(settings, digest, model=str(tiny_model), steps=2, seed=11)
        [result] = [e for e in run(engine, request) if isinstance(e, ImageResult)]
        made.append(np.asarray(result.image))
    assert np.array_equal(made[0], made[1])


# -- the hires fix with an upscaler model -----------------------------------------------------


def test_hires_fix_with_an_upscaler_model(engine: Any, tiny_model: Path, tmp_path: Path) -> None:
    from ldstudio.core.hires import HiresSettings

    x2 = save_compact(tmp_path / "2x-hires.safetensors", 2)
    params = GenerationParams(prompt="a red circle", model=str(tiny_model), steps=2, seed=4)
    request = Request.txt2img(params, HiresSettings(scale=2.0, upscaler=str(x2), steps=1))
    events = run(engine, request)
    [result] = [e for e in events if isinstance(e, ImageResult)]
    native = result.params.width
    assert native is not None and result.image.size == (2 * native, 2 * native)
    assert result.request is not None and result.request.hires is not None
    assert result.request.hires.upscaler == str(x2)
    assert result.request.hires.strength == 0.5  # an image upscaler's default
    # The portable form names the model by name and hash; A1111's key gets its name.
    portable = to_portable(result.request, _Resources({}))
    assert portable["hires"]["upscaler"] == "2x-hires" and portable["hires_upscaler"]["sha256"]
    back, missing = from_portable(portable, _Resources({"2x-hires": x2}))
    assert back.hires is not None and back.hires.upscaler == str(x2)
    assert not [m for m in missing if "upscaler" in m]  # (the stand-in knows no tiny-sd)
    from ldstudio.core.metadata import hires_pairs

    assert hires_pairs(result.request)["Hires upscaler"] == "2x-hires"


def test_refine_keeps_the_sources_tone_and_adds_only_detail(
    engine: Any, blobs: Blobs, tiny_model: Path
) -> None:
    # Tiles refined apart drift in tone; each keeps the source's low frequencies instead, so
    # the result's low-pass is the upscaled source's wherever the tiles blend.
    from PIL import ImageFilter

    from ldstudio.core.upscale import low_pass_radius

    image = source_image(96, 64)
    settings = UpscaleSettings(2, "lanczos", 0.6, tile=128, overlap=32)
    request = upscale_request(settings, blobs.png(image), model=str(tiny_model), steps=4)
    [result] = [e for e in run(engine, request) if isinstance(e, ImageResult)]
    plain = image.resize((192, 128), Image.Resampling.LANCZOS)
    blur = ImageFilter.GaussianBlur(low_pass_radius(settings.overlap))

    def low(picture: Image.Image) -> np.ndarray:
        return np.asarray(picture.filter(blur), np.float32)

    made, source = np.asarray(result.image, np.float32), np.asarray(plain, np.float32)
    assert np.abs(made - source).mean() > 1.0  # the refine painted detail
    assert np.abs(low(result.image) - low(plain)).mean() < 0.25 * np.abs(made - source).mean()
    assert abs(float(made.mean()) - float(source.mean())) < 1.0
