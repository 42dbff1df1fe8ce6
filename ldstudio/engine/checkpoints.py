"""Single-file checkpoints and VAEs loaded offline with bundled configs, and safe conversion
of pickle files to safetensors; engine thread (conversion also runs from the CLI).

diffusers' `from_single_file` normally fetches each family's component configs from the
Hugging Face hub. Given `config=<local folder>` it reads them from that folder instead and
never calls the hub, so ldstudio passes its bundled `resources/configs/<variant>` folder, and
hands over CLIP tokenizers built from the bundled BPE files so nothing else is looked up.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import Any

from ldstudio.core import paths
from ldstudio.core.models import (
    KIND_VAE,
    PICKLE_SUFFIXES,
    VARIANT_LABELS,
    ModelFileError,
    detect,
)
from ldstudio.core.models.detection import INPAINTING_CHANNELS
from ldstudio.core.models.safetensors import checked_header

log = logging.getLogger(__name__)

# The pad token of each tokenizer folder in a bundled config (OpenCLIP pads with "!").
_DEFAULT_PAD = "<|endoftext|>"


class CheckpointError(Exception):
    """A single-file model that cannot be loaded; the message names the file and why."""


def configs_root() -> Path:
    return paths.resource_path("configs")


def bundled_config(variant: str) -> Path:
    folder = configs_root() / variant
    if not (folder / "model_index.json").is_file():
        raise CheckpointError(
            f"bundled config {variant!r} is missing at {folder}; the installation is incomplete"
        )
    return folder


@functools.lru_cache(maxsize=4)
def _bpe(bpe_dir: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = json.loads((bpe_dir / "vocab.json").read_text(encoding="utf-8"))
    lines = (bpe_dir / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line.strip()]
    return vocab, merges  # type: ignore[return-value]


def clip_tokenizer(config_dir: Path, subfolder: str, bpe_dir: Path | None = None) -> Any:
    """A CLIPTokenizer from the shared BPE files, with the pad token the config folder names."""
    from transformers import CLIPTokenizer

    settings_file = config_dir / subfolder / "tokenizer_config.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8"))
    vocab, merges = _bpe(bpe_dir or configs_root() / "clip-bpe")
    # The tokenizers backend wants merges as pairs; transformers' stub says strings.
    pairs: Any = list(merges)
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=pairs,
        pad_token=settings.get("pad_token", _DEFAULT_PAD),
        model_max_length=int(settings.get("model_max_length", 77)),
    )


def checked_safetensors(path: Path) -> Any:
    """The parsed header of a loadable .safetensors file; CheckpointError otherwise.

    Refuses pickle formats by name before anything opens them (see `checked_header`).
    """
    try:
        return checked_header(path)
    except ModelFileError as exc:
        raise CheckpointError(str(exc)) from None


def load_single_file(
    path: Path,
    torch_dtype: Any,
    variant: str,
    config_dir: Path | None = None,
    bpe_dir: Path | None = None,
) -> Any:
    """A diffusers pipeline from one original-layout .safetensors file, with no network.

    `config_dir` defaults to the bundled config of `variant`; tests pass small configs.
    """
    header = checked_safetensors(path)
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    config = config_dir or bundled_config(variant)
    index = json.loads((config / "model_index.json").read_text(encoding="utf-8"))
    xl = index.get("_class_name") == "StableDiffusionXLPipeline"
    pipeline_cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    kwargs: dict[str, Any] = {
        "config": str(config),
        "local_files_only": True,
        "torch_dtype": torch_dtype,
        "tokenizer": clip_tokenizer(config, "tokenizer", bpe_dir),
    }
    if xl:
        kwargs["tokenizer_2"] = clip_tokenizer(config, "tokenizer_2", bpe_dir)
    else:
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        if detect(header).inpainting:
            # The bundled configs are the base models' (4 input channels); an inpainting
            # checkpoint's UNet is the same but for its 9-channel input convolution.
            from diffusers import UNet2DConditionModel

            kwargs["unet"] = UNet2DConditionModel.from_single_file(
                str(path),
                config=str(config),
                subfolder="unet",
                local_files_only=True,
                torch_dtype=torch_dtype,
                in_channels=INPAINTING_CHANNELS,
            )
        pipe = pipeline_cls.from_single_file(str(path), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path} could not be loaded as {VARIANT_LABELS.get(variant, variant)}: {exc}"
        ) from exc
    return pipe


def load_vae_file(
    path: Path, torch_dtype: Any, variant: str, config_dir: Path | None = None
) -> Any:
    """An AutoencoderKL from a standalone .safetensors VAE (original or diffusers key layout)."""
    header = checked_safetensors(path)
    found = detect(header)
    if found.kind != KIND_VAE:
        raise CheckpointError(
            f"{path}: --vae needs a standalone VAE file (encoder.*/decoder.* tensors); found "
            f"a {found.kind} file"
        )
    from diffusers import AutoencoderKL

    config = config_dir or bundled_config(variant)
    diffusers_layout = "encoder.down_blocks.0.resnets.0.conv1.weight" in header.tensors
    try:
        if diffusers_layout:
            from safetensors.torch import load_file

            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config / "vae")))
            vae.load_state_dict(load_file(str(path)), strict=True)
            return vae.to(torch_dtype)
        return AutoencoderKL.from_single_file(
            str(path),
            config=str(config),
            subfolder="vae",
            local_files_only=True,
            torch_dtype=torch_dtype,
        )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path} could not be loaded as a VAE: {exc}") from exc


def convert_to_safetensors(source: Path, target: Path | None = None) -> Path:
    """Convert a pickle checkpoint to .safetensors, loading it with `weights_only=True` only.

    torch's restricted unpickler accepts tensors and plain containers and refuses every
    other global, so a file that would run code on load fails here instead. Never
    overwrites an existing file. The weights are taken out of the wrappers training scripts
    put them in (see `unwrap_state_dict`), so an upscaler .pth converts to a file that loads.
    """
    import torch
    from safetensors.torch import save_file

    if source.suffix.lower() not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{source}: convert reads pickle checkpoints ({', '.join(PICKLE_SUFFIXES)}); "
            f"{source.suffix or 'no suffix'} is not one"
        )
    target = target or source.with_suffix(".safetensors")
    if target.exists():
        raise CheckpointError(f"{target} already exists; ldstudio does not overwrite files")
    try:
        data = torch.load(str(source), map_location="cpu", weights_only=True, mmap=False)
    except Exception as exc:  # the restricted unpickler raises UnpicklingError and others
        raise CheckpointError(conversion_refusal(source, exc)) from None
    data = unwrap_state_dict(data)
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: holds a {type(data).__name__}, not a dict of tensors")
    tensors, scalars, dropped = flatten_checkpoint(data)
    if not tensors:
        raise CheckpointError(f"{source}: holds no tensors")
    # safetensors refuses shared storage; clone the few tensors that alias each other.
    seen: set[int] = set()
    for key, value in tensors.items():
        pointer = value.untyped_storage().data_ptr()
        tensors[key] = value.clone().contiguous() if pointer in seen else value.contiguous()
        seen.add(pointer)
    tmp = target.with_suffix(".safetensors.part")
    # What is not a tensor is kept as text metadata (an embedding's name and training step),
    # and what cannot be (lists, objects) is named there, never dropped unsaid.
    metadata = {**scalars, "converted_from": source.name}
    if dropped:
        metadata["converted_without"] = ", ".join(dropped)
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(target)
    return target


def flatten_checkpoint(
    data: dict[Any, Any],
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """A loaded checkpoint's tensors under dotted keys (nested dicts flattened: an A1111
    embedding's `{"string_to_param": {"*": tensor}}` becomes `string_to_param.*`), its scalar
    values as text, and the keys of anything else."""
    import torch

    tensors: dict[str, Any] = {}
    scalars: dict[str, str] = {}
    dropped: list[str] = []

    def walk(node: dict[Any, Any], prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            elif isinstance(value, dict):
                walk(value, f"{name}.")
            elif isinstance(value, str | int | float | bool) or value is None:
                scalars[name] = str(value)
            else:
                dropped.append(name)

    walk(data, "")
    return tensors, scalars, dropped


# Where training scripts keep the weights in a saved dict: Lightning/LDM checkpoints under
# "state_dict"; basicsr (Real-ESRGAN, SwinIR, ...) under "params_ema" (the averaged weights,
# the ones to use) and/or "params".
STATE_DICT_WRAPPERS = ("state_dict", "params_ema", "params")


def unwrap_state_dict(data: Any) -> Any:
    """The dict of weights inside `data`: wrapper dicts (`STATE_DICT_WRAPPERS`, in that order of
    preference) unwrapped, nested ones too; anything else as it is."""
    while isinstance(data, dict):
        inner = next(
            (data[key] for key in STATE_DICT_WRAPPERS if isinstance(data.get(key), dict)), None
        )
        if inner is None:
            return data
        data = inner
    return data


def conversion_refusal(source: Path, exc: Exception) -> str:
    """Why `torch.load(weights_only=True)` could not read `source`, in ldstudio's words.

    PyTorch's own message advises loading again with `weights_only=False`: the unsafe load
    that conversion exists to avoid, so it is never passed on (the CLI and the GUI both show
    this text).
    """
    detail = str(exc)
    if "weights_only" not in detail and "Weights only" not in detail:
        first = detail.splitlines()[0] if detail else ""
        cause = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        return f"{source}: cannot be read as a PyTorch checkpoint ({cause})"
    refused = re.search(r"GLOBAL ([\w.]+) was not an allowed global", detail)
    if refused is not None:
        return (
            f"{source}: refused: it holds more than plain tensors (it refers to "
            f"{refused.group(1)}), and loading it could run code hidden in it. ldstudio converts "
            "only files that hold tensors and nothing else; ask its publisher for a "
            ".safetensors version."
        )
    # An opcode the restricted unpickler does not know: random bytes, a damaged file, or a
    # pickle built to run code all end here, and nothing tells them apart safely.
    return (
        f"{source}: refused: torch's tensors-only loader cannot read it: it is damaged, not a "
        "PyTorch checkpoint, or holds more than plain tensors. Nothing in it was run; ldstudio "
        "converts only files that hold tensors and nothing else."
    )
