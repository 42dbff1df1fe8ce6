"""Builds single-file checkpoints in the original Stable Diffusion key layout, offline.

`to_original_layout` maps a diffusers pipeline's state dicts to the key names the original
(CompVis / Stability "ldm", sgm) code saves, which is what model sites distribute and what
diffusers' single-file loader converts back. Tiny architectures (per family) build in
seconds; `real_sd15_state_dict` builds the real SD 1.5 sizes from ldstudio's bundled config.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tiny_model import write_tokenizer

# -- key mapping diffusers → original ---------------------------------------------------------

_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
]
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet(rest: str) -> str:
    for hf, sd in _RESNET:
        if rest.startswith(hf + "."):
            return sd + rest[len(hf) :]
    return rest


def unet_key(key: str, config: Any) -> str:
    """One diffusers UNet2DConditionModel key as the original UNetModel names it."""
    per = config.layers_per_block
    for hf, sd in _UNET_TOP.items():
        if key.startswith(hf + "."):
            return sd + key[len(hf) :]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        i, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":
            return f"input_blocks.{(i + 1) * (per + 1)}.0.op." + ".".join(parts[5:])
        j, rest = int(parts[3]), ".".join(parts[4:])
        index = 1 + i * (per + 1) + j
        return (
            f"input_blocks.{index}.0.{_resnet(rest)}"
            if kind == "resnets"
            else (f"input_blocks.{index}.1.{rest}")
        )
    if parts[0] == "up_blocks":
        i, kind = int(parts[1]), parts[2]
        has_attn = "CrossAttn" in config.up_block_types[i]
        if kind == "upsamplers":
            index = i * (per + 1) + per
            return f"output_blocks.{index}.{2 if has_attn else 1}." + ".".join(parts[4:])
        j, rest = int(parts[3]), ".".join(parts[4:])
        index = i * (per + 1) + j
        return (
            f"output_blocks.{index}.0.{_resnet(rest)}"
            if kind == "resnets"
            else (f"output_blocks.{index}.1.{rest}")
        )
    if parts[0] == "mid_block":
        kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{2 * j}.{_resnet(rest)}"
    raise KeyError(key)


def vae_key(key: str, levels: int) -> str:
    for hf, sd in (("conv_norm_out", "norm_out"), ("conv_shortcut", "nin_shortcut")):
        key = key.replace(hf, sd)
    parts = key.split(".")
    side = parts[0]
    if len(parts) > 2 and parts[1] in ("down_blocks", "up_blocks"):
        i = int(parts[2])
        level = i if side == "encoder" else levels - 1 - i
        name = "down" if side == "encoder" else "up"
        if parts[3] == "resnets":
            return f"{side}.{name}.{level}.block.{parts[4]}." + ".".join(parts[5:])
        sampler = "downsample" if side == "encoder" else "upsample"
        return f"{side}.{name}.{level}.{sampler}." + ".".join(parts[5:])
    if len(parts) > 2 and parts[1] == "mid_block":
        if parts[2] == "resnets":
            return f"{side}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
        rest = ".".join(parts[4:])
        for hf, sd in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v")):
            rest = rest.replace(hf + ".", sd + ".")
        return f"{side}.mid.attn_1.{rest.replace('to_out.0.', 'proj_out.')}"
    return key


def _is_vae_attn_weight(key: str) -> bool:
    return ".mid.attn_1." in key and key.endswith(
        ("q.weight", "k.weight", "v.weight", "proj_out.weight")
    )


def vae_state_dict(vae: Any) -> dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        sd = vae_key(key, levels)
        # The original attention uses 1x1 convolutions where diffusers uses linear layers.
        if _is_vae_attn_weight(sd):
            value = value.reshape(*value.shape, 1, 1)
        out[sd] = value
    return out


def clip_state_dict(text_encoder: Any) -> dict[str, torch.Tensor]:
    """OpenAI CLIP names (`text_model.*`); transformers ≥ 5.6 flattened CLIPTextModel's keys."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        if "position_ids" in key:
            continue
        if not key.startswith(("text_model.", "text_projection.")):
            key = "text_model." + key
        out[key] = value
    return out


def openclip_state_dict(text_encoder: Any, projection: torch.Tensor | None) -> dict[str, Any]:
    """OpenCLIP names: resblocks, fused q/k/v `in_proj`, `text_projection` as [hidden, proj]."""
    out: dict[str, Any] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in clip_state_dict(text_encoder).items():
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
            continue
        if key.endswith("position_ids"):
            continue
        name = key.replace("text_model.embeddings.token_embedding.", "token_embedding.")
        name = name.replace(
            "text_model.embeddings.position_embedding.weight", "positional_embedding"
        )
        name = name.replace("text_model.final_layer_norm.", "ln_final.")
        name = name.replace("text_model.encoder.layers.", "transformer.resblocks.")
        name = name.replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
        name = name.replace(".fc1.", ".c_fc.").replace(".fc2.", ".c_proj.")
        name = name.replace(".self_attn.", ".attn.")
        for code in "qkv":
            marker = f".attn.{code}_proj."
            if marker in name:
                stem, kind = name.split(marker)
                qkv.setdefault(f"{stem}.attn.in_proj_{kind}", {})[code] = value
                break
        else:
            out[name] = value
    for name, parts in qkv.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if projection is not None:
        out["text_projection"] = projection
    return out


def to_original_layout(pipe: Any, family: str) -> dict[str, torch.Tensor]:
    """The whole pipeline as one original-layout state dict (what a model site ships)."""
    unet = {
        "model.diffusion_model." + unet_key(k, pipe.unet.config): v
        for k, v in pipe.unet.state_dict().items()
    }
    vae = {"first_stage_model." + k: v for k, v in vae_state_dict(pipe.vae).items()}
    text: dict[str, torch.Tensor] = {}
    te = clip_state_dict(pipe.text_encoder)
    if family == "sd1":
        text = {"cond_stage_model.transformer." + k: v for k, v in te.items()}
    elif family == "sd2":
        hidden = pipe.text_encoder.config.hidden_size
        # SD 2.x checkpoints carry OpenCLIP's projection; diffusers only reads its width.
        projection = torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(1))
        converted = openclip_state_dict(pipe.text_encoder, projection)
        text = {"cond_stage_model.model." + k: v for k, v in converted.items()}
    else:
        text = {"conditioner.embedders.0.transformer." + k: v for k, v in te.items()}
        converted = openclip_state_dict(pipe.text_encoder_2, None)
        text.update({"conditioner.embedders.1.model." + k: v for k, v in converted.items()})
    return {**unet, **vae, **text}


# -- tiny pipelines per family ---------------------------------------------------------------

CONTEXT = {"sd1": 768, "sd2": 1024, "sdxl": 2048}


def _text_encoder(vocab: int, hidden: int, act: str, projection: int | None = None) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection or hidden,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def build_tiny_pipeline(family: str, folder: Path, seed: int = 0) -> Any:
    """A tiny pipeline of `family` ("sd1", "sd2", "sdxl") with the family's context width.

    Writes its configs (no weights) to `folder` as a config folder for `from_single_file`,
    with the BPE files in `folder/bpe`; returns the pipeline.
    """
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTokenizer

    torch.manual_seed(seed)
    write_tokenizer(folder / "bpe")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "bpe"), local_files_only=True)
    vocab = len(tokenizer)
    xl = family == "sdxl"
    unet_args: dict[str, Any] = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=CONTEXT[family],
        attention_head_dim=4,
        norm_num_groups=8,
    )
    if xl:
        unet_args.update(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,
            use_linear_projection=True,
        )
    else:
        unet_args.update(
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            use_linear_projection=family == "sd2",
        )
    unet = UNet2DConditionModel(**unet_args)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.13025 if xl else 0.18215,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    if xl:
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=_text_encoder(vocab, 768, "quick_gelu"),
            text_encoder_2=_text_encoder(vocab, 1280, "gelu", projection=32),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
    else:
        hidden, act = (768, "quick_gelu") if family == "sd1" else (1024, "gelu")
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=_text_encoder(vocab, hidden, act),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    write_config_folder(pipe, folder, pad="!" if family == "sd2" else "<|endoftext|>")
    return pipe


def write_config_folder(pipe: Any, folder: Path, pad: str) -> Path:
    """model_index.json and every component's config, no weights: a `config=` folder."""
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_config(str(folder))
    for name, component in pipe.components.items():
        if component is None:
            continue
        sub = folder / name
        sub.mkdir(exist_ok=True)
        if name.startswith("tokenizer"):
            # As in the real configs: OpenCLIP tokenizers (SD 2.x, SDXL's second) pad with "!".
            token = "!" if name == "tokenizer_2" else pad
            settings = {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "pad_token": token,
            }
            (sub / "tokenizer_config.json").write_text(json.dumps(settings))
        elif hasattr(component, "save_config"):
            component.save_config(str(sub))
        else:
            component.config.to_json_file(str(sub / "config.json"))
    index = json.loads((folder / "model_index.json").read_text())
    for key in ("safety_checker", "feature_extractor", "image_encoder"):
        if key in index:
            index[key] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def save_single_file(
    state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def tiny_checkpoint(
    family: str, folder: Path, name: str = "model.safetensors", dtype: Any = torch.float32
) -> tuple[Path, Path, Any]:
    """(checkpoint file, config folder, pipeline) for a tiny model of `family`."""
    config = folder / f"config-{family}"
    pipe = build_tiny_pipeline(family, config)
    state = {k: v.to(dtype) for k, v in to_original_layout(pipe, family).items()}
    return save_single_file(state, folder / name), config, pipe


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- real SD 1.5 size -------------------------------------------------------------------------


def real_layout_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Original-layout key → shape for a bundled config, at full size, allocating nothing.

    The components are built from ldstudio's bundled config on the meta device.
    """
    from types import SimpleNamespace

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from ldstudio.engine.checkpoints import bundled_config

    config = bundled_config(variant)
    family = {"sd1": "sd1", "sdxl": "sdxl", "sdxl-turbo": "sdxl"}.get(variant, "sd2")
    with torch.device("meta"):
        parts: dict[str, Any] = {
            "unet": UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(str(config / "unet"))
            ),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(str(config / "vae"))),
            "text_encoder": CLIPTextModel(
                CLIPTextConfig.from_pretrained(str(config / "text_encoder"))
            ),
        }
        if family == "sdxl":
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(str(config / "text_encoder_2"))
            )
    state = to_original_layout(SimpleNamespace(**parts), family)
    return {k: tuple(v.shape) for k, v in state.items()}


def real_random_tensors(variant: str, seed: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """Random fp16 weights at a bundled config's real shapes, original layout, in a fixed
    order: the same seed gives the same tensors again, so a test can compare a loaded model
    without holding the written copy in memory. Each tensor is drawn directly in fp16.
    """
    generator = torch.Generator().manual_seed(seed)
    for key, shape in sorted(real_layout_shapes(variant).items()):
        tensor = torch.empty(shape, dtype=torch.float16)
        # Small values keep every layer's output finite; the tests compare bits, not images.
        tensor.normal_(0.0, 0.02, generator=generator)
        yield key, tensor


def real_sd15_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """SD 1.5 at its real size (≈1.07 G parameters, 2.1 GB in fp16), original layout."""
    return dict(real_random_tensors("sd1", seed))


# -- LoRA and VAE files -----------------------------------------------------------------------


def lora_targets(unet: Any) -> list[str]:
    """The UNet's attention projections, the layers LoRAs usually train."""
    names = []
    for name, module in unet.named_modules():
        if (
            isinstance(module, torch.nn.Linear)
            and name.rsplit(".", 1)[-1]
            in (
                "to_q",
                "to_k",
                "to_v",
            )
        ) or (isinstance(module, torch.nn.Linear) and name.endswith("to_out.0")):
            names.append(name)
    return names


def write_lora(unet: Any, path: Path, layout: str, rank: int = 4, seed: int = 0) -> Path:
    """A random LoRA for `unet`: "kohya" (A1111) or "diffusers" (PEFT) key layout."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name in lora_targets(unet):
        linear = unet.get_submodule(name)
        down = torch.randn(rank, linear.in_features, generator=generator) * 0.5
        up = torch.randn(linear.out_features, rank, generator=generator) * 0.5
        if layout == "kohya":
            key = "lora_unet_" + name.replace(".", "_")
            state[f"{key}.lora_down.weight"] = down
            state[f"{key}.lora_up.weight"] = up
            state[f"{key}.alpha"] = torch.tensor(float(rank))
        else:
            state[f"unet.{name}.lora_A.weight"] = down
            state[f"unet.{name}.lora_B.weight"] = up
    return save_single_file(state, path)


TEXT_ENCODER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def write_text_encoder_lora(
    text_encoder: Any, path: Path, rank: int = 4, seed: int = 0
) -> tuple[Path, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """A kohya LoRA for a CLIP text encoder, keyed as files in the wild are.

    Those keys spell the original CLIP module path (`lora_te_text_model_encoder_layers_0_...`)
    even where transformers >= 5.6 dropped the `text_model.` level. Returns the file and the
    (down, up) pair per module name of `text_encoder`, to check what was applied.
    """
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, module in text_encoder.named_modules():
        if not (
            isinstance(module, torch.nn.Linear)
            and name.rsplit(".", 1)[-1] in TEXT_ENCODER_LORA_TARGETS
        ):
            continue
        down = torch.randn(rank, module.in_features, generator=generator) * 0.5
        up = torch.randn(module.out_features, rank, generator=generator) * 0.5
        original = name if name.startswith("text_model.") else f"text_model.{name}"
        key = "lora_te_" + original.replace(".", "_")
        state[f"{key}.lora_down.weight"] = down
        state[f"{key}.lora_up.weight"] = up
        state[f"{key}.alpha"] = torch.tensor(float(rank))
        pairs[name] = (down, up)
    return save_single_file(state, path), pairs


def write_vae_file(vae: Any, path: Path, seed: int) -> Path:
    """A standalone VAE in the original layout (as vae-ft-mse-840000 ships), other weights."""
    torch.manual_seed(seed)
    fresh = type(vae).from_config(vae.config)
    return save_single_file(vae_state_dict(fresh), path)
