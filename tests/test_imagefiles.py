"""File names from prompts, atomic PNG writes, the folder sink (no torch, no Qt)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ldstudio.core.imagefiles import SLUG_MAX_CHARS, FolderSink, prompt_slug, write_png_atomic
from ldstudio.core.metadata import read_ldstudio_params
from ldstudio.core.params import GenerationParams


@pytest.mark.parametrize(
    "prompt",
    [
        "../../etc/passwd",
        'a\\b/c:d*e?f"g<h>i|j',
        "tab\tnew\nline\x00nul\x1b",
        "CON",
        "nul",
        "",
        "   ...   ",
        "x" * 500,
        "日本語のプロンプト",
    ],
)
def test_prompt_slug_is_always_a_safe_file_name(prompt: str) -> None:
    slug = prompt_slug(prompt)
    assert slug
    assert len(slug) <= SLUG_MAX_CHARS + 1
    assert not set(slug) & set('/\\:*?"<>|\t\n\x00\x1b. ')
    assert slug.upper() not in {"CON", "PRN", "AUX", "NUL"}


def test_slug_keeps_readable_words() -> None:
    assert prompt_slug("a red circle, on blue!") == "a_red_circle_on_blue"
    assert prompt_slug("日本語のプロンプト") == "日本語のプロンプト"


def test_atomic_write_leaves_nothing_when_saving_fails(tmp_path: Path) -> None:
    class Broken(Exception):
        pass

    class BrokenImage:
        width = height = 1

        def save(self, *args: object, **kwargs: object) -> None:
            raise Broken

    target = tmp_path / "out.png"
    with pytest.raises(Broken):
        write_png_atomic(BrokenImage(), target, {})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    write_png_atomic(Image.new("RGB", (2, 2), "red"), target, {"k": "v"})
    with Image.open(target) as image:
        assert image.text == {"k": "v"} and image.getpixel((0, 0)) == (255, 0, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def _save(sink: FolderSink, index: int = 0) -> Path:
    params = GenerationParams(prompt="a/b: c", seed=7, width=64, height=64)
    record = sink.save(
        Image.new("RGB", (64, 64)),
        params,
        index=index,
        model_name="m",
        device="cpu",
        dtype="fp32",
        seconds=0.5,
    )
    assert read_ldstudio_params(record.path) == params
    return record.path


def test_folder_sink_never_overwrites(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path / "out")
    first, second = _save(sink), _save(sink)
    assert first != second and first.exists() and second.exists()
    assert first.parent == tmp_path / "out" and "7-a_b_c" in first.name


def test_folder_sink_exact_path_numbers_later_images(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path, exact_path=tmp_path / "cat.png")
    assert _save(sink, 0) == tmp_path / "cat.png"
    assert _save(sink, 1) == tmp_path / "cat-2.png"


def test_folder_sink_exact_path_never_replaces_the_users_files(tmp_path: Path) -> None:
    photo = tmp_path / "holiday.png"
    photo.write_bytes(b"a photo the user cares about")
    (tmp_path / "holiday-2.png").write_bytes(b"another one")
    with pytest.raises(FileExistsError, match=r"holiday\.png: already exists; choose another name"):
        _save(FolderSink(tmp_path, exact_path=photo), 0)
    assert photo.read_bytes() == b"a photo the user cares about"
    # A later image of the batch moves on to the next free name.
    assert _save(FolderSink(tmp_path, exact_path=photo), 1) == tmp_path / "holiday-2-2.png"
    assert (tmp_path / "holiday-2.png").read_bytes() == b"another one"
    # Replacing is allowed only when asked for.
    assert _save(FolderSink(tmp_path, exact_path=photo, overwrite=True), 0) == photo


def test_written_images_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    import os
    import stat

    from ldstudio.core.atomic import SHARED_FILE_MODE
    from ldstudio.core.export import export_image

    old = os.umask(0o022)
    try:
        assert SHARED_FILE_MODE == 0o644  # read from the process at import; the usual umask
        png = _save(FolderSink(tmp_path / "out"))
        assert stat.S_IMODE(png.stat().st_mode) == 0o644
        jpeg = export_image(png, tmp_path / "share.jpg")
        assert stat.S_IMODE(jpeg.stat().st_mode) == 0o644
    finally:
        os.umask(old)
