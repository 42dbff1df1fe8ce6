"""Expanding a request into X/Y/Z cells, the grid image's layout and labels, and its metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ldstudio.core.grid import (
    GRID_KEY,
    AxisError,
    compose,
    draw_grid,
    expand,
    grid_text,
    parse_axis,
    script_pairs,
)
from ldstudio.core.hires import HiresSettings
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request

BASE = GenerationParams(prompt="a cat on a mat", negative_prompt="blurry cat", seed=42, steps=10)
BLOB = "ab" * 32


def test_cells_run_x_fastest_and_apply_every_axis() -> None:
    plan = expand(
        Request.txt2img(BASE),
        [parse_axis("cfg=3,5,7"), parse_axis("sampler=Euler a,DDIM", "--y")],
    )
    assert plan.shape == (3, 2, 1)
    got = [
        (c.x, c.y, c.request.params.guidance_scale, c.request.params.scheduler) for c in plan.cells
    ]
    assert got == [
        (0, 0, 3.0, "Euler a"),
        (1, 0, 5.0, "Euler a"),
        (2, 0, 7.0, "Euler a"),
        (0, 1, 3.0, "DDIM"),
        (1, 1, 5.0, "DDIM"),
        (2, 1, 7.0, "DDIM"),
    ]
    # Everything else is the base request's, the seed included.
    assert {
        c.request.params.replace(guidance_scale=7.0, scheduler="Euler a") for c in plan.cells
    } == {BASE.replace(guidance_scale=7.0)}


def test_a_random_seed_is_resolved_once_for_every_cell() -> None:
    plan = expand(Request.txt2img(BASE.replace(seed="random")), [parse_axis("steps=1-4")])
    seeds = {c.request.params.seed for c in plan.cells}
    assert len(seeds) == 1 and isinstance(seeds.pop(), int)


def test_prompt_sr_replaces_the_first_value_in_prompt_and_negative_the_first_cell_unchanged() -> (
    None
):
    plan = expand(Request.txt2img(BASE), [parse_axis('prompt=cat,dog,"red fox, small"')])
    prompts = [(c.request.params.prompt, c.request.params.negative_prompt) for c in plan.cells]
    assert prompts == [
        ("a cat on a mat", "blurry cat"),
        ("a dog on a mat", "blurry dog"),
        ("a red fox, small on a mat", "blurry red fox, small"),
    ]
    with pytest.raises(AxisError, match="did not find 'horse' in the prompt"):
        expand(Request.txt2img(BASE), [parse_axis("prompt=horse,cow")])


def test_three_axes_model_size_clip_skip_seed_and_lora() -> None:
    base = Request.txt2img(BASE.replace(loras=(("/m/style.safetensors", 0.8),)))
    plan = expand(
        base,
        [
            parse_axis("lora=0,0.5"),
            parse_axis("size=64x64,128x64", "--y"),
            parse_axis("model=a,b", "--z"),
        ],
        resolve_model=lambda name: f"/models/{name}.safetensors",
    )
    assert plan.shape == (2, 2, 2) and len(plan.cells) == 8
    last = plan.cells[-1].request.params
    assert last.loras == (("/m/style.safetensors", 0.5),)
    assert (last.width, last.height, last.model) == (128, 64, "/models/b.safetensors")
    assert plan.cells[0].request.params.model == "/models/a.safetensors"
    seeds = expand(
        Request.txt2img(BASE), [parse_axis("seed=1,2"), parse_axis("clip_skip=1,2", "--y")]
    )
    assert [(c.request.params.seed, c.request.params.clip_skip) for c in seeds.cells] == [
        (1, 1), (2, 1), (1, 2), (2, 2)
    ]  # fmt: skip


def test_strength_goes_to_img2img_settings_or_the_hires_fix_and_is_refused_otherwise() -> None:
    img2img = Request.inpainting(BASE, InpaintSettings(strength=0.7), BLOB)
    cells = expand(img2img, [parse_axis("strength=0.3,0.6")]).cells
    assert [c.request.inpaint.strength for c in cells if c.request.inpaint] == [0.3, 0.6]
    hires = Request.txt2img(BASE, HiresSettings(scale=2.0))
    cells = expand(hires, [parse_axis("denoising=0.4,0.5")]).cells
    assert [c.request.hires.strength for c in cells if c.request.hires] == [0.4, 0.5]
    with pytest.raises(AxisError, match="--x strength: a strength axis needs an img2img"):
        expand(Request.txt2img(BASE), [parse_axis("strength=0.3")])


@pytest.mark.parametrize(
    ("axes", "words"),
    [
        (["cfg=3,50"], ["--x cfg", "CFG Scale: 50", "guidance_scale", "out of range", "0 to 30"]),
        (["size=64x64,100x64"], ["--x size", "Size: 100x64", "multiple of 8"]),
        (["lora=0.5"], ["--x lora", "exactly one LoRA", "has 0", "Prompt S/R"]),
        (["lora:other=0.5"], ["--x lora", "no LoRA named 'other'"]),
        (["cfg=3", "cfg=5"], ["--y cfg", "the same axis as --x"]),
        (["steps=1-101", "steps=1-100"], ["--y steps"]),
    ],
)
def test_bad_cells_are_refused_naming_the_axis_and_value(axes, words) -> None:
    parsed = [parse_axis(text, option) for text, option in zip(axes, ("--x", "--y"), strict=False)]
    with pytest.raises(AxisError) as caught:
        expand(Request.txt2img(BASE), parsed)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_a_cell_makes_one_image() -> None:
    with pytest.raises(AxisError, match="a grid cell makes one image; got 2 × 1"):
        expand(Request.txt2img(BASE.replace(batch_size=2)), [parse_axis("cfg=3")])


def _cell(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, color)


def _has_ink(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    return bool((np.asarray(image.crop(box).convert("L")) < 128).any())


def test_layout_sizes_cells_in_place_and_labels_on_top_and_left() -> None:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    grid = draw_grid(
        [_cell(c) for c in colors],
        3,
        ["CFG Scale: 3", "CFG Scale: 5", "CFG Scale: 7"],
        ["Euler a", "DDIM"],
    )
    left, top = grid.cells[0][:2]
    assert left > 0 and top > 0  # room for the Y labels and the X labels
    assert grid.image.size == (left + 3 * 64, top + 2 * 48)
    pixels = np.asarray(grid.image)
    for (x0, y0, x1, y1), color in zip(grid.cells, colors, strict=True):
        assert (pixels[y0:y1, x0:x1] == color).all()  # each cell exactly where it belongs
    assert [label.text.replace("\n", " ") for label in grid.x_labels] == [
        "CFG Scale: 3", "CFG Scale: 5", "CFG Scale: 7"
    ]  # fmt: skip
    assert [label.text for label in grid.y_labels] == ["Euler a", "DDIM"]
    for label in (*grid.x_labels, *grid.y_labels):
        assert _has_ink(grid.image, label.box), label  # the text is drawn in its box
    assert grid.x_labels[1].box == (left + 64, 0, left + 128, top)
    assert grid.y_labels[1].box == (0, top + 48, left, top + 96)


def test_cells_of_different_sizes_sit_centred_in_slots_of_the_largest() -> None:
    grid = draw_grid([_cell((255, 0, 0), (64, 64)), _cell((0, 0, 255), (32, 64))], 2, ["a", "b"])
    left, top = grid.cells[0][:2]
    assert left == 0 and grid.image.size == (128, top + 64)
    slot = np.asarray(grid.image.crop(grid.cells[1]))
    assert (slot[:, 16:48] == (0, 0, 255)).all() and (slot[:, :16] == 255).all()


def test_z_as_a_column_of_titled_grids_or_separate_sheets() -> None:
    plan = expand(
        Request.txt2img(BASE),
        [parse_axis("cfg=3,5"), parse_axis("steps=1,2", "--y"), parse_axis("seed=1,2,3", "--z")],
    )
    images = [_cell((i * 20, 0, 0)) for i in range(12)]
    (column,) = compose(plan, images, "column")
    assert column.cells == tuple(range(12)) and column.z is None and len(column.parts) == 3
    heights = [part.image.height for part in column.parts]
    assert column.image.size == (column.parts[0].image.width, sum(heights))
    assert [part.title.text for part in column.parts if part.title] == [
        "Seed: 1",
        "Seed: 2",
        "Seed: 3",
    ]
    separate = compose(plan, images, "separate")
    assert [sheet.cells for sheet in separate] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11)]
    assert [sheet.image.size for sheet in separate] == [part.image.size for part in column.parts]
    with pytest.raises(ValueError, match="allowed: column, separate"):
        compose(plan, images, "row")


def test_grid_metadata_is_the_first_cells_plus_a1111_plot_keys() -> None:
    plan = expand(
        Request.txt2img(BASE),
        [parse_axis("cfg=3,5"), parse_axis("sampler=Euler a,DPM++ 2M", "--y")],
    )
    assert script_pairs(plan) == {
        "Script": "X/Y/Z plot",
        "X Type": "CFG Scale",
        "X Values": "3,5",
        "Y Type": "Sampler",
        "Y Values": "Euler a,DPM++ 2M",
    }
    (sheet,) = compose(plan, [_cell((0, 0, 0))] * 4)
    first = {"parameters": "a cat\nSteps: 10, Sampler: Euler a", "ldstudio": '{"kind": "txt2img"}'}
    text = grid_text(
        first, plan, sheet, ["images/a.png", "images/b.png", "images/c.png", "images/d.png"]
    )
    assert text["ldstudio"] == first["ldstudio"]  # reusing the grid reuses its first cell
    assert text["parameters"] == (
        "a cat\nSteps: 10, Sampler: Euler a, Script: X/Y/Z plot, X Type: CFG Scale, "
        'X Values: "3,5", Y Type: Sampler, Y Values: "Euler a,DPM++ 2M"'
    )
    chunk = json.loads(text[GRID_KEY])
    assert chunk["shape"] == [2, 2, 1] and chunk["cells"][3] == "images/d.png"
    assert [a["label"] for a in chunk["axes"]] == ["CFG Scale", "Sampler"]
