"""A1111 `parameters` text and ldstudio's JSON chunk, written and read back (no torch, no Qt)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ldstudio import __version__
from ldstudio.core.imagefiles import write_png_atomic
from ldstudio.core.metadata import (
    a1111_parameters,
    parse_a1111_parameters,
    png_text_chunks,
    read_ldstudio_params,
)
from ldstudio.core.params import GenerationParams

PARAMS = GenerationParams(
    prompt="a red star",
    negative_prompt="blurry",
    scheduler="DPM++ 2M Karras",
    steps=25,
    guidance_scale=7.5,
    width=512,
    height=768,
    seed=965400086,
)


def test_a1111_text_matches_the_documented_format() -> None:
    assert a1111_parameters(PARAMS, "v1-5-pruned") == (
        "a red star\n"
        "Negative prompt: blurry\n"
        "Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 965400086, "
        f"Size: 512x768, Model: v1-5-pruned, Version: ldstudio {__version__}"
    )


def test_negative_line_is_omitted_when_empty_and_values_with_commas_are_quoted() -> None:
    text = a1111_parameters(PARAMS.replace(negative_prompt=""), "my, model: v2")
    assert "Negative prompt" not in text
    assert 'Model: "my, model: v2"' in text
    assert parse_a1111_parameters(text)["Model"] == "my, model: v2"


def test_parse_round_trip_with_multiline_prompts() -> None:
    params = PARAMS.replace(prompt="line one\nline two, Steps: 3", negative_prompt="a\nb")
    parsed = parse_a1111_parameters(a1111_parameters(params, "m"))
    assert parsed["prompt"] == "line one\nline two, Steps: 3"
    assert parsed["negative_prompt"] == "a\nb"
    assert parsed["Steps"] == "25" and parsed["Sampler"] == "DPM++ 2M Karras"
    assert (parsed["width"], parsed["height"]) == (512, 768)
    assert parsed["Seed"] == "965400086"


def test_last_line_with_fewer_than_three_pairs_belongs_to_the_prompt() -> None:
    parsed = parse_a1111_parameters("a cat\nstyle: oil, mood: calm")
    assert parsed["prompt"] == "a cat\nstyle: oil, mood: calm"
    assert "style" not in parsed


@pytest.mark.parametrize("text", ["", "\n\n", "Steps: , , ,", 'A: "unterminated, B: 1, C: 2'])
def test_malformed_text_does_not_crash(text: str) -> None:
    assert isinstance(parse_a1111_parameters(text), dict)


def test_png_chunks_read_back_to_equal_params(tmp_path: Path) -> None:
    params = PARAMS.replace(prompt="ünïcödé ✨ prompt\nwith two lines")
    path = tmp_path / "x.png"
    write_png_atomic(Image.new("RGB", (8, 8)), path, png_text_chunks(params, "m"))
    assert read_ldstudio_params(path) == params
    with Image.open(path) as image:
        parsed = parse_a1111_parameters(image.text["parameters"])
    assert parsed["prompt"] == params.prompt


def test_reading_an_image_without_metadata_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ValueError, match="no ldstudio metadata"):
        read_ldstudio_params(path)


def test_model_hash_is_the_models_content_hash_after_size(tmp_path: Path) -> None:
    import hashlib

    from ldstudio.core import paths
    from ldstudio.core.models import content_sha256
    from ldstudio.core.readers import read_file

    checkpoint = tmp_path / "dream.safetensors"
    checkpoint.write_bytes(b"checkpoint bytes")
    for model, expected in (
        (str(checkpoint), hashlib.sha256(b"checkpoint bytes").hexdigest()[:10]),
        ("", content_sha256(paths.bundled_model_dir())[:10]),  # the bundled diffusers folder
    ):
        params = PARAMS.replace(model=model)
        path = tmp_path / "x.png"
        write_png_atomic(Image.new("RGB", (8, 8)), path, png_text_chunks(params, "dream"))
        with Image.open(path) as image:
            text = image.text["parameters"]
        assert f"Size: 512x768, Model hash: {expected}, Model: dream, Version: " in text
        assert parse_a1111_parameters(text)["Model hash"] == expected
        result = read_file(path)  # ldstudio's reader: the JSON chunk, the text beside it
        assert result.params == params and not result.warnings
        assert result.extra["model_name"] == "dream"
        path.unlink()  # the A1111 text alone, as another tool's image would hold it
        write_png_atomic(Image.new("RGB", (8, 8)), path, {"parameters": text})
        assert read_file(path).extra["Model hash"] == expected
    gone = PARAMS.replace(model=str(tmp_path / "deleted.safetensors"))
    assert "Model hash" not in png_text_chunks(gone, "deleted")["parameters"]
    assert "Model hash" not in a1111_parameters(PARAMS, "m")  # only when given


def test_model_hash_is_computed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ldstudio.core.models import hashes

    monkeypatch.setattr(hashes, "_MEMO", {})
    reads: list[Path] = []
    real = hashes._sha256
    monkeypatch.setattr(hashes, "_sha256", lambda p, skip: reads.append(p) or real(p, skip))
    checkpoint = tmp_path / "dream.safetensors"
    checkpoint.write_bytes(b"checkpoint bytes")
    for _ in range(3):
        png_text_chunks(PARAMS.replace(model=str(checkpoint)), "dream")
    assert reads == [checkpoint]
