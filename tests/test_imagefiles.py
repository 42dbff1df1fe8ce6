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
