"""Generation metadata in image files: A1111 `parameters` text and ldstudio's JSON; any thread.

ldstudio writes two PNG text chunks: `parameters` in AUTOMATIC1111's format, so other tools
read our images, and `ldstudio` holding the full GenerationParams as JSON, so ours read back
exactly. Parsing never raises on malformed input beyond ValueError with a clear message.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image

from ldstudio import __version__
from ldstudio.core.params import GenerationParams

PARAMETERS_KEY = "parameters"
LDSTUDIO_KEY = "ldstudio"

# A1111's own regex for one `Key: value` pair of the last line.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_NEEDS_QUOTES = re.compile(r"[,:\n]")


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if _NEEDS_QUOTES.search(value) else value


def a1111_parameters(params: GenerationParams, model_name: str) -> str:
    """The `parameters` text A1111 writes, for params with a concrete seed and size."""
    pairs: dict[str, Any] = {
        "Steps": params.steps,
        "Sampler": params.scheduler,
        "CFG scale": f"{params.guidance_scale:g}",
        "Seed": params.seed,
        "Size": f"{params.width}x{params.height}",
        "Model": model_name,
        **_extra_network_pairs(params),
        "Version": f"ldstudio {__version__}",
    }
    line = ", ".join(f"{k}: {_quote(str(v))}" for k, v in pairs.items() if v not in ("", None))
    # A1111 keeps LoRAs in the prompt as <lora:name:strength>; readers look for them there.
    text = params.prompt + "".join(f" <lora:{Path(p).stem}:{w:g}>" for p, w in params.loras)
    if params.negative_prompt:
        text += f"\nNegative prompt: {params.negative_prompt}"
    return f"{text}\n{line}"


def _extra_network_pairs(params: GenerationParams) -> dict[str, str]:
    """A1111's `VAE hash`, `VAE` and `Lora hashes` keys; a hash is left out if its file is gone."""
    from ldstudio.core.modelscan import file_hash, lora_hash

    pairs: dict[str, str] = {}
    if params.vae:
        vae = Path(params.vae)
        with contextlib.suppress(OSError):
            pairs["VAE hash"] = file_hash(vae)
        pairs["VAE"] = vae.name
    hashes = []
    for path, _weight in params.loras:
        try:
            hashes.append(f"{Path(path).stem}: {lora_hash(Path(path))}")
        except (OSError, ValueError):
            continue
    if hashes:
        pairs["Lora hashes"] = ", ".join(hashes)
    return pairs


def parse_a1111_parameters(text: str) -> dict[str, Any]:
    """Split A1111 `parameters` text into prompt, negative prompt and the key/value pairs.

    Follows A1111's reader: the last line is the parameter line only if it holds at least
    three `Key: value` pairs; otherwise it belongs to the prompt.
    """
    if not isinstance(text, str):
        raise ValueError(f"parameters: expected text, got {type(text).__name__}")
    lines = text.strip().split("\n")
    pairs: dict[str, str] = {}
    if lines:
        found = _PARAM_RE.findall(lines[-1])
        if len(found) >= 3:
            lines = lines[:-1]
            for key, value in found:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError:
                        value = value[1:-1]
                pairs[key.strip()] = value
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result: dict[str, Any] = {
        "prompt": "\n".join(prompt_lines).strip(),
        "negative_prompt": "\n".join(negative_lines).strip(),
        **pairs,
    }
    size = pairs.get("Size", "")
    if re.fullmatch(r"\d+x\d+", size):
        width, height = size.split("x")
        result["width"], result["height"] = int(width), int(height)
    return result


def png_text_chunks(params: GenerationParams, model_name: str) -> dict[str, str]:
    """The text chunks ldstudio writes into every PNG it saves."""
    return {
        PARAMETERS_KEY: a1111_parameters(params, model_name),
        LDSTUDIO_KEY: params.to_json(),
    }


def read_ldstudio_params(path: Path) -> GenerationParams:
    """The GenerationParams ldstudio stored in an image. ValueError when absent or malformed."""
    with Image.open(path) as image:
        text = getattr(image, "text", {}).get(LDSTUDIO_KEY)
    if text is None:
        raise ValueError(f"{path}: no ldstudio metadata (chunk {LDSTUDIO_KEY!r} is missing)")
    return GenerationParams.from_json(text)
