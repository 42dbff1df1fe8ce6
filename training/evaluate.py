"""Scores a shapes model: generate from random grammar captions, read them back with the evaluator.

Uses ldstudio's default settings (Euler a, 20 steps, guidance 7.0, native size) through
`StableDiffusionPipeline`, scores only the attributes each caption names, writes the numbers to
`eval_results.json` in the model folder and refreshes its model card.

    python training/evaluate.py --model resources/models/ldstudio-shapes --n 256 --seed 1234
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training import card, shapes
from training.evaluator import classify, load_evaluator

DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.0


def load_pipeline(folder: Path) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, local_files_only=True, safety_checker=None, torch_dtype=torch.float32
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_prompts(
    n: int, seed: int
) -> tuple[list[str], list[dict[str, bool]], dict[str, np.ndarray]]:
    """n grammar captions with their ground truth and which attributes each one names."""
    rng = np.random.default_rng(seed)
    prompts, keeps = [], []
    labels: dict[str, list[int]] = {a: [] for a in shapes.ATTRIBUTES}
    for _ in range(n):
        scene = shapes.random_scene(rng)
        text, keep = shapes.caption(scene, rng)
        prompts.append(text)
        keeps.append(keep)
        for a, v in scene.labels().items():
            labels[a].append(v)
    return prompts, keeps, {a: np.asarray(v) for a, v in labels.items()}


@torch.no_grad()
def generate(
    pipe: StableDiffusionPipeline, prompts: list[str], seeds: list[int], batch: int = 16
) -> np.ndarray:
    """(N, H, W, 3) uint8 images, one per prompt, each from its own seeded generator."""
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        images = pipe(
            prompts[i : i + batch],
            num_inference_steps=DEFAULT_STEPS,
            guidance_scale=DEFAULT_GUIDANCE,
            generator=gens,
            output_type="np",
        ).images
        out.append((np.clip(images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


def score(
    images: np.ndarray, keeps: list[dict[str, bool]], labels: dict[str, np.ndarray]
) -> dict[str, dict[str, float | int]]:
    """Per-attribute accuracy over the images whose caption names that attribute."""
    pred = classify(load_evaluator(), images)
    result: dict[str, dict[str, float | int]] = {}
    all_ok = np.ones(len(images), dtype=bool)
    for a in shapes.ATTRIBUTES:
        named = np.array([k[a] for k in keeps])
        correct = pred[a] == labels[a]
        all_ok &= correct | ~named
        result[a] = {"accuracy": float(correct[named].mean()), "n": int(named.sum())}
    result["all_named_attributes"] = {"accuracy": float(all_ok.mean()), "n": len(images)}
    return result


def save_grid(images: np.ndarray, path: Path, cols: int = 16) -> None:
    n = len(images) // cols * cols
    h, w = images.shape[1:3]
    grid = images[:n].reshape(-1, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(-1, cols * w, 3)
    Image.fromarray(grid).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("resources/models/ldstudio-shapes"))
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-card", action="store_true", help="do not write results/card")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = load_pipeline(args.model)
    prompts, keeps, labels = sample_prompts(args.n, args.seed)
    seeds = [args.seed * 100_000 + i for i in range(args.n)]
    t0 = time.time()
    images = generate(pipe, prompts, seeds)
    seconds = time.time() - t0
    result = score(images, keeps, labels)
    runs = Path(__file__).resolve().parent / "runs"
    runs.mkdir(exist_ok=True)
    save_grid(images, runs / f"eval_{args.model.name}.png")
    (runs / f"eval_{args.model.name}_prompts.txt").write_text("\n".join(prompts) + "\n")
    report = {
        "n_images": args.n,
        "seed": args.seed,
        "scheduler": "EulerAncestralDiscreteScheduler",
        "steps": DEFAULT_STEPS,
        "guidance_scale": DEFAULT_GUIDANCE,
        "size": list(images.shape[1:3]),
        "generation_seconds": round(seconds, 1),
        "accuracy": result,
    }
    print(json.dumps(report, indent=2))
    if not args.no_card:
        (args.model / "eval_results.json").write_text(json.dumps(report, indent=2) + "\n")
        card.write_card(args.model)


if __name__ == "__main__":
    main()
