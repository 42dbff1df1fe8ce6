"""The versioned request and its portable form: references (name + sha256), never paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from ldstudio.core import models, request
from ldstudio.core.imagefiles import write_png_atomic
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.metadata import LDSTUDIO_KEY, png_text_chunks, read_ldstudio_params
from ldstudio.core.models.hashes import file_sha256
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import read_file
from ldstudio.core.request import (
    Request,
    from_portable,
    params_from_chunk,
    request_from_chunk,
    to_portable,
)

SHA = "ab" * 32


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "far away" / "models"
    (folder / "tiny-sd" / "unet").mkdir(parents=True)
    (folder / "tiny-sd" / "model_index.json").write_text("{}")
    (folder / "tiny-sd" / "unet" / "config.json").write_text('{"a": 1}')
    made = {"model": folder / "tiny-sd", "vae": folder / "sharp.safetensors"}
    # Enough of a VAE for the scanner to call it one.
    tensors = {
        k: np.zeros(2, np.float16) for k in ("encoder.conv_in.weight", "decoder.conv_out.weight")
    }
    save_file(tensors, str(made["vae"]))
    made["lora"] = folder / "ink style.safetensors"
    made["lora"].write_bytes(b"lora bytes")
    return made


def params_for(files: dict[str, Path]) -> GenerationParams:
    return GenerationParams(
        prompt="a cat",
        seed=5,
        model=str(files["model"]),
        vae=str(files["vae"]),
        loras=((str(files["lora"]), 0.5),),
    )


def test_the_portable_form_holds_no_path_and_reads_back_to_the_same_files(
    files: dict[str, Path], tmp_path: Path
) -> None:
    params = params_for(files)
    text = json.dumps(to_portable(Request.txt2img(params)))
    assert str(tmp_path) not in text and "far away" not in text
    data = json.loads(text)
    assert (data["format"], data["version"], data["kind"]) == ("ldstudio-request", 2, "txt2img")
    assert data["params"]["model"] == "tiny-sd"
    assert data["params"]["loras"] == [["ink style", 0.5]]
    assert data["vae"] == {
        "kind": "vae",
        "name": "sharp",
        "sha256": file_sha256(files["vae"]),
    }
    back, missing = from_portable(data)
    assert back.params == params and missing == []


def test_a_renamed_copy_in_the_model_folders_is_found_by_its_hash(
    files: dict[str, Path], tmp_path: Path
) -> None:
    data = to_portable(Request.txt2img(params_for(files)))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    renamed = moved / "sharp-v2.safetensors"
    shutil.copy(files["vae"], renamed)
    files["vae"].unlink()
    store = models.ModelFolderStore.load()
    store.folders.append(str(moved))
    store.save()
    params, missing = params_from_chunk(json.dumps(data))
    assert Path(params.vae) == renamed and missing == []


def test_what_is_not_here_keeps_its_name_and_is_said(files: dict[str, Path]) -> None:
    data = to_portable(Request.txt2img(params_for(files)))
    files["lora"].unlink()
    params, missing = params_from_chunk(json.dumps(data))
    assert params.loras == (("ink style", 0.5),)
    assert missing == [
        f"LoRA 'ink style' (sha256 {data['loras'][0]['sha256'][:10]}) is not in your model folders"
    ]


def test_a_file_gone_before_saving_is_named_without_a_hash(tmp_path: Path) -> None:
    params = GenerationParams(prompt="x", seed=1, vae=str(tmp_path / "gone.safetensors"))
    data = to_portable(Request.txt2img(params))
    assert data["vae"] == {"kind": "vae", "name": "gone", "sha256": ""}


def test_images_written_before_references_still_read(tmp_path: Path) -> None:
    params = GenerationParams(
        prompt="old", seed=3, width=64, height=64, vae="/home/u/v.safetensors"
    )
    path = tmp_path / "old.png"
    write_png_atomic(Image.new("RGB", (8, 8)), path, {LDSTUDIO_KEY: params.to_json()})
    assert read_ldstudio_params(path) == params


def test_png_chunks_carry_no_absolute_path(files: dict[str, Path], tmp_path: Path) -> None:
    params = params_for(files).replace(width=64, height=64)
    path = tmp_path / "made.png"
    write_png_atomic(Image.new("RGB", (8, 8)), path, png_text_chunks(params, "tiny-sd"))
    with Image.open(path) as image:
        chunks = dict(image.text)
    assert all(str(tmp_path) not in value for value in chunks.values())
    result = read_file(path)
    assert result.params == params and not result.warnings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=3), r"version 3 is not supported; allowed: 2 to 2"),
        (lambda d: d.update(params=[]), r"params: expected a JSON object"),
        (lambda d: d.update(loras=[]), r"the LoRA list and its references do not match"),
        (lambda d: d["vae"].update(kind="lora"), r"VAE: a lora reference; allowed: vae"),
        (lambda d: d["vae"].update(sha256="xyz"), r"sha256: 'xyz' is not allowed"),
        (lambda d: d.update(kind="paint"), r"kind: 'paint' is not supported"),
    ],
)
def test_damaged_portable_requests_are_refused_by_name(files, change, message) -> None:
    data = to_portable(Request.txt2img(params_for(files)))
    change(data)
    with pytest.raises(ValueError, match=message):
        from_portable(data)


def test_a_hostile_request_cannot_ask_for_millions_of_lookups() -> None:
    data = {
        "format": "ldstudio-request",
        "version": 2,
        "kind": "txt2img",
        "params": {"prompt": "x", "loras": [["a", 1.0]] * 300},
        "loras": [{"kind": "lora", "name": "a", "sha256": SHA}] * 300,
    }
    with pytest.raises(ValueError, match=r"300 LoRAs; allowed: at most 256"):
        from_portable(data)


def test_requests_are_validated_by_kind_and_inputs() -> None:
    params = GenerationParams(prompt="x")
    assert Request.txt2img(params).validate().kind == "txt2img"
    with pytest.raises(ValueError, match=r"inputs: txt2img takes none; got image"):
        Request(params, inputs=(("image", SHA),)).validate()
    resolved = Request.txt2img(params).resolved()
    assert isinstance(resolved.params.seed, int)


def test_inpaint_requests_have_three_faces_and_are_checked() -> None:
    params = GenerationParams(prompt="x", seed=3)
    img2img = Request.inpainting(params, InpaintSettings(strength=0.4), SHA)
    assert img2img.validate().face == "img2img" and img2img.input("mask") is None
    masked = Request.inpainting(params, InpaintSettings(), SHA, "cd" * 32)
    assert masked.validate().face == "inpaint" and masked.input("mask") == "cd" * 32
    wider = Request.inpainting(params, InpaintSettings(outpaint=(64, 0, 0, 8)), SHA)
    assert wider.validate().face == "outpaint"
    with pytest.raises(
        ValueError, match=r"inputs: inpaint takes image, mask \(optional\); got mask"
    ):
        Request(
            params, kind="inpaint", inputs=(("mask", SHA),), inpaint=InpaintSettings()
        ).validate()
    with pytest.raises(ValueError, match="an inpaint request needs its inpaint settings"):
        Request(params, kind="inpaint", inputs=(("image", SHA),)).validate()
    with pytest.raises(ValueError, match="settings given for a txt2img request"):
        Request(params, inpaint=InpaintSettings()).validate()
    with pytest.raises(
        ValueError, match=r"outpaint left: 12 is not allowed; allowed: multiples of 8"
    ):
        Request.inpainting(params, InpaintSettings(outpaint=(12, 0, 0, 0)), SHA).validate()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strength": 1.5}, "strength: 1.5 is out of range; allowed: 0 to 1"),
        ({"mask_blur": -1}, "mask_blur: -1 is out of range; allowed: 0 to 64"),
        ({"inpaint_area": "all"}, "inpaint_area: 'all' is not supported; allowed: whole, masked"),
        ({"masked_content": "x"}, "masked_content: 'x' is not supported; allowed: original, fill"),
        ({"mask_padding": 1.5}, "mask_padding: 1.5 is not an integer; allowed: 0 to 256"),
        ({"outpaint": (8, 8)}, "outpaint: (8, 8) is not four amounts"),
        ({"invert_mask": "yes"}, "invert_mask: 'yes' is not true or false"),
    ],
)
def test_inpaint_settings_refuse_bad_values_by_name(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        InpaintSettings().replace(**change).validate()
    assert str(caught.value).startswith(message)


def test_an_inpaint_request_round_trips_through_its_portable_form() -> None:
    settings = InpaintSettings(
        strength=None, mask_blur=8, inpaint_area="masked", outpaint=(0, 64, 0, 0)
    )
    sent = Request.inpainting(GenerationParams(prompt="x", seed=5), settings, SHA, "cd" * 32)
    data = json.loads(json.dumps(to_portable(sent)))
    assert data["inpaint"]["outpaint"] == [0, 64, 0, 0] and data["inputs"]["mask"] == "cd" * 32
    back, missing = from_portable(data)
    assert back == sent and missing == []
    chunk, _ = request_from_chunk(json.dumps(data))
    assert chunk == sent
    # A txt2img request's chunk says so, and bare params (version 1) read as txt2img.
    assert to_portable(Request.txt2img(sent.params))["inpaint"] is None
    old, _ = request_from_chunk(sent.params.to_json())
    assert old == Request.txt2img(sent.params)


def test_reference_kinds_are_the_model_scanners() -> None:
    assert (
        request.KIND_CHECKPOINT,
        request.KIND_DIFFUSERS,
        request.KIND_VAE,
        request.KIND_LORA,
    ) == (
        models.KIND_CHECKPOINT,
        models.KIND_DIFFUSERS,
        models.KIND_VAE,
        models.KIND_LORA,
    )
