"""`ldstudio info FILE`: print the generation metadata any tool wrote into an image; main thread.

Exit codes: 0 when the file was read (with or without generation metadata: the output says
which), 2 when the file is missing or not an image.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ldstudio.cli.common import EXIT_OK, BadInput
from ldstudio.core.hires import HiresSettings
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import ROLE_IMAGE
from ldstudio.core.upscale import model_label, upscaler_label

_LABELS = (
    ("prompt", "prompt"),
    ("negative_prompt", "negative prompt"),
    ("steps", "steps"),
    ("scheduler", "sampler"),
    ("guidance_scale", "CFG scale"),
    ("seed", "seed"),
    ("model", "model"),
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    info = commands.add_parser(
        "info",
        help="show the generation parameters stored in an image",
        description=(
            "Read the generation parameters stored in a PNG, JPEG or WebP by ldstudio, "
            "AUTOMATIC1111/Forge/SD.Next/Krita, ComfyUI, InvokeAI, Fooocus or NovelAI."
        ),
    )
    info.add_argument("file", help="image file")
    info.add_argument("--json", action="store_true", help="print the result as JSON")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    from ldstudio.core.readers import UnreadableImage, read_file

    path = Path(args.file).expanduser()
    try:
        result = read_file(path)
    except FileNotFoundError as exc:
        # A dangling symbolic link says where it points; anything else is just missing.
        why = str(exc) if "symbolic link" in str(exc) else f"{args.file}: no such file"
        raise BadInput(why) from None
    except UnreadableImage as exc:
        raise BadInput(str(exc)) from None
    # read_file opened the file once (a second open could meet a different file).
    size, image_format = result.image_size or (0, 0), result.image_format or "?"
    if args.json:
        payload: dict[str, Any] = {
            "file": str(path),
            "format": image_format,
            "width": size[0],
            "height": size[1],
            **result.to_dict(),
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
        return EXIT_OK
    print(f"file: {path}")
    print(f"image: {image_format} {size[0]}x{size[1]}")
    if not result.found:
        print(f"{result.message} (looked for ldstudio, A1111, ComfyUI, InvokeAI, Fooocus, NovelAI)")
    else:
        print(f"source: {result.label}")
        fields = result.fields
        shown: dict[str, str] = {}
        for key, label in _LABELS:
            if fields.get(key) not in (None, ""):
                print(f"{label}: {fields[key]}")
                shown[label.lower()] = str(fields[key])
        if "width" in fields and "height" in fields:
            print(f"size: {fields['width']}x{fields['height']}")
        params = result.params
        if params is not None:  # what else shaped the image, when the file says
            if params.guidance_cutoff < 1.0:
                print(f"guidance cut-off: {params.guidance_cutoff:g} of the steps")
            if params.vae:
                print(f"VAE: {params.vae}")
            for lora, weight in params.loras:
                print(f"LoRA: {lora} ×{weight:g}")
            if params.clip_skip != 1:
                print(f"clip skip: {params.clip_skip}")
            if params.emphasis != "original":
                print(f"emphasis: {params.emphasis}")
            if params.varied:
                print(
                    f"variation seed: {params.variation_seed} at strength "
                    f"{params.variation_strength:g}"
                )
            if params.seed_resize_from is not None:
                width, height = params.seed_resize_from
                print(f"seed resize from: {width}x{height}")
            if params.styles:
                print(f"styles: {', '.join(params.styles)}")
        for use in result.embeddings:  # A1111's `TI hashes`, each looked up here
            where = use.path if use.path and not use.problem else "not found"
            if use.path and use.problem:
                where = f"{use.path}, a different version"
            print(f"embedding: {use.name} ({use.short_hash}): {where}")
        request = result.request
        if request is not None and request.hires is not None and result.source == "ldstudio":
            # Another tool's hires keys print below as it wrote them.
            print(f"hires fix: {hires_text(request.hires, params)}")
        if request is not None and request.upscale is not None and result.source == "ldstudio":
            up = request.upscale
            refine = (
                f", refined at {up.refine_strength:g} on {up.tile} px tiles (overlap {up.overlap})"
                if up.refines
                else ", no refine"
            )
            print(f"upscale: ×{up.scale} with {upscaler_label(up)}{refine}")
            print(f"made from: blob {request.input(ROLE_IMAGE)}")
        for key, value in result.extra.items():
            if key in ("prompt_graph", "workflow") or isinstance(value, dict | list):
                continue  # graphs are pages long; --json shows them
            if shown.get(key.lower()) == str(value):
                continue  # A1111's raw "Sampler"/"Model" when they say what is shown above
            print(f"{key}: {value}")
        if result.params is None:
            print("note: these values do not all map onto ldstudio's settings")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def hires_text(hires: HiresSettings, params: GenerationParams | None) -> str:
    """ "×2 (128x128) lanczos, strength 0.5, 20 steps": what the second pass did."""
    size = f"{hires.width}x{hires.height}" if hires.resized else f"×{hires.scale:g}"
    if not hires.resized and params is not None and params.width and params.height:
        width, height = hires.target_size(params.width, params.height)
        size += f" ({width}x{height})"
    steps = hires.steps_for(params.steps) if params is not None else hires.steps
    upscaler = model_label(hires.upscaler)
    return f"{size} {upscaler}, strength {hires.resolved_strength():g}, {steps} steps"
