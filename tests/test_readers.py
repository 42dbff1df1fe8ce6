"""Metadata readers for every tool's format, sampler mapping, and fuzzing with hostile input."""

from __future__ import annotations

import json
import os
import random
import string
import struct
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hostile_support import (
    a1111_long_last_line,
    comfy_fan_out,
    hostile_comment_jpeg,
    hostile_exif_jpeg,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from library_support import (
    A1111_TEXT,
    COMFY_PROMPT,
    COMFY_WORKFLOW,
    exif_image,
    ldstudio_png,
    png_with_text,
    tool_images,
)
from PIL import Image, PngImagePlugin

from ldstudio.core.metadata import A1111_PAIR_RE, a1111_pairs
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import (
    MAX_TEXT_BYTES,
    NO_METADATA,
    ReadResult,
    UnreadableImage,
    decode_user_comment,
    map_a1111_sampler,
    map_comfy_sampler,
    not_a_regular_file,
    read_file,
    read_image,
    read_text,
)


def test_ldstudio_params_round_trip_exactly(tmp_path: Path) -> None:
    path = ldstudio_png(tmp_path / "own.png", prompt="línea uno\nline two ✓", seed=77)
    result = read_file(path)
    assert result.source == "ldstudio" and result.found
    expected = GenerationParams(
        prompt="línea uno\nline two ✓", negative_prompt="blurry", seed=77, width=64, height=64
    )
    assert result.params == expected
    assert result.extra["model_name"] == "tiny"
    assert result.parameters_text is not None and "Seed: 77" in result.parameters_text


def test_a1111_text_multiline_prompt_and_karras_schedule(tmp_path: Path) -> None:
    result = read_file(png_with_text(tmp_path / "a.png", {"parameters": A1111_TEXT}))
    assert result.source == "a1111"
    assert result.fields["prompt"] == "a lighthouse at dusk, (dramatic sky:1.2)\nsecond prompt line"
    assert result.fields["negative_prompt"] == "blurry, low quality\nmore negative"
    assert result.fields["scheduler"] == "DPM++ 2M Karras"
    assert (result.fields["steps"], result.fields["guidance_scale"]) == (28, 6.5)
    assert (result.fields["width"], result.fields["height"]) == (512, 768)
    assert result.fields["seed"] == 965400086
    assert result.fields["model"] == "v1-5-pruned"
    assert result.extra["Model hash"] == "45dee52b"
    assert result.extra["Lora hashes"] == "a: 1, b: 2"
    assert result.params is not None and result.params.steps == 28


def test_a1111_unknown_sampler_is_a_warning_not_a_failure() -> None:
    text = "a cat\nSteps: 20, Sampler: DPM adaptive, CFG scale: 7, Seed: 1, Size: 512x512"
    result = read_text({"parameters": text})
    assert result.source == "a1111"
    assert "scheduler" not in result.fields
    assert result.extra["Sampler"] == "DPM adaptive"
    assert any("DPM adaptive" in w for w in result.warnings)
    assert result.params is not None and result.params.prompt == "a cat"


@pytest.mark.parametrize(
    ("sampler", "schedule", "expected"),
    [
        ("Euler a", "", "Euler a"),
        ("euler A", "Automatic", "Euler a"),
        ("DPM++ 2M Karras", "", "DPM++ 2M Karras"),
        ("DPM++ 2M", "Karras", "DPM++ 2M Karras"),
        ("DPM++ SDE", "Karras", "DPM++ SDE Karras"),
        ("Heun", "", None),
    ],
)
def test_a1111_sampler_names(sampler: str, schedule: str, expected: str | None) -> None:
    assert map_a1111_sampler(sampler, schedule) == expected


@pytest.mark.parametrize(
    ("sampler", "scheduler", "expected"),
    [
        ("euler_ancestral", "normal", "Euler a"),
        ("dpmpp_2m", "karras", "DPM++ 2M Karras"),
        ("dpmpp_2m", "normal", "DPM++ 2M"),
        ("dpmpp_sde_gpu", "karras", "DPM++ SDE Karras"),
        ("uni_pc_bh2", "simple", "UniPC"),
        ("dpm_fast", "normal", None),
    ],
)
def test_comfy_sampler_names(sampler: str, scheduler: str, expected: str | None) -> None:
    assert map_comfy_sampler(sampler, scheduler) == expected


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("little_endian", [False, True])
def test_exif_user_comment_in_jpeg_and_webp(tmp_path: Path, fmt: str, little_endian: bool) -> None:
    path = exif_image(tmp_path / f"x.{fmt.lower()}", A1111_TEXT, fmt, little_endian=little_endian)
    result = read_file(path)
    assert result.source == "a1111"
    assert result.fields["prompt"].startswith("a lighthouse at dusk")
    assert result.fields["scheduler"] == "DPM++ 2M Karras"
    assert result.fields["seed"] == 965400086


def test_comfyui_prompt_graph_walk(tmp_path: Path) -> None:
    images = tool_images(tmp_path)
    result = read_file(images["comfyui"])
    assert result.source == "comfyui"
    assert result.fields["prompt"] == "a castle on a hill"
    assert result.fields["negative_prompt"] == "ugly"
    # The full-strength pass (node 3), not the hires pass with denoise 0.5.
    assert result.fields["seed"] == 42 and result.fields["steps"] == 25
    assert result.fields["scheduler"] == "DPM++ 2M Karras"
    assert result.fields["guidance_scale"] == 7.5
    assert result.fields["model"] == "dreamshaper_8.safetensors"  # reached through LoraLoader
    assert (result.fields["width"], result.fields["height"]) == (640, 448)
    assert result.params is not None
    assert result.extra["prompt_graph"] == COMFY_PROMPT
    # Its weights are ComfyUI's: reused, the same prompt text means the same thing.
    assert result.params.emphasis == "comfy"


def test_comfyui_sampler_custom_advanced_and_linked_seed() -> None:
    graph = {
        "1": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["2", 0],
                "guider": ["3", 0],
                "sampler": ["4", 0],
                "sigmas": ["5", 0],
                "latent_image": ["9", 0],
            },
        },
        "2": {"class_type": "RandomNoise", "inputs": {"noise_seed": ["8", 0]}},
        "8": {"class_type": "PrimitiveNode", "inputs": {"value": 99}},
        "3": {
            "class_type": "CFGGuider",
            "inputs": {"model": ["6", 0], "positive": ["10", 0], "negative": ["7", 0], "cfg": 3},
        },
        "10": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["11", 0]}},
        "11": {"class_type": "CLIPTextEncode", "inputs": {"text": ["12", 0]}},
        "12": {"class_type": "PrimitiveString", "inputs": {"value": "linked prompt text"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad"}},
        "4": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "5": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 12}},
        "6": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
        "9": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024}},
    }
    result = read_text({"prompt": json.dumps(graph)})
    assert result.source == "comfyui"
    assert result.fields["prompt"] == "linked prompt text"
    assert result.fields["negative_prompt"] == "bad"
    assert result.fields["seed"] == 99
    assert result.fields["steps"] == 12
    assert result.fields["scheduler"] == "Euler"
    assert result.fields["model"] == "flux1-dev.safetensors"
    assert result.fields["width"] == 1024


def test_comfyui_workflow_only() -> None:
    result = read_text({"workflow": json.dumps(COMFY_WORKFLOW)})
    assert result.source == "comfyui"
    assert result.fields["prompt"] == "a quiet forest"
    assert result.fields["negative_prompt"] == "text, watermark"
    assert result.fields["seed"] == 123 and result.fields["steps"] == 30
    assert result.fields["scheduler"] == "Euler a"


def test_comfyui_cyclic_graph_terminates() -> None:
    graph = {
        "1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "seed": ["2", 0]}},
        "2": {"class_type": "Loop", "inputs": {"a": ["3", 0]}},
        "3": {"class_type": "Loop", "inputs": {"a": ["2", 0]}},
    }
    result = read_text({"prompt": json.dumps(graph)})
    assert result.source == "comfyui"
    assert result.fields["prompt"] == ""


def test_invokeai_fooocus_novelai(tmp_path: Path) -> None:
    images = tool_images(tmp_path)
    invoke = read_file(images["invokeai"])
    assert invoke.source == "invokeai"
    assert invoke.fields["prompt"] == "a bowl of fruit"
    assert invoke.fields["scheduler"] == "DPM++ 2M Karras"
    assert invoke.fields["model"] == "juggernaut"
    assert (invoke.fields["width"], invoke.fields["seed"]) == (768, 3141)

    fooocus = read_file(images["fooocus"])
    assert fooocus.source == "fooocus"
    assert fooocus.fields["prompt"] == "a red panda"
    assert (fooocus.fields["width"], fooocus.fields["height"]) == (1152, 896)
    assert fooocus.fields["seed"] == 1234567
    assert "scheduler" not in fooocus.fields  # dpmpp_2m_sde_gpu has no ldstudio equivalent
    assert fooocus.warnings

    novel = read_file(images["novelai"])
    assert novel.source == "novelai"
    assert novel.fields["prompt"] == "1girl, cherry blossoms"
    assert novel.fields["negative_prompt"] == "lowres, bad anatomy"
    assert novel.fields["scheduler"] == "Euler a"
    assert (novel.fields["guidance_scale"], novel.fields["seed"]) == (5.0, 2023)


def test_fooocus_a1111_scheme() -> None:
    result = read_text({"parameters": A1111_TEXT, "fooocus_scheme": "a1111"})
    assert result.source == "fooocus"
    assert result.fields["seed"] == 965400086


def test_plain_image_has_a_clear_message(tmp_path: Path) -> None:
    result = read_file(tool_images(tmp_path)["none"])
    assert not result.found
    assert result.source == "none"
    assert result.message == NO_METADATA
    assert result.to_dict()["found"] is False


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "nope.png")
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"this is not an image")
    with pytest.raises(UnreadableImage, match="not a readable image"):
        read_file(bogus)
    with pytest.raises(UnreadableImage, match="is a folder"):
        read_file(tmp_path)


def test_corrupt_ldstudio_json_falls_back_to_parameters() -> None:
    result = read_text({"ldstudio": '{"prompt": 3', "parameters": A1111_TEXT})
    assert result.source == "a1111"


def test_user_comment_decoding_edge_cases() -> None:
    assert decode_user_comment(b"ASCII\0\0\0hello") == "hello"
    assert decode_user_comment(b"\0" * 8 + "hé".encode()) == "hé"
    assert decode_user_comment(b"UNICODE\0\xff\xfeh\0i\0") == "hi"
    assert decode_user_comment(b"short") is None
    assert decode_user_comment(12345) is None


# --- fuzzing ---------------------------------------------------------------------------------

_KEYS = (
    "parameters",
    "ldstudio",
    "prompt",
    "workflow",
    "invokeai_metadata",
    "fooocus_scheme",
    "Software",
    "Comment",
    "Description",
)


def _garbage(rng: random.Random) -> str:
    valid = [
        json.dumps(COMFY_PROMPT),
        json.dumps(COMFY_WORKFLOW),
        A1111_TEXT,
        json.dumps({"positive_prompt": 5, "model": [1, 2], "seed": "x", "width": None}),
        '{"1": {"class_type": "KSampler", "inputs": {"positive": ["1", 0], "seed": [[1], 2]}}}',
        "[" * 5000 + "]" * 5000,  # deep nesting: RecursionError territory
        '{"nodes": [{"type": "KSampler", "widgets_values": "oops", "inputs": 5}], "links": 3}',
        "NovelAI",
        "fooocus",
        "a1111",
    ]
    kind = rng.randrange(4)
    if kind == 0:
        text = rng.choice(valid)
        cut = rng.randrange(len(text) + 1)
        return text[:cut]  # truncation
    if kind == 1:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(200)))
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(100))).decode("latin-1")
    text = list(rng.choice(valid))
    for _ in range(rng.randrange(1, 6)):  # flip characters in valid metadata
        if text:
            text[rng.randrange(len(text))] = rng.choice('{}[]":,0\n')
    return "".join(text)


def test_fuzz_text_metadata_never_crashes() -> None:
    rng = random.Random(20261126)
    found = set()
    for _ in range(3000):
        text = {rng.choice(_KEYS): _garbage(rng) for _ in range(rng.randrange(1, 4))}
        result = read_text(text)
        found.add(result.source)
        json.dumps(result.to_dict(), default=str)  # the CLI prints it: must serialise
    assert {"none", "a1111", "comfyui"} <= found


def test_fuzz_damaged_files_raise_only_unreadable(tmp_path: Path) -> None:
    rng = random.Random(7)
    sources = [
        ldstudio_png(tmp_path / "src.png"),
        exif_image(tmp_path / "src.jpg", A1111_TEXT, "JPEG"),
        exif_image(tmp_path / "src.webp", A1111_TEXT, "WEBP"),
    ]
    for i in range(150):
        data = bytearray(rng.choice(sources).read_bytes())
        if rng.random() < 0.5:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randrange(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"damaged-{i}.img"
        path.write_bytes(bytes(data))
        try:
            result = read_file(path)
        except UnreadableImage:
            continue
        assert result.source in {"ldstudio", "a1111", "none"}


def test_reader_reads_text_chunks_after_image_data(tmp_path: Path) -> None:
    # Some tools append text chunks after IDAT; Pillow only sees them once the image loads.
    path = tmp_path / "late.png"
    Image.new("RGB", (8, 8)).save(path)
    data = path.read_bytes()
    import struct
    import zlib

    body = b"parameters\0" + A1111_TEXT.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
    iend = data.rindex(b"IEND") - 4
    path.write_bytes(data[:iend] + chunk + data[iend:])
    assert read_file(path).source == "a1111"


def test_free_text_comments_are_not_mistaken_for_parameters(tmp_path: Path) -> None:
    gimp = tmp_path / "gimp.jpg"
    Image.new("RGB", (8, 8)).save(gimp, comment=b"Created with GIMP")
    assert not read_file(gimp).found
    camera = exif_image(tmp_path / "camera.jpg", "Holiday at the lake", "JPEG")
    assert not read_file(camera).found
    a1111 = tmp_path / "a1111-comment.jpg"
    Image.new("RGB", (8, 8)).save(a1111, comment=A1111_TEXT.encode())
    result = read_file(a1111)
    assert result.source == "a1111" and result.fields["seed"] == 965400086


# --- hostile metadata (issue 13): every reader linear in its input, with bounded work -------

# Before the fix these took 2.5 s (16 KB), 30 s (64 KB) and did not finish in minutes (900 KB,
# the EXIF and comment JPEGs, the ComfyUI fan-out); the bound leaves room for a loaded machine.
HOSTILE_SECONDS = 2.0


def _timed(call: Callable[[], ReadResult]) -> tuple[ReadResult, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='ab1_é :,"\\-/\t.\u2028', max_size=40))
def test_a1111_pair_tokenizer_finds_what_a1111s_regex_finds(line: str) -> None:
    # The regex is the specification (shared/FORMATS.md); the tokenizer is its linear twin.
    assert a1111_pairs(line) == A1111_PAIR_RE.findall(line)


@pytest.mark.parametrize(
    "line",
    [
        'Steps: 20, Lora hashes: "a: 1, b: 2", Model: x',
        'K1: "unclosed, K2: v, K3: "a\\"b", K4: "x" y, K5: ""',
        'ab: "\\\\", cd: "\\\\\\"", ef: "\\',
        "  lead: 1,trail:2 ,- x: 3, a: 4, b/c d-e: 5",
        "a: 1, é: 2, ñandú: 3",
    ],
)
def test_a1111_pair_tokenizer_on_tricky_lines(line: str) -> None:
    assert a1111_pairs(line) == A1111_PAIR_RE.findall(line)
    assert a1111_pairs(line, limit=2) == A1111_PAIR_RE.findall(line)[:2]


@pytest.mark.parametrize("size", [16_000, 64_000, 900_000])
def test_long_last_line_without_pairs_reads_fast_and_stays_prompt(size: int) -> None:
    text = a1111_long_last_line(size)
    result, seconds = _timed(lambda: read_text({"parameters": text}))
    assert seconds < HOSTILE_SECONDS
    # Fewer than 3 pairs: the line belongs to the (negative) prompt, as A1111 reads it.
    assert result.source == "a1111" and result.fields["prompt"] == "a castle on a hill"
    line = text.split("\n")[2]
    assert result.fields["negative_prompt"] == f"ugly\n{line}".strip()


@pytest.mark.parametrize(
    "line",
    [
        'ab: "x, ' * 40_000,  # unclosed quotes: each would scan to the end of the line
        '\\"' * 150_000,
        "Steps: 20, " * 30_000,
        "a: " * 100_000,
    ],
)
def test_hostile_parameter_lines_are_linear(line: str) -> None:
    result, seconds = _timed(lambda: read_text({"parameters": f"p\n{line}"}))
    assert seconds < HOSTILE_SECONDS and result.source == "a1111"


def test_metadata_over_the_cap_is_reported_not_read() -> None:
    text = a1111_long_last_line(MAX_TEXT_BYTES + 10)
    result, seconds = _timed(lambda: read_text({"parameters": text, "Software": "x"}))
    assert seconds < HOSTILE_SECONDS and not result.found
    size = len(text.encode())
    assert result.warnings == (
        f"parameters: metadata too large ({size:,} bytes; at most {MAX_TEXT_BYTES:,} are "
        "read); not read",
    )
    # The cap is per value: a usable chunk beside a huge one is still read.
    both = read_text({"parameters": A1111_TEXT, "workflow": "x" * (MAX_TEXT_BYTES + 1)})
    assert both.source == "a1111" and "workflow: metadata too large" in both.warnings[0]


def test_hostile_exif_user_comment_and_jpeg_comment(tmp_path: Path) -> None:
    exif, seconds = _timed(lambda: read_file(hostile_exif_jpeg(tmp_path / "e.jpg")))
    assert seconds < HOSTILE_SECONDS and exif.source == "a1111"
    assert exif.fields["negative_prompt"].startswith("b\nlorem ipsum")
    comment, seconds = _timed(lambda: read_file(hostile_comment_jpeg(tmp_path / "c.jpg")))
    assert seconds < HOSTILE_SECONDS and comment.source == "a1111"
    assert comment.fields["prompt"] == "a castle on a hill"


def test_oversized_comments_are_reported(tmp_path: Path) -> None:
    image = Image.new("RGB", (8, 8))
    image.info["comment"] = b"x" * (MAX_TEXT_BYTES + 1)
    result = read_image(image)
    assert not result.found
    assert result.warnings[0].startswith("JPEG comment: metadata too large (1,048,577 bytes")


@pytest.mark.parametrize("depth", [40, 60])
def test_comfy_fan_out_graph_is_walked_once_per_node(depth: int) -> None:
    graph = json.dumps(comfy_fan_out(depth, text_at_bottom="deep down"))
    result, seconds = _timed(lambda: read_text({"prompt": graph}))
    assert seconds < HOSTILE_SECONDS
    assert result.source == "comfyui" and result.fields["prompt"] == "deep down"
    assert result.fields["seed"] == 3 and not result.warnings
    nothing, seconds = _timed(lambda: read_text({"prompt": json.dumps(comfy_fan_out(depth))}))
    assert seconds < HOSTILE_SECONDS and nothing.fields["prompt"] == ""


def test_comfy_graph_bounds_are_reported() -> None:
    deep = json.dumps(comfy_fan_out(3000, text_at_bottom="too deep"))
    result, seconds = _timed(lambda: read_text({"prompt": deep}))
    assert seconds < HOSTILE_SECONDS and result.source == "comfyui"
    assert "prompt" in result.fields and result.fields["prompt"] == ""
    assert any("links more than 64 deep were not followed" in w for w in result.warnings)
    # Many samplers sharing one long chain of links to their denoise value: the visit budget.
    graph: dict[str, Any] = {
        f"s{i}": {"class_type": "KSampler", "inputs": {"denoise": ["c0", 0]}} for i in range(400)
    }
    for j in range(60):  # ...ending in 0.5: a hires pass, so every sampler is looked at
        link = [f"c{j + 1}", 0] if j < 59 else 0.5
        graph[f"c{j}"] = {"class_type": "P", "inputs": {"value": link}}
    wide, seconds = _timed(lambda: read_text({"prompt": json.dumps(graph)}))
    assert seconds < HOSTILE_SECONDS and wide.source == "comfyui"
    assert any("the walk stopped after 20,000 node visits" in w for w in wide.warnings)


def test_comfy_cycles_end() -> None:
    graph = {
        "1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "seed": ["2", 0]}},
        "2": {"class_type": "Loop", "inputs": {"a": ["3", 0], "seed": ["3", 0]}},
        "3": {"class_type": "Loop", "inputs": {"b": ["2", 0], "seed": ["2", 0]}},
    }
    result, seconds = _timed(lambda: read_text({"prompt": json.dumps(graph)}))
    assert seconds < HOSTILE_SECONDS and result.source == "comfyui"
    assert result.fields["prompt"] == "" and "seed" not in result.fields


def test_fooocus_resolution_with_long_spaces_is_fast() -> None:
    data = {"prompt": "p", "resolution": "(" + " " * 200_000 + "x"}
    text = {"parameters": json.dumps(data), "fooocus_scheme": "fooocus"}
    result, seconds = _timed(lambda: read_text(text))
    assert seconds < HOSTILE_SECONDS and result.source == "fooocus" and "width" not in result.fields
    sized = read_text(
        {
            "parameters": json.dumps({"prompt": "p", "resolution": " (640, 512) "}),
            "fooocus_scheme": "fooocus",
        }
    )
    assert (sized.fields["width"], sized.fields["height"]) == (640, 512)


# --- files that are not images to open ----------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    pool = ThreadPoolExecutor(1)
    future = pool.submit(read_file, fifo)
    try:
        with pytest.raises(UnreadableImage, match=r"x\.png: is a named pipe \(FIFO\), not a "):
            future.result(timeout=HOSTILE_SECONDS)
    finally:
        if not future.done():  # it blocked: give it a writer so the thread can end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pool.shutdown()
    assert not_a_regular_file(fifo) == "a named pipe (FIFO), not a regular file"


def test_dangling_link_says_where_it_points(tmp_path: Path) -> None:
    link = tmp_path / "gone.png"
    link.symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(FileNotFoundError, match=r"gone\.png: a symbolic link to .*elsewhere\.png"):
        read_file(link)
    assert not_a_regular_file(png_with_text(tmp_path / "real.png", {})) is None


def _with_size(path: Path, width: int, height: int) -> Path:
    """Rewrite a PNG's IHDR so it claims `width` x `height` (the pixels stay tiny)."""
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_refused_with_its_size(tmp_path: Path) -> None:
    bomb = _with_size(
        png_with_text(tmp_path / "bomb.png", {"parameters": A1111_TEXT}), 20000, 20000
    )
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    with pytest.raises(UnreadableImage) as caught:
        read_file(bomb)
    message = str(caught.value)
    assert "bomb.png: image is 20,000×20,000 pixels" in message
    assert f"over the limit of {limit:,} pixels" in message and "decompression bomb" in message


def test_large_image_is_read_without_decoding_and_says_so(tmp_path: Path) -> None:
    big = _with_size(png_with_text(tmp_path / "big.png", {"parameters": A1111_TEXT}), 10000, 10000)
    result, seconds = _timed(lambda: read_file(big))
    assert seconds < HOSTILE_SECONDS  # not decoded: the IDAT holds 24x32 pixels' worth
    assert result.source == "a1111" and result.fields["seed"] == 965400086
    assert result.image_size == (10000, 10000) and result.image_format == "PNG"
    assert result.warnings[0].startswith("image is 10,000×10,000 pixels, over the ")


def test_compressed_text_too_large_for_pillow_is_named(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "p\n" + "x" * (2 << 20), zip=True)
    path = tmp_path / "ztxt.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    with pytest.raises(UnreadableImage, match=r"ztxt\.png: metadata too large: its PNG text"):
        read_file(path)
