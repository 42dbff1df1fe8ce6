"""Writes the bundled model's card (README.md) from the measured stats files in its folder.

Inputs, all optional and all written by the scripts that measured them: training_stats.json
(train.py), eval_results.json (evaluate.py), benchmark.json (bench_bundled_model.py --json
output saved there), ldstudio_preview.json, and the evaluator's config.json.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from training import shapes

EVALUATOR_CONFIG = Path(__file__).resolve().parent / "evaluator" / "config.json"
TARGETS = {"color": 0.95, "background": 0.95, "shape": 0.90, "position": 0.85}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def _grammar() -> str:
    def words(d: dict[str, tuple[str, ...]]) -> str:
        return "\n".join(f"| {k} | {', '.join(repr(w) for w in v)} |" for k, v in d.items())

    templates = "\n".join(f"- `{t}`" for t in shapes.TEMPLATES)
    size_rows = "\n".join(
        f"| {k} | {', '.join(repr(w) for w in v)} | {shapes.SIZE_RADIUS[k]:.0f} px |"
        for k, v in shapes.SIZE_WORDS.items()
    )
    colors = ", ".join(f"{n} `{c}`" for n, c in shapes.COLORS.items())
    return f"""\
### Grammar

A caption names one object on a flat background. Every part except the object noun may be
left out (each with probability 0.15 in training; the shape noun with 0.075, replaced by
"shape"); a left-out attribute is drawn at random. Templates (`{{obj}}` is
`[a|an] [size] [colour] shape-word`, the article itself dropped one time in five):

{templates}

Colours (foreground and background use the same ten; they never coincide): {colors}.

| shape | words |
|---|---|
{words(shapes.SHAPE_WORDS)}

| size | words | radius at 64 px |
|---|---|---|
{size_rows}

| position | phrases |
|---|---|
{words(shapes.POSITION_PHRASES)}

Examples: "a large red star in the top left on a blue background", "blue background, small
yellow circle", "an image of a tiny white heart at the bottom right, black background",
"a green ring on pink", "huge cyan box, in the middle, orange background".

Vocabulary: the tokenizer keeps each of these {len(shapes.vocabulary())} words as one token:
{", ".join(f"`{w}`" for w in shapes.vocabulary())}. Anything else is split into sub-word or
byte pieces (every byte is a token, so no input fails to tokenise); such words were never seen
in training and have little effect on the picture.
"""


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _roundtrip(rt: dict | None) -> str:
    if not rt:
        return "not measured"
    return ", ".join(f"{a} {_pct(v)}" for a, v in rt.items() if a not in ("n", "data_seed"))


def write_card(folder: Path) -> None:
    stats = _load(folder / "training_stats.json")
    ev = _load(folder / "eval_results.json")
    bench = _load(folder / "benchmark.json")
    prev = _load(folder / "ldstudio_preview.json")
    evcfg = _load(EVALUATOR_CONFIG)
    args = stats.get("args", {})
    params = stats.get("parameters", {})
    secs = stats.get("seconds", {})
    machine = stats.get("machine", {})

    sizes = "\n".join(
        f"| {sub} | {_mb(folder / sub):.2f} MB |"
        for sub in ("vae", "unet", "text_encoder", "tokenizer", "scheduler")
        if (folder / sub).exists()
    )

    if ev:
        acc = ev["accuracy"]
        rows = []
        for a in ("color", "background", "shape", "position", "size", "all_named_attributes"):
            target = TARGETS.get(a)
            verdict = (
                ""
                if target is None
                else (f"≥ {_pct(target)}: {'met' if acc[a]['accuracy'] >= target else 'NOT met'}")
            )
            rows.append(f"| {a} | {_pct(acc[a]['accuracy'])} | {acc[a]['n']} | {verdict} |")
        gen = (
            f"{ev['n_images']} images from random grammar captions (seed {ev['seed']}), one random"
            f' seed each, {ev["scheduler"]} ("Euler a"), {ev["steps"]} steps, guidance'
            f" {ev['guidance_scale']}, {ev['size'][0]}x{ev['size'][1]}. An attribute is scored"
            " only on images whose caption names it.\n\n"
            "| attribute | accuracy | images scored | target |\n|---|---|---|---|\n"
            + "\n".join(rows)
        )
    else:
        gen = "Not measured yet."

    if evcfg:
        ea = evcfg["held_out_accuracy"]
        evaluator = (
            f"A {evcfg['parameters'] / 1e6:.2f} M-parameter CNN (`training/evaluator.py`,"
            f" weights in `training/evaluator/`) trained {evcfg['train_seconds'] / 60:.1f} min on"
            f" {evcfg['train_samples']} rendered scenes with blur/noise/colour-shift augmentation."
            f" Held-out accuracy on {evcfg['held_out_samples']} fresh real scenes: "
            + ", ".join(f"{a} {100 * v:.2f} %" for a, v in ea.items())
            + "."
        )
    else:
        evaluator = "Not trained yet."

    bench_txt = (
        f"Median {bench['median_s']:.3f} s per image (min {bench['min_s']:.3f}, max"
        f" {bench['max_s']:.3f}) over {bench['runs']} runs after a warm-up, {bench['settings']},"
        f" on {bench['cpu']} ({bench['cpu_count']} CPUs, {bench['threads']} threads), torch"
        f" {bench['torch']}. `python benchmarks/bench_bundled_model.py`."
        if bench
        else "Not measured yet."
    )
    vae_stats = stats.get("vae", {})
    rt = stats.get("vae_roundtrip_evaluator_accuracy")
    rt_text = (
        "Encoding and decoding "
        f"{rt['n']} fresh real scenes (no diffusion at all) and scoring the round trip with the"
        " evaluator gives "
        + _roundtrip(rt)
        + ": what the VAE lets through, a rough ceiling for any UNet on top of it."
        if rt
        else ""
    )
    missed = [a for a, t in TARGETS.items() if ev["accuracy"][a]["accuracy"] < t] if ev else []
    if not ev:
        shortfalls = "Not measured yet."
    elif missed:
        shortfalls = (
            f"Targets not met: {', '.join(missed)}. {rt_text} {stats.get('shortfall_notes', '')}"
        )
    else:
        shortfalls = f"None: all four targets are met. {rt_text}"
    retrain = (
        f"python training/train.py --out resources/models/ldstudio-shapes --seed"
        f" {stats.get('seed', 0)} --n-data {args.get('n_data')} \\\n"
        f"    --vae-steps {args.get('vae_steps')} --vae-batch {args.get('vae_batch')}"
        f" --vae-lr {args.get('vae_lr')} --vae-kl {args.get('vae_kl')} \\\n"
        f"    --vae-channels {','.join(str(c) for c in stats.get('vae_channels', []))}"
        f" --text-steps {args.get('text_steps')} --text-batch {args.get('text_batch')} \\\n"
        f"    --unet-steps {args.get('unet_steps')} --unet-batch {args.get('unet_batch')}"
        f" --unet-lr {args.get('unet_lr')} --unet-width {args.get('unet_width')}"
        f" --unet-layers {args.get('unet_layers')} --unet-levels {args.get('unet_levels')} \\\n"
        f"    --decoder-steps {args.get('decoder_steps')} --decoder-lr {args.get('decoder_lr')}"
        f" --threads {args.get('threads')}"
    )
    width = args.get("unet_width", 0)
    levels = args.get("unet_levels", 2)
    unet_channels = (width, 2 * width, 2 * width)[:levels]
    grids = [f"{8 >> i}x{8 >> i}" for i in range(levels)]
    arch = [
        (
            "VAE (`AutoencoderKL`)",
            f"4 blocks, channels {'/'.join(str(c) for c in stats.get('vae_channels', []))},"
            " 1 layer per block, 4 latent channels, 8x down, no mid-block attention,"
            " GroupNorm 8 groups",
            f"{params.get('vae', 0) / 1e6:.2f} M",
        ),
        (
            "UNet (`UNet2DConditionModel`)",
            f"8x8x4 latents, {levels} levels ({' / '.join(grids)}),"
            f" channels {'/'.join(str(c) for c in unet_channels)},"
            f" {args.get('unet_layers', '?')} layer(s) per block,"
            " cross-attention at every level and the mid block (8 heads), cross-attention"
            " dim 128",
            f"{params.get('unet', 0) / 1e6:.2f} M",
        ),
        (
            "text encoder (`CLIPTextModel`)",
            "3 layers, width 128, 4 heads, 77 positions",
            f"{params.get('text_encoder', 0) / 1e6:.2f} M",
        ),
        (
            "tokenizer (`CLIPTokenizer`)",
            f"own byte-level BPE, {stats.get('tokenizer_size', '?')} tokens",
            "–",
        ),
        (
            "scheduler",
            "SD 1.x schedule: 1000 steps, scaled_linear betas 0.00085–0.012, epsilon"
            " prediction; stored as `PNDMScheduler`, builds Euler/Euler a/DPM++/DDIM/UniPC/LCM"
            " with `from_config`",
            "–",
        ),
    ]
    arch_rows = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in arch)
    text = f"""\
# ldstudio-shapes

ldstudio's built-in model: a small latent diffusion model, trained from scratch on this
project's procedural data set, that draws one coloured shape on a flat background at 64x64.
It lets a fresh, offline install generate on first launch and gives the test suite a real model
whose pictures can be checked. It draws nothing else.

Load it like any Stable Diffusion 1.x folder:

```python
pipe = StableDiffusionPipeline.from_pretrained(
    "resources/models/ldstudio-shapes", local_files_only=True, torch_dtype=torch.float32
)
```

## What it draws

Six shapes (circle, square, triangle, star, heart, ring), ten colours, three sizes, nine
positions on a 3x3 grid, on a background of any other of the ten colours.

{_grammar()}
## Data

`training/shapes.py` renders each scene at 4x and box-filters it to 64x64 (anti-aliased
edges), with ±0.75 px size and ±1.5 px position jitter. Training used
{args.get("n_data", "?")} scenes from seed {stats.get("seed", "?")}; captions are re-drawn from
the grammar every time a scene is used, and {_pct(args.get("uncond_p", 0.1))} of them are the
empty prompt so classifier-free guidance works.

## Architecture

| part | configuration | parameters |
|---|---|---|
{arch_rows}

`vae.config.scaling_factor` = {stats.get("scaling_factor", 0):.4f} (1 / std of the encoded
training latents, std {stats.get("latent_std", 0):.4f}). VAE reconstruction on 512 training
scenes: mean absolute error {vae_stats.get("recon_mae_uint8", "?")} / 255, PSNR
{vae_stats.get("recon_psnr_db", "?")} dB.

Weights are stored as {"fp16" if args.get("fp16", True) else "fp32"} safetensors (trained in
fp32); load with `torch_dtype=torch.float32` on a CPU. Size on disk, {_mb(folder):.2f} MB in all:

| folder | size |
|---|---|
{sizes}

## Training

One command, from the repository root (CPU only, `HF_HUB_OFFLINE=1`, nothing downloaded):

```
{retrain}
python training/evaluator.py --seed 1          # only if training/evaluator/ is missing
python training/evaluate.py --model resources/models/ldstudio-shapes --n 256 --seed 1234
python benchmarks/bench_bundled_model.py --json
```

Four phases, from one seed:

1. **VAE** ({args.get("vae_steps", "?")} steps, batch {args.get("vae_batch", "?")}
   {args.get("vae_crop", "?")}x{args.get("vae_crop", "?")} crops on the 8-pixel latent grid, half of
   them placed over the shape, AdamW {args.get("vae_lr", "?")} cosine, MSE + L1 with the
   shape's pixels weighted 4x, + {args.get("vae_kl", "?")}·KL per pixel). The data set is then
   encoded to latents once.
2. **Text encoder**, alone ({args.get("text_steps", "?")} steps, batch
   {args.get("text_batch", "?")} captions, no images): linear heads must read every attribute
   a caption names, or "not named", from each hidden state at or after the end token, the
   positions cross-attention mostly reads. It is then frozen. (Trained jointly with the UNet
   from scratch, an earlier version never learnt position phrases.)
3. **UNet** ({args.get("unet_steps", "?")} steps, batch {args.get("unet_batch", "?")}, AdamW
   {args.get("unet_lr", "?")} cosine, min-SNR-5 weighted epsilon loss, EMA
   {args.get("ema", "?")}, saved from the EMA) on the frozen text encoder's hidden states.
4. **Decoder polish** ({args.get("decoder_steps", "?")} steps, batch {args.get("vae_batch", "?")}
   whole scenes, AdamW {args.get("decoder_lr", "?")} cosine): the VAE, rounded to fp16 as it
   ships, trains its decoder only (the encoder, so the UNet's latents, stay as they were) on
   the pixel loss plus the error of each scene's mean shape colour. Trained on crops alone,
   the decoder faded small shapes towards their background; evaluator round trip before this
   phase: {_roundtrip(stats.get("vae_roundtrip_before_decoder_phase"))}.

Losses are logged to `training/runs/`.

Measured: {secs.get("total", 0) / 60:.1f} min in all (VAE {secs.get("vae", 0) / 60:.1f} min,
text encoder {secs.get("text_encoder", 0) / 60:.1f} min, UNet {secs.get("unet", 0) / 60:.1f} min,
decoder {secs.get("decoder", 0) / 60:.1f} min)
on {machine.get("cpu", "?")} with {machine.get("threads", "?")} torch thread(s), torch
{machine.get("torch", "?")}.
Same seed and arguments give the same model on the same machine and torch build.
{stats.get("provenance", "")}

## Does it draw what it is told?

**Evaluator.** {evaluator}

**Generations.** {gen}

## Known shortfalls (measured)

{shortfalls}

## Speed

{bench_txt}

## Previews

`ldstudio_preview.json` holds a least-squares latent->RGB map for live previews: 4x3 weights
and 3 biases applied to the *unscaled* latent (`vae.encode(x).latent_dist.mean`, i.e. before
`scaling_factor`), giving RGB in [-1, 1]. Fitted on {prev.get("fitted_on", "?")} latents of
training scenes against the VAE decode average-pooled to 8x8. Fidelity: PSNR
{prev.get("psnr_db", "?")} dB of the bilinearly upsampled 8x8 preview against the full VAE
decode (500 other scenes, images mapped to [0, 1]). Fitting code:
`ldstudio/engine/previews.py::fit_latent_rgb`, the same fitting the engine uses for any
model without a table.
"""
    (folder / "README.md").write_text(text)
