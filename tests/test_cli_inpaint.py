"""`ldstudio generate --init-image`: every bad value refused up front (exit 2, a message naming
it and what is allowed), and real runs on the tiny model whose images read back into the very
request that made them, with the source and mask in the library's blob store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.library.blobs import BlobStore
from ldstudio.core.metadata import read_request
from ldstudio.core.request import KIND_INPAINT


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one-line message of a generate run that must exit 2 before any model loads."""
    code, out, err = run(capsys, "generate", "a cat", "--steps", "1", *argv)
    assert code == EXIT_BAD_INPUT, err
    assert err.startswith("ldstudio generate: error: ") and err.count("\n") == 1, err
    assert out == "" and "loading" not in err
    return err.removeprefix("ldstudio generate: error: ").rstrip("\n")


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    made = {
        "source": Image.new("RGB", (64, 64), (200, 40, 40)),
        "black": Image.new("L", (64, 64), 0),
        "white": Image.new("L", (64, 64), 255),
        "small": Image.new("L", (48, 64), 255),
        "tiny": Image.new("RGB", (32, 32), "red"),
    }
    paths = {}
    for name, image in made.items():
        paths[name] = folder / f"{name}.png"
        image.save(paths[name])
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    paths["mask"] = folder / "mask.png"
    mask.save(paths["mask"])
    paths["text"] = folder / "notes.png"
    paths["text"].write_text("not an image")
    return paths


def test_inpaint_options_need_an_init_image(capsys: pytest.CaptureFixture[str], images) -> None:
    for option in (
        ["--mask", str(images["mask"])],
        ["--strength", "0.5"],
        ["--outpaint", "8,0,0,0"],
        ["--invert-mask"],
        ["--inpaint-area", "whole"],
    ):
        assert refused(capsys, *option) == (
            f"{option[0]}: only with --init-image IMG (img2img, inpaint and outpaint start "
            "from an image)"
        )


def test_bad_values_are_named_with_what_is_allowed(
    capsys: pytest.CaptureFixture[str], images
) -> None:
    src = ["--init-image", str(images["source"])]
    mask = [*src, "--mask", str(images["mask"])]
    cases = {
        ("--strength", "1.5"): "--strength: 1.5 is out of range; allowed: 0 to 1, or auto",
        ("--strength", "-0.1"): "--strength: -0.1 is out of range; allowed: 0 to 1, or auto",
        ("--strength", "nan"): "--strength: nan is out of range; allowed: 0 to 1, or auto",
        ("--strength", "lots"): "--strength: 'lots' is not a number; allowed: 0 to 1, or auto",
        ("--outpaint", "8,8"): "--outpaint: '8,8' is not four whole numbers; allowed: "
        "LEFT,TOP,RIGHT,BOTTOM in pixels, multiples of 8 from 0 to 2048, e.g. 128,0,128,0",
        ("--outpaint", "0,12,0,0"): "--outpaint top: 12 is not allowed; allowed: multiples of 8 "
        "from 0 to 2048 pixels",
        ("--outpaint", "0,0,4096,0"): "--outpaint right: 4096 is not allowed; allowed: "
        "multiples of 8 from 0 to 2048 pixels",
        ("--outpaint", "0,0,0,-8"): "--outpaint bottom: -8 is not allowed; allowed: multiples "
        "of 8 from 0 to 2048 pixels",
    }
    for option, message in cases.items():
        assert refused(capsys, *src, *option) == message
    masked = {
        ("--mask-blur", "65"): "--mask-blur: 65 is out of range; allowed: 0 to 64",
        ("--mask-blur", "soft"): "--mask-blur: 'soft' is not a whole number; allowed: 0 to 64",
        ("--inpaint-area", "all"): "--inpaint-area: 'all' is not supported; allowed: whole, masked",
        ("--masked-content", "latent_noise"): "--masked-content: 'latent_noise' is not "
        "supported; allowed: original, fill, latent-noise, latent-nothing",
        ("--inpaint-area", "masked", "--mask-padding", "300"): "--mask-padding: 300 is out of "
        "range; allowed: 0 to 256",
    }
    for option, message in masked.items():
        assert refused(capsys, *mask, *option) == message


def test_mask_options_without_a_mask_are_refused_not_ignored(
    capsys: pytest.CaptureFixture[str], images
) -> None:
    src = ["--init-image", str(images["source"])]
    for option, flag in (
        (["--mask-blur", "8"], "--mask-blur"),
        (["--masked-content", "fill"], "--masked-content"),
        (["--no-soft-inpaint"], "--no-soft-inpaint"),
        (["--inpaint-area", "masked"], "--inpaint-area masked"),
    ):
        assert refused(capsys, *src, *option) == (
            f"{flag}: only with --mask MASK.png or --outpaint; without them the whole image is "
            "repainted (img2img)"
        )
    assert refused(capsys, *src, "--invert-mask") == (
        "--invert-mask: only with --mask MASK.png (it inverts that mask)"
    )
    assert refused(capsys, *src, "--mask", str(images["mask"]), "--mask-padding", "8") == (
        "--mask-padding: only with --inpaint-area masked (the padding of its crop)"
    )


def test_unreadable_mismatched_and_empty_images_are_refused(
    capsys: pytest.CaptureFixture[str], images, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.png"
    assert refused(capsys, "--init-image", str(missing)) == f"--init-image: {missing}: no such file"
    text = images["text"]
    assert refused(capsys, "--init-image", str(text)) == (
        f"--init-image: {text}: not a readable image (cannot identify image file '{text}'); "
        "allowed: PNG, JPEG, WebP or another image file Pillow reads"
    )
    assert refused(capsys, "--init-image", str(tmp_path)) == (
        f"--init-image: {tmp_path}: a folder, not a regular file"
    )
    src = ["--init-image", str(images["source"])]
    assert refused(capsys, *src, "--mask", str(images["small"])) == (
        f"--mask: {images['small']} is 48x64 but --init-image {images['source']} is 64x64; "
        "allowed: a mask of the image's size"
    )
    assert refused(capsys, *src, "--mask", str(images["black"])) == (
        f"--mask: {images['black']} marks nothing to repaint (it is black, or opaque, "
        "everywhere); allowed: white (or transparent) where to repaint"
    )
    assert refused(capsys, *src, "--mask", str(images["white"]), "--invert-mask") == (
        f"--mask: {images['white']} with --invert-mask marks nothing to repaint (the mask is "
        "white everywhere); allowed: black where to repaint when inverted"
    )
    assert refused(capsys, "--init-image", str(images["tiny"])) == (
        f"--init-image: {images['tiny']} is 32x32, and the whole picture runs at that size; "
        "allowed: 64 to 4096 pixels a side. Give --size WxH to run at another size, or "
        "--inpaint-area masked with --mask"
    )


def test_too_large_images_are_refused_before_decoding(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    wide = tmp_path / "wide.png"
    Image.new("L", (8200, 8), 0).save(wide)
    assert refused(capsys, "--init-image", str(wide)) == (
        f"--init-image: {wide} is 8200x8; allowed: at most 8192 pixels a side"
    )
    big = tmp_path / "big.png"
    Image.new("RGB", (4096, 64)).save(big)
    assert refused(capsys, "--init-image", str(big), "--outpaint", "8,0,0,0") == (
        f"--init-image: {big} is 4096x64 (4104x64 with --outpaint 8,0,0,0), and the whole "
        "picture runs at that size; allowed: 64 to 4096 pixels a side. Give --size WxH to run "
        "at another size, or --inpaint-area masked with --mask"
    )


def test_a_refused_run_stores_no_blobs(
    capsys: pytest.CaptureFixture[str], images, ldstudio_home: Path
) -> None:
    refused(capsys, "--init-image", str(images["source"]), "--strength", "2")
    assert not (ldstudio_home / "library" / "blobs").exists()


# --- real runs on the tiny model -------------------------------------------------------------


def test_inpaint_run_reads_back_into_its_request(
    capsys: pytest.CaptureFixture[str], images, tiny_model: Path, ldstudio_home: Path
) -> None:
    out = ldstudio_home.parent / "out"
    code, stdout, err = run(
        capsys, "generate", "a green square", "--model", str(tiny_model), "--steps", "2",
        "--seed", "9", "--init-image", str(images["source"]), "--mask", str(images["mask"]),
        "--strength", "0.8", "--mask-blur", "2", "--masked-content", "latent-noise",
        "--no-soft-inpaint", "--out", str(out), "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    result = json.loads(stdout)
    assert result["status"] == "finished" and result["face"] == "inpaint"
    blobs = BlobStore(ldstudio_home / "library" / "blobs")  # the library's, also with --out
    image_sha, mask_sha = result["inputs"]["image"], result["inputs"]["mask"]
    with Image.open(blobs.path(image_sha)) as source, Image.open(blobs.path(mask_sha)) as mask:
        assert source.mode == "RGB" and source.size == (64, 64)
        assert mask.mode == "L" and mask.getpixel((20, 20)) == 255 and mask.getpixel((2, 2)) == 0
    (image,) = result["images"]
    path = Path(image["path"])
    assert path.parent == out
    request, notes = read_request(path)
    assert notes == [] and request is not None
    assert request.kind == KIND_INPAINT and request.face == "inpaint"
    assert dict(request.inputs) == {"image": image_sha, "mask": mask_sha}
    assert request.inpaint == InpaintSettings(
        strength=0.8, mask_blur=2, masked_content="latent_noise", soft=False
    )
    assert request.params.seed == 9 and request.params.prompt == "a green square"
    with Image.open(path) as made:
        assert made.size == (64, 64)
        text = made.text  # type: ignore[attr-defined]
    assert (
        "Denoising strength: 0.8, Mask blur: 2, Masked content: latent noise" in text["parameters"]
    )
    assert "inpaint of " in err


def test_img2img_and_outpaint_runs_into_the_library(
    capsys: pytest.CaptureFixture[str], images, tiny_model: Path, ldstudio_home: Path
) -> None:
    rgba = images["source"].with_name("rgba.png")
    Image.new("RGBA", (64, 64), (20, 90, 200, 255)).save(rgba)
    code, stdout, err = run(
        capsys, "generate", "sky", "--model", str(tiny_model), "--steps", "2",
        "--init-image", str(rgba), "--outpaint", "16,0,0,8", "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    result = json.loads(stdout)
    assert result["face"] == "outpaint" and list(result["inputs"]) == ["image"]
    path = Path(result["images"][0]["path"])
    assert path.is_relative_to(ldstudio_home / "library" / "images")
    with Image.open(path) as made:
        assert made.size == (80, 72)  # source plus the outpaint
    blob = BlobStore(ldstudio_home / "library" / "blobs").path(result["inputs"]["image"])
    with Image.open(blob) as source:
        assert source.mode == "RGBA"  # kept as given
    request, _notes = read_request(path)
    assert request is not None and request.inpaint is not None
    assert request.inpaint.outpaint == (16, 0, 0, 8) and request.face == "outpaint"
    # The library lists it by its face, linked to its source.
    code, stdout, err = run(capsys, "library", "list", "--json")
    assert code == EXIT_OK, err
    (listed,) = json.loads(stdout)["images"]
    assert listed["face"] == "outpaint" and listed["inputs"] == result["inputs"]
    code, stdout, err = run(capsys, "library", "list", "--face", "img2img", "--json")
    assert code == EXIT_OK and json.loads(stdout)["total"] == 0, err

    jpeg = images["source"].with_name("photo.jpg")
    Image.new("RGB", (64, 64), "yellow").save(jpeg, quality=90)
    code, stdout, err = run(
        capsys, "generate", "sun", "--model", str(tiny_model), "--steps", "2",
        "--init-image", str(jpeg), "--strength", "0.3", "--json",
    )  # fmt: skip
    assert code == EXIT_OK, err
    result = json.loads(stdout)
    assert result["face"] == "img2img"
    blob = BlobStore(ldstudio_home / "library" / "blobs").path(result["inputs"]["image"])
    assert blob.read_bytes().startswith(b"\x89PNG")  # a JPEG source is stored as PNG
    request, _notes = read_request(Path(result["images"][0]["path"]))
    assert request is not None and request.inpaint == InpaintSettings(strength=0.3)


def test_library_face_filter_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "library", "list", "--face", "collage")
    assert code == EXIT_BAD_INPUT
    assert "--face: 'collage' is not supported; allowed: txt2img, img2img, inpaint, outpaint" in err
    code, out, err = run(capsys, "library", "list", "--face", "inpaint", "--json")
    assert code == EXIT_OK, err
    assert json.loads(out)["total"] == 0
