"""Builds a tiny Stable-Diffusion-shaped diffusers folder from configs, offline, in seconds.

Same parts as the real thing (AutoencoderKL with 8× downsampling and 4 latent channels, a
cross-attention UNet, a CLIP text encoder and BPE tokenizer, an SD scheduler config) at a size
that runs on a CPU in milliseconds. Random weights: the pictures are noise, the plumbing is real.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# GPT-2/CLIP's reversible map from bytes to printable characters.
from transformers.convert_slow_tokenizer import bytes_to_unicode

WORDS = ["a", "red", "blue", "green", "circle", "square", "on", "background", "cat", "dog"]


def write_tokenizer(folder: Path) -> None:
    """A byte-level CLIP BPE vocabulary: every printable byte, plus a few whole words."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    for word in WORDS:
        # Merge left to right: "r e" → "re", "re d</w>" → "red</w>".
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            last = i == len(word) - 1
            piece = ch + ("</w>" if last else "")
            merges.append(f"{current} {piece}")
            current = current + piece
            if current not in vocab_list:
                vocab_list.append(current)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"})
    )


def build_tiny_model(folder: Path, seed: int = 0, in_channels: int = 4) -> Path:
    """Write a tiny diffusers StableDiffusionPipeline folder to `folder` and return it.

    `in_channels=9` makes an inpainting model (latents + mask + masked-image latents), saved
    as a StableDiffusionInpaintPipeline folder as the SD inpainting models ship.
    """
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    write_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline_class = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
    pipe = pipeline_class(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1])))
