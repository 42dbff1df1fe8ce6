"""Random-weight pipelines with the real SD 1.5 and SDXL base architectures, from configs.

Speed depends on the architecture, not on the weights, so these stand in for the real models
without any download. The tokenizer is ldstudio's test tokenizer (the text encoder's cost is
a rounding error next to the UNet's).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 2048,
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}


def build(family: str, folder: Path, dtype: str = "fp32") -> Path:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import write_tokenizer

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16}[dtype]
    torch.manual_seed(0)
    write_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)

    def text_config(hidden: int, layers: int, heads: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 4,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=77,
            projection_dim=hidden,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )
    if family == "sd15":
        pipe = StableDiffusionPipeline(
            vae=AutoencoderKL(**SD_VAE, scaling_factor=0.18215),
            text_encoder=CLIPTextModel(text_config(768, 12, 12)),
            tokenizer=tokenizer,
            unet=UNet2DConditionModel(**SD15_UNET),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    elif family == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=AutoencoderKL(**{**SD_VAE, "sample_size": 1024}, scaling_factor=0.13025),
            text_encoder=CLIPTextModel(text_config(768, 12, 12)),
            text_encoder_2=CLIPTextModelWithProjection(text_config(1280, 32, 20)),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=UNet2DConditionModel(**SDXL_UNET),
            scheduler=scheduler,
        )
    else:
        raise ValueError(f"family: {family!r} is not supported; allowed: sd15, sdxl")
    pipe.to(torch_dtype)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
