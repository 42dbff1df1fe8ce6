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


def build_vae() -> AutoencoderKL:
    # Narrow full-resolution blocks (their cost dominates on a CPU); no mid-block attention so
    # the VAE is fully convolutional and can be trained on crops (4x cheaper per step).
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=VAE_CHANNELS,
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


def build_unet(width: int, layers: int, text_time: bool) -> UNet2DConditionModel:
    latent = shapes.IMAGE_SIZE // 8
    return UNet2DConditionModel(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        layers_per_block=layers,
        block_out_channels=(width, 2 * width),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
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

    With a budget, the first `probe` steps (inside the LR warm-up, whose values do not depend
    on the total) are timed and the total is then fixed once. Rerunning with that total as a
    fixed step count replays the same run, which is what the model card's command does.
    """

    def __init__(self, steps: int, budget_s: float | None, probe: int = 20) -> None:
        self.total = steps
        self.budget_s = budget_s
        self.probe = probe
        self.t0 = time.time()

    def after_step(self, step: int, log: Logger, name: str) -> None:
        if self.budget_s is not None and step + 1 == self.probe:
            per_step = (time.time() - self.t0) / self.probe
            # 0.9: the CPU is shared, so later steps may run slower than the timed ones.
            self.total = max(self.probe + 1, int(0.9 * self.budget_s / per_step))
            log(f"{name}: {per_step:.2f}s/step -> {self.total} steps for {self.budget_s:.0f}s")


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


def train_vae(
    images: torch.Tensor,
    backgrounds: torch.Tensor,
    plan: StepPlan,
    batch: int,
    crop: int,
    lr: float,
    seed: int,
    log: Logger,
) -> AutoencoderKL:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = build_vae().train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, plan.total, 50))
    n, size = len(images), images.shape[-1]
    t0 = time.time()
    step = 0
    while step < plan.total:
        idx = torch.randint(0, n, (batch,), generator=gen)
        # Crops on the 8-pixel latent grid, so training sees the same padding/alignment
        # pattern as full images.
        oy, ox = (torch.randint(0, (size - crop) // 8 + 1, (2,), generator=gen) * 8).tolist()
        x = images[idx, :, oy : oy + crop, ox : ox + crop].float().div(127.5).sub(1.0)
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
        loss = mse + l1 + 1e-4 * kl
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


def train_diffusion(
    latents_mean: torch.Tensor,
    latents_std: torch.Tensor,
    labels: dict[str, np.ndarray],
    tokenizer: CLIPTokenizer,
    args: argparse.Namespace,
    plan: StepPlan,
    log: Logger,
) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    torch.manual_seed(args.seed + 1)
    gen = torch.Generator().manual_seed(args.seed + 1)
    rng = np.random.default_rng(args.seed + 1)
    unet = build_unet(args.unet_width, args.unet_layers, args.unet_text_time).train()
    text_encoder = build_text_encoder(tokenizer).train()
    ema_unet = (
        build_unet(args.unet_width, args.unet_layers, args.unet_text_time)
        .eval()
        .requires_grad_(False)
    )
    ema_text = build_text_encoder(tokenizer).eval().requires_grad_(False)
    ema_unet.load_state_dict(unet.state_dict())
    ema_text.load_state_dict(text_encoder.state_dict())
    params = [*unet.parameters(), *text_encoder.parameters()]
    ema_pairs = list(zip([*ema_unet.parameters(), *ema_text.parameters()], params, strict=True))
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
        ids = tokenizer(
            captions,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
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
            save_pipeline(args, ema_unet, ema_text, tokenizer, None, snap)
            log(f"snapshot saved to {snap}")
        step += 1
    return ema_unet, ema_text


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("resources/models/ldstudio-shapes"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-data", type=int, default=16000)
    # Defaults are the shipped model's settings, so the bare command retrains it.
    parser.add_argument("--vae-steps", type=int, default=3301)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--vae-crop", type=int, default=32)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--unet-steps", type=int, default=4333)
    parser.add_argument("--unet-batch", type=int, default=32)
    parser.add_argument("--unet-lr", type=float, default=8e-4)
    parser.add_argument("--unet-width", type=int, default=64)
    parser.add_argument("--unet-layers", type=int, default=1)
    # Off by default: in a trial run it did not speed up learning the background/colour.
    parser.add_argument("--unet-text-time", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--uncond-p", type=float, default=0.1)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument(
        "--unet-snapshot", type=int, default=0, help="save a snapshot every N steps"
    )
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--reuse-vae", type=Path, default=None, help="skip VAE training (pilots)")
    # One thread by default: on a shared, busy CPU a second OpenMP thread mostly waits.
    parser.add_argument("--threads", type=int, default=1)
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
    # With a budget: 40 % for the VAE (the colours depend on it most), 50 % for the UNet, the
    # rest for rendering, encoding and saving.
    minutes = args.minutes_budget
    budget = {
        "vae": None if minutes is None else 60 * minutes * 0.40,
        "unet": None if minutes is None else 60 * minutes * 0.50,
    }

    images_np, labels = shapes.make_dataset(args.n_data, seed=args.seed)
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous()
    backgrounds = background_rgb(labels["background"])
    log(f"data: {args.n_data} scenes rendered")

    tokenizer = build_tokenizer(shapes.vocabulary(), out / "tokenizer")
    log(f"tokenizer: {len(tokenizer)} tokens")

    t_vae = time.time()
    if args.reuse_vae is not None:
        vae = AutoencoderKL.from_pretrained(
            args.reuse_vae, local_files_only=True, torch_dtype=torch.float32
        ).eval()
    else:
        plan = StepPlan(args.vae_steps, budget["vae"])
        vae = train_vae(
            images, backgrounds, plan, args.vae_batch, args.vae_crop, args.vae_lr, args.seed, log
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
        f"{args.scaling_factor:.4f}, posterior std mean {lat_std.mean().item():.4f}, {vae_stats}"
    )

    t_unet = time.time()
    plan = StepPlan(args.unet_steps, budget["unet"])
    unet, text_encoder = train_diffusion(lat_mean, lat_std, labels, tokenizer, args, plan, log)
    args.unet_steps = plan.total
    unet_seconds = time.time() - t_unet

    save_pipeline(args, unet, text_encoder, tokenizer, vae, out)

    # The engine's own fitting (used for any model without a table); PSNR on held-out latents.
    weights, bias, _ = fit_latent_rgb(vae, lat_mean[:2000])
    psnr = latent_rgb_psnr(vae, lat_mean[2000:2500], weights, bias)
    (out / "ldstudio_preview.json").write_text(
        json.dumps(
            {
                "format": 1,
                "space": "latent_unscaled",
                "weights": [[round(float(v), 6) for v in row] for row in weights],
                "bias": [round(float(v), 6) for v in bias],
                "output_range": "minus1_1",
                "psnr_db": round(psnr, 2),
                "fitted_on": 2000,
            },
            indent=2,
        )
        + "\n"
    )
    log(f"preview factors: PSNR {psnr:.2f} dB")

    total = time.time() - t_start
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
            "unet_and_text_encoder": round(unet_seconds, 1),
        },
        "parameters": {
            "vae": sum(p.numel() for p in vae.parameters()),
            "unet": sum(p.numel() for p in unet.parameters()),
            "text_encoder": sum(p.numel() for p in text_encoder.parameters()),
        },
        "vae": vae_stats,
        "latent_std": std,
        "vae_channels": list(VAE_CHANNELS),
        "scaling_factor": args.scaling_factor,
        "preview_psnr_db": round(psnr, 2),
        "tokenizer_size": len(tokenizer),
    }
    (out / "training_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    card.write_card(out)
    log(f"done in {total / 60:.1f} min; folder {folder_bytes(out) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
