"""Hostile metadata from issue 13: inputs that made the readers take minutes, and odd files."""

from __future__ import annotations

import json
from pathlib import Path

from library_support import exif_image, png_with_text
from PIL import Image


def a1111_long_last_line(size: int) -> str:
    """A1111 text whose last line is `size` characters of words without any `Key: value`."""
    line = ("lorem ipsum " * (size // 12 + 1))[:size]
    return f"a castle on a hill\nNegative prompt: ugly\n{line}"


def comfy_fan_out(depth: int, *, text_at_bottom: str | None = None) -> dict[str, object]:
    """A ComfyUI `prompt` graph whose nodes each link both inputs to the same next node.

    A walk that revisits shared nodes takes 2**depth steps. With `text_at_bottom`, the last
    node is a CLIPTextEncode holding that text (reached only through the fan-out).
    """
    graph: dict[str, object] = {
        "1": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 3,
                "steps": 20,
                "cfg": 7,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["100", 0],
                "positive": ["100", 0],
                "negative": ["100", 0],
                "latent_image": ["100", 0],
            },
        }
    }
    for level in range(depth):
        node, below = str(100 + level), str(101 + level)
        graph[node] = {"class_type": "Mixer", "inputs": {"a": [below, 0], "b": [below, 0]}}
    bottom = str(100 + depth)
    if text_at_bottom is None:
        graph[bottom] = {"class_type": "Nothing", "inputs": {}}
    else:
        graph[bottom] = {"class_type": "CLIPTextEncode", "inputs": {"text": text_at_bottom}}
    return graph


def hostile_png(path: Path, size: int = 5000) -> Path:
    """A PNG whose `parameters` last line is `size` characters with no `Key: value` pair."""
    return png_with_text(path, {"parameters": a1111_long_last_line(size)})


def hostile_comfy_png(path: Path, depth: int = 40) -> Path:
    return png_with_text(path, {"prompt": json.dumps(comfy_fan_out(depth))})


def hostile_exif_jpeg(path: Path, size: int = 60_000) -> Path:
    """A JPEG whose EXIF UserComment is A1111-looking text with a long pair-less last line."""
    # UTF-16 doubles the size: a JPEG's EXIF segment holds at most 64 KB.
    text = "a\nNegative prompt: b\n" + ("lorem ipsum " * (size // 24))[: size // 2 - 40]
    return exif_image(path, text, "JPEG")


def hostile_comment_jpeg(path: Path, size: int = 64_000) -> Path:
    """A JPEG whose comment is a long pair-less A1111 line after a `Negative prompt:` line."""
    text = a1111_long_last_line(size - 64)
    Image.new("RGB", (8, 8), "gray").save(path, "JPEG", comment=text.encode())
    return path
