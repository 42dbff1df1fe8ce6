"""Train ldstudio's bundled "shapes" latent diffusion model from scratch, in one command.

Trains, in order and from one seed: an AutoencoderKL (8x down, 4 latent channels), then a tiny
CLIPTextModel jointly with a cross-attention UNet2DConditionModel on pre-encoded latents. Writes
a diffusers folder (safetensors, fp16 where it keeps the folder small), the latent->RGB preview
factors, training stats and the model card. Runs on CPU; every step count is fixed by the
arguments, so the same seed and arguments give the same model on the same machine and torch.

    python training/train.py --out resources/models/ldstudio-shapes --seed 0
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ldstudio.engine.previews import fit_latent_rgb, latent_rgb_psnr
from training import card, shapes
from training.tokenizer import build_tokenizer

# Stable Diffusion 1.x's noise schedule, so every SD sampler in diffusers builds from it.
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "skip_prk_steps": True,
}


VAE_CHANNELS = (16, 32, 64, 64)


def build_vae(channels: tuple[int, ...] = VAE_CHANNELS) -> AutoencoderKL:
    # Narrow full-resolution blocks (their cost dominates on a CPU); no mid-block attention so
    # the VAE is fully convolutional and can be trained on crops (4x cheaper per step).
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=shapes.IMAGE_SIZE,
        mid_block_add_attention=False,
    )


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=128,
    )
    return CLIPTextModel(config)


def build_unet(width: int, layers: int, text_time: bool, levels: int = 2) -> UNet2DConditionModel:
    latent = shapes.IMAGE_SIZE // 8
    # A third level brings the mid block down to 2x2, where every cell is a quadrant that the
    # zero padding tells apart: absolute position ("top left") becomes cheap to learn for a
    # network that is otherwise translation equivariant.
    channels = (width, 2 * width, 2 * width, 2 * width)[:levels]
    return UNet2DConditionModel(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        layers_per_block=layers,
        block_out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D",) * levels,
        up_block_types=("CrossAttnUpBlock2D",) * levels,
        cross_attention_dim=128,
        attention_head_dim=8,
        norm_num_groups=32,
        # A pooled text embedding added to the timestep embedding gives the global attributes
        # (background, colour) a direct path, besides cross-attention.
        addition_embed_type="text" if text_time else None,
        addition_embed_type_num_heads=4,
    )


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


class StepPlan:
    """The number of steps of one phase: fixed, or fitted to a time budget.

    With a budget, steps `skip`..`probe` (after the first, slow steps and inside the LR
    warm-up, whose values do not depend on the total) are timed and the total is then fixed
    once. Rerunning with that total as a fixed step count replays the same run, which is what
    the model card's command does.
    """

    def __init__(self, steps: int, budget_s: float | None, skip: int = 20, probe: int = 80) -> None:
        self.total = steps
        self.budget_s = budget_s
        self.skip = skip
        self.probe = probe
        self.t0 = time.time()
        self.t_skip = self.t0

    def after_step(self, step: int, log: Logger, name: str) -> None:
        if self.budget_s is None:
            return
        if step + 1 == self.skip:
            self.t_skip = time.time()
        elif step + 1 == self.probe:
            per_step = (time.time() - self.t_skip) / (self.probe - self.skip)
            remaining = self.budget_s - (time.time() - self.t0)
            # 0.95: later steps may run slower than the timed ones on a shared CPU.
            self.total = max(self.probe + 1, self.probe + int(0.95 * remaining / per_step))
            log(f"{name}: {per_step:.3f}s/step -> {self.total} steps for {self.budget_s:.0f}s")


class Logger:
    def __init__(self, path: Path) -> None:
        self.file = path.open("a")
        self.t0 = time.time()

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def background_rgb(background: np.ndarray) -> torch.Tensor:
    """(N, 3) background colours in [-1, 1] for label indices."""
    table = torch.tensor([shapes.COLORS[n] for n in shapes.COLOR_NAMES], dtype=torch.float32)
    return table[torch.from_numpy(background)] / 127.5 - 1.0


def shape_centres(images: torch.Tensor, backgrounds: torch.Tensor) -> torch.Tensor:
    """(N, 2) row/column centroid of each scene's shape pixels."""
    out = []
    size = images.shape[-1]
    grid = torch.arange(size, dtype=torch.float32)
    for i in range(0, len(images), 1024):
        x = images[i : i + 1024].float().div(127.5).sub(1.0)
        fg = ((x - backgrounds[i : i + 1024, :, None, None]).abs().amax(1) > 0.02).float()
        mass = fg.sum((1, 2)).clamp(min=1.0)
        out.append(
            torch.stack([(fg.sum(2) * grid).sum(1) / mass, (fg.sum(1) * grid).sum(1) / mass], dim=1)
        )
    return torch.cat(out)


def train_vae(
    images: torch.Tensor,
    backgrounds: torch.Tensor,
    plan: StepPlan,
    batch: int,
    crop: int,
    lr: float,
    seed: int,
    log: Logger,
    channels: tuple[int, ...] = VAE_CHANNELS,
    kl_weight: float = 1e-4,
) -> AutoencoderKL:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = build_vae(channels).train()
    centres = shape_centres(images, backgrounds)
    grid_max = (images.shape[-1] - crop) // 8
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, plan.total, 100))
    n = len(images)
    t0 = time.time()
    step = 0
    while step < plan.total:
        idx = torch.randint(0, n, (batch,), generator=gen)
        # Crops on the 8-pixel latent grid, so training sees the same padding/alignment
        # pattern as full images. Half are placed over the shape (a random crop is
        # mostly flat background, which the VAE learns early): what the model is judged on.
        jitter = torch.randint(-8, 9, (batch, 2), generator=gen).float()
        on_shape = ((centres[idx] + jitter - crop / 2) / 8).round().clamp(0, grid_max).long()
        anywhere = torch.randint(0, grid_max + 1, (batch, 2), generator=gen)
        pick = torch.rand(batch, 1, generator=gen) < 0.5
        offsets = (torch.where(pick, on_shape, anywhere) * 8).tolist()
        crops = [
            images[i, :, oy : oy + crop, ox : ox + crop]
            for i, (oy, ox) in zip(idx.tolist(), offsets, strict=True)
        ]
        x = torch.stack(crops).float().div(127.5).sub(1.0)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        y = vae.decode(z).sample
        # The shape covers a small part of the picture but carries the colour, shape and size
        # the model is judged on: its pixels (anti-aliased edge included) weigh 4x. (10x with
        # the weights renormalised starved the background and left halos in a trial run.)
        fg = (x - backgrounds[idx, :, None, None]).abs().amax(1, keepdim=True) > 0.02
        weight = 1.0 + 3.0 * fg.float()
        mse = (weight * (y - x).pow(2)).mean()
        l1 = (weight * (y - x).abs()).mean()
        kl = post.kl().mean() / x[0].numel()
        loss = mse + l1 + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        plan.after_step(step, log, "vae")
        if step % 25 == 0 or step == plan.total - 1:
            log(
                f"vae step {step}/{plan.total} loss {loss.item():.4f} mse {mse.item():.5f} "
                f"l1 {l1.item():.4f} kl {kl.item():.3f} "
                f"({(time.time() - t0) / (step + 1):.2f}s/step)"
            )
        step += 1
    return vae.eval()


def finetune_decoder(
    vae: AutoencoderKL,
    images: torch.Tensor,
    backgrounds: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    log: Logger,
) -> AutoencoderKL:
    """Polish the decoder's colours on whole scenes, encoder frozen.

    Runs after the UNet, on the VAE rounded to fp16 as it ships: the latents the UNet learnt
    are untouched, and the phase replays exactly from the saved model folder. Besides the
    pixel loss, each scene's mean shape colour must match: small shapes otherwise fade towards
    their background (pink read as white), and every shape counts equally whatever its size.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = vae.half().float().train()
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 50))
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        x = images[idx].float().div(127.5).sub(1.0)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        y = vae.decode(z).sample
        fg = ((x - backgrounds[idx, :, None, None]).abs().amax(1, keepdim=True) > 0.02).float()
        weight = 1.0 + 3.0 * fg
        pixel = (weight * (y - x).pow(2)).mean() + (weight * (y - x).abs()).mean()
        area = fg.sum((2, 3)).clamp(min=1.0)
        colour = ((y * fg).sum((2, 3)) / area - (x * fg).sum((2, 3)) / area).abs().mean()
        loss = pixel + colour
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            log(
                f"decoder step {step}/{steps} loss {loss.item():.4f} pixel {pixel.item():.4f}"
                f" colour {colour.item():.4f} ({(time.time() - t0) / (step + 1):.2f}s/step)"
            )
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_all(
    vae: AutoencoderKL, images: torch.Tensor, batch: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in range(0, len(images), batch):
        post = vae.encode(images[i : i + batch].float().div(127.5).sub(1.0)).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def vae_report(vae: AutoencoderKL, images: torch.Tensor, mean: torch.Tensor) -> dict[str, float]:
    """Reconstruction error on the first 512 images, overall and per colour region."""
    x = images[:512].float().div(127.5).sub(1.0)
    y = torch.cat([vae.decode(mean[i : i + 128]).sample for i in range(0, 512, 128)]).clamp(-1, 1)
    err = (y - x).abs().mean().item() * 127.5
    mse = ((y - x) / 2).pow(2).mean().item()
    return {"recon_mae_uint8": round(err, 3), "recon_psnr_db": round(10 * math.log10(1 / mse), 2)}


def token_ids(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    """Captions padded to the full 77 positions, as the Stable Diffusion pipeline encodes them."""
    return tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def pretrain_text_encoder(
    tokenizer: CLIPTokenizer, steps: int, batch: int, lr: float, seed: int, log: Logger
) -> CLIPTextModel:
    """Teach the text encoder the caption grammar before the UNet sees it.

    Linear heads must recover every attribute a caption names (or "not named") from each
    hidden state at or after the end token: those are the positions cross-attention mostly
    reads, and they see the whole caption through the causal mask. It needs no images, so it
    is cheap. Trained jointly from scratch instead, the encoder took ~1,500 UNet steps to
    separate colours and never separated position phrases in the whole run.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = build_text_encoder(tokenizer).train()
    width = encoder.config.hidden_size
    heads = torch.nn.ModuleDict(
        {a: torch.nn.Linear(width, shapes.NUM_CLASSES[a] + 1) for a in shapes.ATTRIBUTES}
    )
    params = [*encoder.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 50))
    positions = torch.arange(tokenizer.model_max_length)
    t0 = time.time()
    for step in range(steps):
        captions: list[str] = []
        targets: dict[str, list[int]] = {a: [] for a in shapes.ATTRIBUTES}
        for _ in range(batch):
            scene = shapes.random_scene(rng)
            if rng.random() < 0.05:
                text, keep = "", dict.fromkeys(shapes.ATTRIBUTES, False)
            else:
                text, keep = shapes.caption(scene, rng)
            captions.append(text)
            for a in shapes.ATTRIBUTES:
                targets[a].append(getattr(scene, a) if keep[a] else shapes.NUM_CLASSES[a])
        ids = token_ids(tokenizer, captions)
        hidden = encoder(ids)[0]
        end = (ids == tokenizer.eos_token_id).int().argmax(1)
        mask = (positions[None] >= end[:, None]).float()
        loss = torch.zeros(())
        correct: dict[str, float] = {}
        for a in shapes.ATTRIBUTES:
            logits = heads[a](hidden)
            target = torch.tensor(targets[a])[:, None].expand(-1, logits.shape[1])
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            loss = loss + (ce * mask).sum() / mask.sum()
            at_end = logits[torch.arange(len(ids)), end].argmax(-1)
            correct[a] = (at_end == target[:, 0]).float().mean().item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            acc = " ".join(f"{a} {v:.3f}" for a, v in correct.items())
            log(
                f"text step {step}/{steps} loss {loss.item():.4f} accuracy at end token: {acc} "
                f"({(time.time() - t0) / (step + 1):.2f}s/step)"
            )
    return encoder.eval().requires_grad_(False)


@torch.no_grad()
def vae_roundtrip_accuracy(vae: AutoencoderKL, n: int = 1024, data_seed: int = 77) -> dict:
    """Evaluator accuracy on encode->decode of fresh real scenes: the ceiling the VAE sets."""
    from training.evaluator import accuracy, classify, load_evaluator

    images, labels = shapes.make_dataset(n, data_seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    z = vae.encode(x).latent_dist.mean
    y = torch.cat([vae.decode(z[i : i + 128]).sample for i in range(0, n, 128)]).clamp(-1, 1)
    out = ((y + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    acc = accuracy(classify(load_evaluator(), out), labels)
    return {"n": n, "data_seed": data_seed, **{a: round(v, 4) for a, v in acc.items()}}


def train_diffusion(
    latents_mean: torch.Tensor,
    latents_std: torch.Tensor,
    labels: dict[str, np.ndarray],
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    args: argparse.Namespace,
    plan: StepPlan,
    log: Logger,
) -> UNet2DConditionModel:
    """Train the UNet on the frozen, pre-trained text encoder's hidden states."""
    torch.manual_seed(args.seed + 1)
    gen = torch.Generator().manual_seed(args.seed + 1)
    rng = np.random.default_rng(args.seed + 1)

    def new_unet() -> UNet2DConditionModel:
        return build_unet(args.unet_width, args.unet_layers, args.unet_text_time, args.unet_levels)

    unet = new_unet().train()
    ema_unet = new_unet().eval().requires_grad_(False)
    ema_unet.load_state_dict(unet.state_dict())
    params = list(unet.parameters())
    ema_pairs = list(zip(ema_unet.parameters(), params, strict=True))
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, plan.total, 100))
    noise_sched = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    alphas = noise_sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    n = len(latents_mean)
    scale = args.scaling_factor
    t0 = time.time()
    step = 0
    while step < plan.total:
        idx = torch.randint(0, n, (args.unet_batch,), generator=gen)
        eps0 = torch.randn(latents_mean[idx].shape, generator=gen)
        z0 = (latents_mean[idx] + latents_std[idx] * eps0) * scale
        captions = []
        for i in idx.tolist():
            if rng.random() < args.uncond_p:
                captions.append("")  # classifier-free guidance learns the empty prompt
            else:
                captions.append(shapes.caption(shapes.scene_from_labels(labels, i), rng)[0])
        ids = token_ids(tokenizer, captions)
        with torch.no_grad():
            cond = text_encoder(ids)[0]
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, 1000, (len(idx),), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        # Min-SNR-5 weighting: stops the easy low-noise steps from dominating the gradient.
        w = torch.clamp(snr[t], max=5.0) / snr[t]
        loss = (w * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in ema_pairs:
                pe.lerp_(p, 1 - decay)
        plan.after_step(step, log, "unet")
        if step % 25 == 0 or step == plan.total - 1:
            log(
                f"unet step {step}/{plan.total} loss {loss.item():.4f} lr "
                f"{sched.get_last_lr()[0]:.2e} ({(time.time() - t0) / (step + 1):.2f}s/step)"
            )
        if args.unet_snapshot and step > 0 and step % args.unet_snapshot == 0:
            snap = Path(__file__).resolve().parent / "runs" / f"snapshot_{Path(args.out).name}"
            save_pipeline(args, ema_unet, text_encoder, tokenizer, None, snap)
            log(f"snapshot saved to {snap}")
        step += 1
    return ema_unet


def save_pipeline(
    args: argparse.Namespace,
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    vae: AutoencoderKL | None,
    out: Path,
) -> None:
    if vae is None:
        vae = AutoencoderKL.from_pretrained(Path(args.out) / "vae", local_files_only=True)
    scheduler = PNDMScheduler.from_config(SCHEDULER_CONFIG)
    dtype = torch.float16 if args.fp16 else torch.float32
    # Copies, so that rounding to fp16 for the file never touches the weights being trained.
    pipe = StableDiffusionPipeline(
        vae=copy.deepcopy(vae).to(dtype),
        text_encoder=copy.deepcopy(text_encoder).to(dtype),
        tokenizer=tokenizer,
        unet=copy.deepcopy(unet).to(dtype),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    # PNDMScheduler drops clip_sample, but DDIM/DDPM built with from_config need it to be
    # False (as in Stable Diffusion 1.x's own scheduler_config.json).
    sched_file = out / "scheduler" / "scheduler_config.json"
    sched_cfg = json.loads(sched_file.read_text())
    sched_cfg["clip_sample"] = False
    sched_file.write_text(json.dumps(sched_cfg, indent=2, sort_keys=True) + "\n")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# Arguments of phases 1-3, taken from the earlier run's stats with --resume-from.
RESUMED_ARGS = (
    "n_data",
    "vae_steps",
    "vae_crop",
    "vae_lr",
    "vae_kl",
    "vae_channels",
    "text_steps",
    "text_batch",
    "text_lr",
    "unet_steps",
    "unet_batch",
    "unet_lr",
    "unet_width",
    "unet_layers",
    "unet_levels",
    "unet_text_time",
    "uncond_p",
    "ema",
    "minutes_budget",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("resources/models/ldstudio-shapes"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-data", type=int, default=16000)
    # Defaults are the shipped model's settings, so the bare command retrains it.
    parser.add_argument("--vae-steps", type=int, default=21247)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--vae-crop", type=int, default=32)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--vae-kl", type=float, default=1e-6)
    parser.add_argument(
        "--vae-channels", type=lambda v: tuple(int(c) for c in v.split(",")), default=VAE_CHANNELS
    )
    parser.add_argument("--unet-steps", type=int, default=11292)
    parser.add_argument("--unet-batch", type=int, default=32)
    parser.add_argument("--unet-lr", type=float, default=8e-4)
    parser.add_argument("--unet-width", type=int, default=64)
    parser.add_argument("--unet-layers", type=int, default=1)
    parser.add_argument("--unet-levels", type=int, default=3, choices=(2, 3))
    parser.add_argument("--text-steps", type=int, default=400)
    parser.add_argument("--text-batch", type=int, default=64)
    parser.add_argument("--text-lr", type=float, default=1e-3)
    # Off by default: in a trial run it did not speed up learning the background/colour.
    parser.add_argument("--unet-text-time", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--decoder-steps", type=int, default=600)
    parser.add_argument("--decoder-lr", type=float, default=2e-4)
    parser.add_argument("--uncond-p", type=float, default=0.1)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument(
        "--unet-snapshot", type=int, default=0, help="save a snapshot every N steps"
    )
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--reuse-vae", type=Path, default=None, help="skip VAE training (pilots)")
    parser.add_argument(
        "--resume-from",
        type=Path,
        default=None,
        help="take phases 1-3 (VAE, text encoder, UNet) from an earlier output folder",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--minutes-budget",
        type=float,
        default=None,
        help="fit the VAE and UNet step counts to this wall-clock budget (timed at the start)",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(__file__).resolve().parent / "runs"
    runs.mkdir(exist_ok=True)
    log = Logger(runs / f"train_{out.name}_seed{args.seed}.log")
    log(f"args {vars(args)}")
    t_start = time.time()
    # With a budget: 30 % for the VAE, 62 % for the UNet, the rest for rendering, the text
    # encoder, encoding, evaluating the VAE and saving.
    minutes = args.minutes_budget
    budget = {
        "vae": None if minutes is None else 60 * minutes * 0.30,
        "unet": None if minutes is None else 60 * minutes * 0.62,
    }

    prev: dict[str, Any] = {}
    if args.resume_from is not None:
        prev = json.loads((args.resume_from / "training_stats.json").read_text())
        for key in RESUMED_ARGS:
            setattr(args, key, prev["args"][key])

    images_np, labels = shapes.make_dataset(args.n_data, seed=args.seed)
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous()
    backgrounds = background_rgb(labels["background"])
    log(f"data: {args.n_data} scenes rendered")

    tokenizer = build_tokenizer(shapes.vocabulary(), out / "tokenizer")
    log(f"tokenizer: {len(tokenizer)} tokens")

    if args.resume_from is not None:
        # Phases 1-3 from an earlier run of this script (their weights round-trip exactly
        # through the fp16 files, and phase 4 starts by rounding to fp16 anyway).
        args.scaling_factor = prev["scaling_factor"]
        std = prev["latent_std"]
        roundtrip = prev["vae_roundtrip_evaluator_accuracy"]
        vae_seconds = prev["seconds"]["vae"]
        text_seconds = prev["seconds"]["text_encoder"]
        unet_seconds = prev["seconds"]["unet"]
        resumed_seconds = prev["seconds"]["total"]

        def component(cls: Any, name: str) -> Any:
            return cls.from_pretrained(
                args.resume_from / name, local_files_only=True, torch_dtype=torch.float32
            ).eval()

        vae = component(AutoencoderKL, "vae")
        text_encoder = component(CLIPTextModel, "text_encoder")
        unet = component(UNet2DConditionModel, "unet")
        log(f"phases 1-3 taken from {args.resume_from}")
    else:
        resumed_seconds = 0.0
        t_vae = time.time()
        if args.reuse_vae is not None:
            vae = AutoencoderKL.from_pretrained(
                args.reuse_vae, local_files_only=True, torch_dtype=torch.float32
            ).eval()
        else:
            plan = StepPlan(args.vae_steps, budget["vae"])
            vae = train_vae(
                images,
                backgrounds,
                plan,
                args.vae_batch,
                args.vae_crop,
                args.vae_lr,
                args.seed,
                log,
                args.vae_channels,
                args.vae_kl,
            )
            args.vae_steps = plan.total
        vae_seconds = time.time() - t_vae
        vae.save_pretrained(out / "vae", safe_serialization=True)

        t_enc = time.time()
        lat_mean, lat_std = encode_all(vae, images)
        std = lat_mean.std().item()
        args.scaling_factor = 1.0 / std
        vae.register_to_config(scaling_factor=args.scaling_factor)
        vae.save_pretrained(out / "vae", safe_serialization=True)
        vae_stats = vae_report(vae, images, lat_mean)
        log(
            f"latents encoded in {time.time() - t_enc:.0f}s: std {std:.4f} -> scaling_factor "
            f"{args.scaling_factor:.4f}, posterior std mean {lat_std.mean().item():.4f},"
            f" {vae_stats}"
        )

        roundtrip = vae_roundtrip_accuracy(vae)
        log(f"VAE round trip scored by the evaluator: {roundtrip}")

        t_text = time.time()
        text_encoder = pretrain_text_encoder(
            tokenizer, args.text_steps, args.text_batch, args.text_lr, args.seed + 2, log
        )
        text_seconds = time.time() - t_text

        t_unet = time.time()
        plan = StepPlan(args.unet_steps, budget["unet"])
        unet = train_diffusion(lat_mean, lat_std, labels, tokenizer, text_encoder, args, plan, log)
        args.unet_steps = plan.total
        unet_seconds = time.time() - t_unet

    t_dec = time.time()
    vae = finetune_decoder(
        vae,
        images,
        backgrounds,
        args.decoder_steps,
        args.vae_batch,
        args.decoder_lr,
        args.seed + 3,
        log,
    )
    decoder_seconds = time.time() - t_dec
    # Latents of the VAE as shipped (fp16-rounded), for its statistics and the preview fit.
    lat_mean, _ = encode_all(vae, images)
    vae_stats = vae_report(vae, images, lat_mean)
    roundtrip_final = vae_roundtrip_accuracy(vae)
    log(f"after the decoder phase: {vae_stats}, evaluator round trip {roundtrip_final}")

    save_pipeline(args, unet, text_encoder, tokenizer, vae, out)

    # The engine's own fitting (used for any model without a table); PSNR on held-out latents.
    n_fit = min(2000, len(lat_mean) * 4 // 5)
    weights, bias, _ = fit_latent_rgb(vae, lat_mean[:n_fit])
    psnr = latent_rgb_psnr(vae, lat_mean[n_fit : n_fit + 500], weights, bias)
    (out / "ldstudio_preview.json").write_text(
        json.dumps(
            {
                "format": 1,
                "space": "latent_unscaled",
                "weights": [[round(float(v), 6) for v in row] for row in weights],
                "bias": [round(float(v), 6) for v in bias],
                "output_range": "minus1_1",
                "psnr_db": round(psnr, 2),
                "fitted_on": n_fit,
            },
            indent=2,
        )
        + "\n"
    )
    log(f"preview factors: PSNR {psnr:.2f} dB")

    total = resumed_seconds + time.time() - t_start
    stats = {
        "seed": args.seed,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cpu": card.cpu_name(),
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "seconds": {
            "total": round(total, 1),
            "vae": round(vae_seconds, 1),
            "text_encoder": round(text_seconds, 1),
            "unet": round(unet_seconds, 1),
            "decoder": round(decoder_seconds, 1),
        },
        "parameters": {
            "vae": sum(p.numel() for p in vae.parameters()),
            "unet": sum(p.numel() for p in unet.parameters()),
            "text_encoder": sum(p.numel() for p in text_encoder.parameters()),
        },
        "vae": vae_stats,
        "vae_roundtrip_before_decoder_phase": roundtrip,
        "vae_roundtrip_evaluator_accuracy": roundtrip_final,
        "latent_std": std,
        "vae_channels": list(vae.config.block_out_channels),
        "scaling_factor": args.scaling_factor,
        "preview_psnr_db": round(psnr, 2),
        "tokenizer_size": len(tokenizer),
    }
    (out / "training_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    card.write_card(out)
    log(f"done in {total / 60:.1f} min; folder {folder_bytes(out) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
