"""Save as / export to PNG, JPEG and WebP, with metadata kept (readable back) or stripped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from library_support import COMFY_PROMPT, ldstudio_png, png_with_text, tool_images
from PIL import Image

from ldstudio.core.export import export_image, export_to_folder, format_for
from ldstudio.core.readers import EXIF_IFD, USER_COMMENT, UnreadableImage, read_file


def test_png_keeps_every_text_chunk(tmp_path: Path) -> None:
    source = ldstudio_png(tmp_path / "src.png", prompt="ünïcode prompt", seed=11)
    target = export_image(source, tmp_path / "out" / "copy.png")
    result = read_file(target)
    assert result.source == "ldstudio"
    assert result.params == read_file(source).params
    with Image.open(target) as image:
        assert set(image.text) == {"parameters", "ldstudio"}


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_jpeg_and_webp_keep_a1111_text_in_exif(tmp_path: Path, suffix: str) -> None:
    source = ldstudio_png(tmp_path / "src.png", prompt="a fox\nsecond line", seed=12)
    target = export_image(source, tmp_path / f"out{suffix}", quality=90)
    with Image.open(target) as image:
        assert image.format == ("JPEG" if suffix == ".jpg" else "WEBP")
        raw = image.getexif().get_ifd(EXIF_IFD)[USER_COMMENT]
    assert raw.startswith(b"UNICODE\0")  # A1111's (piexif's) encoding
    result = read_file(target)
    assert result.source == "a1111"
    assert result.fields["prompt"] == "a fox\nsecond line"
    assert result.fields["negative_prompt"] == "blurry"
    assert result.fields["seed"] == 12
    assert result.fields["scheduler"] == "Euler a"
    assert (result.fields["width"], result.fields["height"]) == (64, 64)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_strip_metadata_leaves_nothing_to_read(tmp_path: Path, suffix: str) -> None:
    source = ldstudio_png(tmp_path / "src.png", prompt="a private prompt")
    target = export_image(source, tmp_path / f"clean{suffix}", keep_metadata=False)
    assert not read_file(target).found
    data = target.read_bytes()
    assert b"private" not in data and b"p\0r\0i\0v" not in data
    with Image.open(target) as image:
        assert not image.getexif()
        assert not getattr(image, "text", {})


def test_comfyui_png_to_jpeg_rebuilds_parameters_text(tmp_path: Path) -> None:
    source = png_with_text(tmp_path / "comfy.png", {"prompt": json.dumps(COMFY_PROMPT)})
    result = read_file(export_image(source, tmp_path / "comfy.jpg"))
    assert result.fields["prompt"] == "a castle on a hill"
    assert result.fields["seed"] == 42
    assert result.fields["scheduler"] == "DPM++ 2M Karras"


def test_jpeg_back_to_png_keeps_parameters(tmp_path: Path) -> None:
    jpeg = export_image(ldstudio_png(tmp_path / "src.png", seed=99), tmp_path / "a.jpg")
    png = export_image(jpeg, tmp_path / "b.png")
    with Image.open(png) as image:
        assert "Seed: 99" in image.text["parameters"]
    assert read_file(png).fields["seed"] == 99


def test_transparent_png_to_jpeg_is_flattened_on_white(tmp_path: Path) -> None:
    source = tmp_path / "alpha.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(source)
    target = export_image(source, tmp_path / "alpha.jpg")
    with Image.open(target) as image:
        assert image.mode == "RGB"
        assert all(channel > 250 for channel in image.getpixel((5, 5)))


def test_every_tool_image_exports_without_error(tmp_path: Path) -> None:
    for name, path in tool_images(tmp_path / "src").items():
        for suffix in (".png", ".jpg", ".webp"):
            out = export_image(path, tmp_path / "out" / f"{name}{suffix}")
            assert read_file(out).found == (name != "none")


def test_bad_requests_are_named(tmp_path: Path) -> None:
    source = ldstudio_png(tmp_path / "src.png")
    with pytest.raises(ValueError, match=r"\.gif.*allowed: \.jpeg, \.jpg, \.png, \.webp"):
        format_for(tmp_path / "x.gif")
    with pytest.raises(ValueError, match="format: 'bmp' is not supported"):
        export_image(source, tmp_path / "x.png", fmt="bmp")
    with pytest.raises(ValueError, match="quality: 0 is out of range"):
        export_image(source, tmp_path / "x.jpg", quality=0)
    with pytest.raises(FileNotFoundError):
        export_image(tmp_path / "missing.png", tmp_path / "x.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"junk")
    with pytest.raises(UnreadableImage):
        export_image(junk, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_does_not_change_pixels_of_png(tmp_path: Path) -> None:
    source = tmp_path / "src.png"
    image = Image.effect_noise((32, 32), 50).convert("RGB")
    image.save(source)
    out = export_image(source, tmp_path / "out.png", keep_metadata=False)
    with Image.open(out) as again:
        assert list(again.getdata()) == list(image.getdata())


def test_export_to_folder_never_overwrites_and_lists_failures(tmp_path: Path) -> None:
    good = ldstudio_png(tmp_path / "src" / "fox.png")
    junk = tmp_path / "src" / "junk.png"
    junk.write_bytes(b"junk")
    out = tmp_path / "out" / "new"  # created on demand
    report = export_to_folder([(7, good), (8, junk), (9, tmp_path / "gone.png")], out, fmt="jpg")
    assert report.written == [out / "7-fox.jpg"]
    assert [(path.name, "not a readable image" in why) for path, why in report.failed[:1]] == [
        ("junk.png", True)
    ]
    assert report.failed[1][0].name == "gone.png" and "no such file" in report.failed[1][1]
    assert read_file(out / "7-fox.jpg").params is not None  # metadata kept by default
    again = export_to_folder([(7, good)], out, fmt="jpeg", keep_metadata=False)
    assert again.written == [out / "7-fox-2.jpg"]
    assert read_file(out / "7-fox-2.jpg").params is None
    assert read_file(out / "7-fox.jpg").params is not None  # the first copy is untouched


def test_export_to_folder_refuses_bad_requests_before_writing(tmp_path: Path) -> None:
    good = ldstudio_png(tmp_path / "fox.png")
    with pytest.raises(
        ValueError, match="format: 'gif' is not supported; allowed: png, jpeg, webp"
    ):
        export_to_folder([(1, good)], tmp_path / "out", fmt="gif")
    with pytest.raises(ValueError, match="quality: 101 is out of range; allowed: 1 to 100"):
        export_to_folder([(1, good)], tmp_path / "out", quality=101)
    with pytest.raises(ValueError, match="is a file; give a folder"):
        export_to_folder([(1, good)], good)
    assert not (tmp_path / "out").exists()


def test_metadata_too_large_for_jpeg_is_named_and_the_batch_goes_on(tmp_path: Path) -> None:
    from ldstudio.core.export import MetadataTooLarge

    prompt = "a red circle on a green background " * 1200  # 42,000 characters: 84 KB UTF-16
    text = f"{prompt.strip()}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64"
    long_one = png_with_text(tmp_path / "long.png", {"parameters": text})
    short = ldstudio_png(tmp_path / "short.png")
    with pytest.raises(MetadataTooLarge, match=r"too large for a JPEG \(at most 65,533 bytes"):
        export_image(long_one, tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()
    export_image(long_one, tmp_path / "x.webp")  # WebP carries it
    assert read_file(tmp_path / "x.webp").params.prompt == prompt.strip()
    report = export_to_folder([(1, long_one), (2, short)], tmp_path / "out", fmt="jpeg")
    assert [p.name for p in report.written] == ["2-short.jpg"]
    assert report.failed[0][0] == long_one and "save it as PNG or WebP" in report.failed[0][1]
    stripped = export_to_folder([(1, long_one)], tmp_path / "out", fmt="jpeg", keep_metadata=False)
    assert stripped.written == [tmp_path / "out" / "1-long.jpg"]
