"""Test images carrying each tool's metadata, built from the formats in shared/FORMATS.md."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, PngImagePlugin

from ldstudio.core.imagefiles import write_png_atomic
from ldstudio.core.metadata import png_text_chunks
from ldstudio.core.params import GenerationParams

A1111_TEXT = (
    "a lighthouse at dusk, (dramatic sky:1.2)\n"
    "second prompt line\n"
    "Negative prompt: blurry, low quality\n"
    "more negative\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 965400086, "
    'Size: 512x768, Model hash: 45dee52b, Model: v1-5-pruned, Lora hashes: "a: 1, b: 2", '
    "Version: v1.9.0"
)

COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 42,
            "steps": 25,
            "cfg": 7.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "dreamshaper_8.safetensors"},
    },
    "10": {
        "class_type": "LoraLoader",
        "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "x.safetensors"},
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 640, "height": 448, "batch_size": 1},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a castle on a hill", "clip": ["10", 1]},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "ugly", "clip": ["10", 1]}},
    # A hires-fix pass: a second sampler with denoise < 1 must not win.
    "20": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 7,
            "steps": 10,
            "cfg": 5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 0.5,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["3", 0],
        },
    },
}

COMFY_WORKFLOW = {
    "nodes": [
        {
            "id": 3,
            "type": "KSampler",
            "inputs": [
                {"name": "model", "link": 1},
                {"name": "positive", "link": 4},
                {"name": "negative", "link": 6},
            ],
            "widgets_values": [123, "fixed", 30, 8, "euler_ancestral", "normal", 1],
        },
        {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a quiet forest"]},
        {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["text, watermark"]},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [4, 6, 0, 3, 1, "CONDITIONING"], [6, 7, 0, 3, 2, "X"]],
}

INVOKE_METADATA = {
    "positive_prompt": "a bowl of fruit",
    "negative_prompt": "burnt",
    "width": 768,
    "height": 512,
    "seed": 3141,
    "cfg_scale": 5.5,
    "steps": 30,
    "scheduler": "dpmpp_2m_k",
    "model": {"name": "juggernaut", "base": "sdxl"},
    "loras": [],
}

FOOOCUS_JSON = {
    "prompt": "a red panda",
    "negative_prompt": "deformed",
    "steps": 30,
    "resolution": "(1152, 896)",
    "guidance_scale": 4,
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "1234567",
    "base_model": "juggernautXL_v8Rundiffusion",
    "version": "Fooocus v2.3.0",
}

NOVELAI_COMMENT = {
    "prompt": "ignored in favour of Description",
    "steps": 28,
    "height": 832,
    "width": 1216,
    "scale": 5.0,
    "seed": 2023,
    "sampler": "k_euler_ancestral",
    "noise_schedule": "native",
    "uc": "lowres, bad anatomy",
}


def png_with_text(path: Path, text: dict[str, str], size: tuple[int, int] = (32, 24)) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        # As A1111 and Pillow do: tEXt for Latin-1, iTXt for anything else.
        if value.isascii():
            info.add_text(key, value)
        else:
            info.add_itxt(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 120, 200)).save(path, pnginfo=info)
    return path


def ldstudio_png(path: Path, prompt: str = "a red fox in snow", seed: int = 5) -> Path:
    params = GenerationParams(
        prompt=prompt, negative_prompt="blurry", seed=seed, width=64, height=64
    )
    write_png_atomic(
        Image.new("RGB", (64, 64), (200, 30, 30)), path, png_text_chunks(params, "tiny")
    )
    return path


def exif_image(path: Path, text: str, fmt: str, *, little_endian: bool = False) -> Path:
    exif = Image.Exif()
    codec = "utf-16-le" if little_endian else "utf-16-be"
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode(codec)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (5, 80, 5)).save(path, format=fmt, exif=exif)
    return path


def tool_images(folder: Path) -> dict[str, Path]:
    """One image per supported tool, plus a plain one."""
    return {
        "ldstudio": ldstudio_png(folder / "ldstudio.png"),
        "a1111": png_with_text(folder / "a1111.png", {"parameters": A1111_TEXT}),
        "comfyui": png_with_text(
            folder / "comfy.png",
            {"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)},
        ),
        "invokeai": png_with_text(
            folder / "invoke.png", {"invokeai_metadata": json.dumps(INVOKE_METADATA)}
        ),
        "fooocus": png_with_text(
            folder / "fooocus.png",
            {"parameters": json.dumps(FOOOCUS_JSON), "fooocus_scheme": "fooocus"},
        ),
        "novelai": png_with_text(
            folder / "novelai.png",
            {
                "Software": "NovelAI",
                "Description": "1girl, cherry blossoms",
                "Source": "NovelAI Diffusion V3 7BCCAA2C",
                "Comment": json.dumps(NOVELAI_COMMENT),
            },
        ),
        "none": png_with_text(folder / "plain.png", {}),
    }
