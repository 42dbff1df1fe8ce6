"""The hires fix's settings, request and metadata (A1111's keys both ways), and the CLI's
checks; no model runs here except one CLI job on the bundled model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK
from ldstudio.core.hires import HiresSettings
from ldstudio.core.metadata import a1111_parameters, png_text_chunks
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import parse_a1111_text, read_file, unapplied_values
from ldstudio.core.request import Request, request_from_chunk

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "resources" / "models" / "ldstudio-shapes"
PARAMS = GenerationParams(prompt="a red circle", steps=20, seed=7, width=64, height=64)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scale": 0.5}, "hires scale: 0.5 is not allowed; allowed: 1 to 4"),
        ({"scale": float("nan")}, "hires scale: nan is not allowed"),
        ({"width": 512}, "hires size: give both width and height"),
        ({"width": 100, "height": 64}, "hires width: 100 is not allowed; allowed: multiples of 8"),
        (
            {"upscaler": " "},
            "hires upscaler: ' ' is not available; allowed: lanczos, latent or an upscaler "
            "model's name",
        ),
        ({"strength": 0.0}, "hires strength: 0.0 is not allowed; allowed: above 0 up to 1"),
        ({"strength": 1.5}, "hires strength: 1.5 is not allowed"),
        ({"steps": -1}, "hires steps: -1 is not allowed; allowed: 0 (as many as the first pass)"),
        ({"steps": True}, "hires steps: True is not allowed"),
    ],
)
def test_bad_settings_name_the_value_and_what_is_allowed(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        HiresSettings(**changes).validate()
    assert str(caught.value).startswith(message)


def test_sizes_strengths_and_hints() -> None:
    assert HiresSettings().target_size(64, 64) == (128, 128)
    assert HiresSettings(scale=1.5).target_size(512, 768) == (768, 1152)
    assert HiresSettings(scale=1.3).target_size(100, 60) == (128, 80)  # nearest multiple of 8
    assert HiresSettings(width=1024, height=576).target_size(64, 64) == (1024, 576)
    assert HiresSettings().resolved_strength() == 0.5
    assert HiresSettings(upscaler="latent").resolved_strength() == 0.6
    assert HiresSettings(strength=0.3).resolved_strength() == 0.3
    assert HiresSettings().steps_for(20) == 20 and HiresSettings(steps=8).steps_for(20) == 8
    assert HiresSettings().hint() is None
    assert HiresSettings(upscaler="latent", strength=0.55).hint() is None
    assert "blurry" in (HiresSettings(upscaler="latent", strength=0.4).hint() or "")
    assert HiresSettings(scale=4).size_problem(2048, 512) == (
        "hires scale 4: 2048x512 becomes 8192x2048; allowed: 64 to 4096 pixels a side"
    )


def test_a_request_with_a_hires_fix_round_trips() -> None:
    hires = HiresSettings(scale=1.5, upscaler="latent", strength=0.7, steps=12)
    request = Request.txt2img(PARAMS, hires).validate()
    assert Request.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    chunk = png_text_chunks(PARAMS, "ldstudio-shapes", request)["ldstudio"]
    back, missing = request_from_chunk(chunk)
    assert back.hires == hires and back.kind == "txt2img" and missing == []
    # Images made before the hires fix read back as plain txt2img.
    assert Request.from_dict(Request.txt2img(PARAMS).to_dict()).hires is None


def test_a_hires_fix_is_only_for_txt2img() -> None:
    from ldstudio.core.inpaint import InpaintSettings

    inpaint = Request.inpainting(PARAMS, InpaintSettings(), "0" * 64)
    with pytest.raises(ValueError, match="hires: a hires fix is for txt2img requests, not inpaint"):
        Request(**{**inpaint.__dict__, "hires": HiresSettings()}).validate()


def test_a1111_keys_are_written_as_a1111_writes_them() -> None:
    scaled = Request.txt2img(PARAMS, HiresSettings(strength=0.45, steps=10))
    line = a1111_parameters(PARAMS, "m", "", scaled).splitlines()[-1]
    assert "Size: 64x64" in line  # the first pass's size, as A1111 records it
    assert (
        "Denoising strength: 0.45, Hires upscale: 2, Hires steps: 10, Hires upscaler: Lanczos"
        in line
    )
    resized = Request.txt2img(PARAMS, HiresSettings(width=1024, height=512, upscaler="latent"))
    line = a1111_parameters(PARAMS, "m", "", resized).splitlines()[-1]
    assert "Denoising strength: 0.6, Hires resize: 1024x512, Hires upscaler: Latent" in line
    assert "Hires steps" not in line and "Hires upscale:" not in line
    assert "Hires" not in a1111_parameters(PARAMS, "m", "", Request.txt2img(PARAMS))


def test_an_a1111_hires_image_reuses_as_a_hires_fix() -> None:
    text = (
        "a castle\nNegative prompt: blurry\nSteps: 25, Sampler: DPM++ 2M Karras, CFG scale: 6, "
        "Seed: 99, Size: 512x512, Model: sd15, Denoising strength: 0.55, Hires upscale: 1.5, "
        "Hires steps: 15, Hires upscaler: Latent"
    )
    result = parse_a1111_text(text)
    assert result.request is not None and result.request.kind == "txt2img"
    assert result.face == "txt2img" and result.inpaint is None
    assert result.request.hires == HiresSettings(
        scale=1.5, upscaler="latent", strength=0.55, steps=15
    )
    assert unapplied_values(result) == []  # every hires key was applied
    resized = parse_a1111_text(text.replace("Hires upscale: 1.5", "Hires resize: 1024x768"))
    assert resized.request is not None and resized.request.hires is not None
    assert (resized.request.hires.width, resized.request.hires.height) == (1024, 768)


def test_an_upscaler_ldstudio_lacks_is_named_not_dropped() -> None:
    text = (
        "a castle\nSteps: 25, Sampler: Euler a, CFG scale: 6, Seed: 99, Size: 512x512, "
        "Denoising strength: 0.3, Hires upscale: 2, Hires upscaler: R-ESRGAN 4x+"
    )
    result = parse_a1111_text(text)
    assert result.request is not None and result.request.hires is not None
    assert result.request.hires.upscaler == "lanczos"
    assert result.request.hires.strength == 0.3
    assert "Hires upscaler: 'R-ESRGAN 4x+' is not available in ldstudio; lanczos is used" in (
        result.warnings
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hires-steps", "5"], "--hires-steps: only with --hires-scale F or --hires-size WxH"),
        (["--hires-scale", "2", "--hires-size", "128x128"], "give one of them, not both"),
        (["--hires-scale", "x"], "--hires-scale: 'x' is not a number"),
        (["--hires-scale", "5"], "--hires-scale: 5.0 is not allowed; allowed: 1 to 4"),
        (["--hires-size", "100x64"], "--hires-size width: 100 is not allowed"),
        (["--hires-size", "big"], "--hires-size: 'big' is not WxH"),
        (
            ["--hires-scale", "2", "--hires-upscaler", "ESRGAN"],
            "--hires-upscaler: 'ESRGAN' is neither an existing path nor a known model name",
        ),
        (["--hires-scale", "2", "--hires-strength", "0"], "--hires-strength: 0.0 is not allowed"),
        (["--size", "4096x64", "--hires-scale", "2"], "--hires-scale 2: 4096x64 becomes 8192x128"),
    ],
)
def test_the_cli_refuses_bad_hires_options_before_loading(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["generate", "a red circle", *argv, "--out", str(tmp_path / "out")])
    assert code == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_cli_refuses_a_hires_fix_on_an_init_image(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    Image.new("RGB", (64, 64)).save(tmp_path / "src.png")
    code = main(["generate", "x", "--init-image", str(tmp_path / "src.png"), "--hires-scale", "2"])
    assert code == EXIT_BAD_INPUT
    assert "--hires-scale: a hires fix is a second pass of a txt2img job" in capsys.readouterr().err


@pytest.mark.skipif(not (BUNDLED / "model_index.json").exists(), reason="no bundled model")
def test_the_cli_makes_a_hires_image_on_the_bundled_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = ["generate", "a large red circle in the center on a blue background", "--seed", "4"]
    argv += ["--steps", "8", "--hires-scale", "2", "--hires-upscaler", "latent", "--json"]
    assert main([*argv, "--out", str(out)]) == EXIT_OK
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["hires"]["upscaler"] == "latent" and payload["hires"]["strength"] == 0.6
    [record] = payload["images"]
    assert (record["width"], record["height"]) == (128, 128)
    assert "pass 2 of 2: hires fix, 8 steps" in captured.err
    read = read_file(Path(record["path"]))
    assert read.request is not None and read.request.hires is not None
    assert read.params is not None and (read.params.width, read.params.steps) == (64, 8)
    assert main(["info", record["path"]]) == EXIT_OK
    assert "hires fix: ×2 (128x128) latent, strength 0.6, 8 steps" in capsys.readouterr().out
