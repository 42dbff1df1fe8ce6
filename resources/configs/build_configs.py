"""Build-time script: writes the bundled single-file configs and the CLIP BPE tokenizer files.

Run from the repository root after `pip install open_clip_torch --no-deps` (only its
`bpe_simple_vocab_16e6.txt.gz` is read; nothing is imported from it, so torchvision is not
needed). The outputs are committed; ldstudio never needs open_clip at run time:

    python resources/configs/build_configs.py [--bpe PATH_TO_bpe_simple_vocab_16e6.txt.gz]

Each `resources/configs/<variant>/` is a diffusers pipeline folder without weights
(model_index.json plus one config per component) that `from_single_file(config=...)` reads
instead of fetching the configs from the Hugging Face hub. The architectures are those of the
public reference models (runwayml SD 1.5, stabilityai SD 2.1 / 2.1-base / sd-turbo, SDXL base
1.0 / sdxl-turbo). The tokenizer vocabulary is shared: `clip-bpe/` holds vocab.json and
merges.txt, and each variant's `tokenizer*/tokenizer_config.json` only says which pad token it
uses ("<|endoftext|>" for OpenAI CLIP-L, "!" for OpenCLIP ViT-H and ViT-bigG).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

# GPT-2/CLIP's reversible map from bytes to printable characters.
from transformers.convert_slow_tokenizer import bytes_to_unicode

HERE = Path(__file__).resolve().parent
DIFFUSERS_VERSION = "0.42.1"
# CLIP's BPE file holds 262,144 merges; CLIP uses the first 48,894 (49,408 tokens in all).
CLIP_MERGES = 49152 - 256 - 2


def write_clip_bpe(bpe_gz: Path, out: Path) -> None:
    """vocab.json + merges.txt exactly as OpenAI's CLIP tokenizer builds its vocabulary."""
    with gzip.open(bpe_gz) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : CLIP_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    out.mkdir(parents=True, exist_ok=True)
    table = {token: i for i, token in enumerate(vocab)}
    (out / "vocab.json").write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n"
    (out / "merges.txt").write_text(merges_text, encoding="utf-8")


def unet(kind: str, sample_size: int) -> dict[str, Any]:
    base: dict[str, Any] = {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "center_input_sample": False,
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "out_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "sample_size": sample_size,
    }
    if kind in ("sd1", "sd2"):
        base.update(
            block_out_channels=[320, 640, 1280, 1280],
            down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        )
    if kind == "sd1":
        base.update(attention_head_dim=8, cross_attention_dim=768)
    elif kind == "sd2":
        base.update(
            attention_head_dim=[5, 10, 20, 20],
            cross_attention_dim=1024,
            use_linear_projection=True,
        )
    else:
        base.update(
            addition_embed_type="text_time",
            addition_embed_type_num_heads=64,
            addition_time_embed_dim=256,
            attention_head_dim=[5, 10, 20],
            block_out_channels=[320, 640, 1280],
            cross_attention_dim=2048,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            projection_class_embeddings_input_dim=2816,
            transformer_layers_per_block=[1, 2, 10],
            use_linear_projection=True,
        )
    return base


def vae(sample_size: int, xl: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": sample_size,
        "scaling_factor": 0.13025 if xl else 0.18215,
    }
    if xl:
        # SDXL's VAE overflows in fp16; diffusers decodes it in fp32 when this is set.
        config["force_upcast"] = True
    return config


def clip_text(kind: str, with_projection: bool = False) -> dict[str, Any]:
    sizes = {
        # hidden, intermediate, heads, layers, projection, activation
        "clip-l": (768, 3072, 12, 12, 768, "quick_gelu"),
        # SD 2.x uses OpenCLIP ViT-H's penultimate layer: diffusers keeps 23 of its 24 layers.
        "openclip-h": (1024, 4096, 16, 23, 512, "gelu"),
        "openclip-bigg": (1280, 5120, 20, 32, 1280, "gelu"),
    }
    hidden, inter, heads, layers, proj, act = sizes[kind]
    return {
        "architectures": ["CLIPTextModelWithProjection" if with_projection else "CLIPTextModel"],
        "model_type": "clip_text_model",
        "attention_dropout": 0.0,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407 if kind == "clip-l" else 0,
        "hidden_act": act,
        "hidden_size": hidden,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "projection_dim": proj,
        "vocab_size": 49408,
    }


def tokenizer(pad: str) -> dict[str, Any]:
    return {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad,
        "errors": "replace",
    }


def scheduler(cls: str, prediction: str, spacing: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "_class_name": cls,
        "_diffusers_version": DIFFUSERS_VERSION,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "prediction_type": prediction,
        "steps_offset": 1,
        "timestep_spacing": spacing,
        "clip_sample": False,
        "set_alpha_to_one": False,
    }
    if cls == "PNDMScheduler":
        config["skip_prk_steps"] = True
    return config


def sd_index(xl: bool, scheduler_cls: str) -> dict[str, Any]:
    if xl:
        return {
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "force_zeros_for_empty_prompt": True,
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "scheduler": ["diffusers", scheduler_cls],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }
    return {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "requires_safety_checker": False,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "safety_checker": [None, None],
        "scheduler": ["diffusers", scheduler_cls],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def variants() -> dict[str, dict[str, Any]]:
    """Every component config per variant folder."""
    out: dict[str, dict[str, Any]] = {}
    for name, kind, sample, sched, prediction, spacing in (
        ("sd1", "sd1", 64, "PNDMScheduler", "epsilon", "leading"),
        ("sd2", "sd2", 64, "PNDMScheduler", "epsilon", "leading"),
        ("sd2-v", "sd2", 96, "DDIMScheduler", "v_prediction", "leading"),
        ("sd-turbo", "sd2", 64, "EulerDiscreteScheduler", "epsilon", "trailing"),
    ):
        text = "clip-l" if kind == "sd1" else "openclip-h"
        files = {
            "model_index.json": sd_index(False, sched),
            "unet/config.json": unet(kind, sample),
            "vae/config.json": vae(sample * 8, xl=False),
            "text_encoder/config.json": clip_text(text),
            "tokenizer/tokenizer_config.json": tokenizer("<|endoftext|>" if kind == "sd1" else "!"),
            "scheduler/scheduler_config.json": scheduler(sched, prediction, spacing),
        }
        if name == "sd2-v":
            # SD 2.1 768-v overflows in fp16 attention without upcasting.
            files["unet/config.json"]["upcast_attention"] = True
        out[name] = files
    for name, sample, sched, spacing in (
        ("sdxl", 128, "EulerDiscreteScheduler", "leading"),
        ("sdxl-turbo", 64, "EulerAncestralDiscreteScheduler", "trailing"),
    ):
        out[name] = {
            "model_index.json": sd_index(True, sched),
            "unet/config.json": unet("sdxl", sample),
            "vae/config.json": vae(1024 if name == "sdxl" else 512, xl=True),
            "text_encoder/config.json": clip_text("clip-l"),
            "text_encoder_2/config.json": clip_text("openclip-bigg", with_projection=True),
            "tokenizer/tokenizer_config.json": tokenizer("<|endoftext|>"),
            "tokenizer_2/tokenizer_config.json": tokenizer("!"),
            "scheduler/scheduler_config.json": scheduler(sched, "epsilon", spacing),
        }
    return out


def default_bpe() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("open_clip_torch is not installed: pip install open_clip_torch --no-deps")
    return Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpe", type=Path, default=None, help="bpe_simple_vocab_16e6.txt.gz")
    args = parser.parse_args()
    write_clip_bpe(args.bpe or default_bpe(), HERE / "clip-bpe")
    for name, files in variants().items():
        for rel, content in files.items():
            target = HERE / name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    print(f"wrote clip-bpe/ and {', '.join(variants())} under {HERE}")


if __name__ == "__main__":
    main()
