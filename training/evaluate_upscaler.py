"""Scores the bundled upscalers against Pillow bicubic and Lanczos on the held-out pictures.

Each file is loaded the way ldstudio loads any upscaler: its layout is read from the
safetensors header (`detect_upscaler`), the Compact network is built from it and the weights
are loaded strictly. The held-out split (training/upscaler.py's PARTS: seeds and captions the
training split never used) is degraded two ways: the fixed mid-range degradation
(`eval_degradation`: blur, bicubic downscale, noise, JPEG; the noise seeded per picture) and a
clean bicubic downscale. PSNR is on RGB over [0, 255] with `scale` pixels cropped at each
border. Writes eval_results.json next to the files and prints the model card's table.

    python training/evaluate_upscaler.py --upscalers resources/upscalers
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ldstudio.core.models.safetensors import read_safetensors_header
from ldstudio.core.models.upscalers import ARCH_COMPACT, detect_upscaler
from ldstudio.engine.upscalers.compact import Compact
from training import upscaler as up

SCALES = (2, 4)
# Shared with the model card: both scales must clear this on the degraded held-out set.
REQUIRED_GAIN_DB = 1.0


def load_upscaler(path: Path) -> Compact:
    """A bundled file as ldstudio sees it: layout from the header, weights loaded strictly."""
    layout = detect_upscaler(read_safetensors_header(path).tensors)
    if layout is None or layout.architecture != ARCH_COMPACT:
        raise ValueError(f"{path}: not a Compact upscaler ({layout})")
    model = Compact(
        layout.in_channels, layout.out_channels, layout.features, layout.blocks, layout.scale
    )
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def recoloured_fixed(hr: np.ndarray, index: int) -> np.ndarray:
    return up.recolour(hr, np.random.default_rng(20_000 + index))


def score(model: Compact, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean PSNR over (HR, LR) pairs of the model, bicubic and Lanczos enlargements."""
    scale = model.scale
    sums = {"model": 0.0, "bicubic": 0.0, "lanczos": 0.0}
    for hr, lr in pairs:
        sums["model"] += up.psnr(up.upscale(model, lr), hr, scale)
        bicubic = up.resize(lr, scale, Image.Resampling.BICUBIC)
        sums["bicubic"] += up.psnr(bicubic, hr, scale)
        sums["lanczos"] += up.psnr(up.resize(lr, scale, Image.Resampling.LANCZOS), hr, scale)
    result = {k: round(v / len(pairs), 2) for k, v in sums.items()}
    result["gain_over_bicubic"] = round(result["model"] - result["bicubic"], 2)
    return result


def evaluate(folder: Path, heldout: list[np.ndarray], sizes: list[int]) -> dict:
    report: dict = {
        "heldout": {
            "n": len(heldout),
            "by_size": {str(s): sizes.count(s) for s in sorted(set(sizes))},
            "parts": [asdict(p) for p in up.PARTS if p.split == "heldout"],
        },
        "psnr": "RGB, [0, 255], border of `scale` px cropped; mean over pictures",
        "models": {},
    }
    for scale in SCALES:
        path = folder / up.file_name(scale)
        model = load_upscaler(path)
        entry: dict = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "parameters": up.param_count(model),
            "features": model.body[0].out_channels,
            "convs": (len(model.body) - 3) // 2,
            "degradation": asdict(up.eval_degradation(scale)),
        }
        degraded = [(hr, up.degrade_fixed(hr, scale, i)) for i, hr in enumerate(heldout)]
        clean = [(hr, up.clean_lr(hr, scale)) for hr in heldout]
        entry["degraded"] = score(model, degraded)
        entry["clean"] = score(model, clean)
        # Off the palette: how much the model relies on the ten training colours.
        recoloured = [recoloured_fixed(hr, i) for i, hr in enumerate(heldout)]
        entry["recoloured_degraded"] = score(
            model, [(hr, up.degrade_fixed(hr, scale, i)) for i, hr in enumerate(recoloured)]
        )
        entry["recoloured_clean"] = score(
            model, [(hr, up.clean_lr(hr, scale)) for hr in recoloured]
        )
        for size in sorted(set(sizes)):
            picked = [i for i, s in enumerate(sizes) if s == size]
            entry[f"degraded_{size}px"] = score(model, [degraded[i] for i in picked])
        report["models"][f"x{scale}"] = entry
    return report


def table(report: dict) -> str:
    rows = [
        "| scale | LR input | model | bicubic | Lanczos | model − bicubic |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in report["models"].items():
        for kind in ("degraded", "clean", "recoloured_degraded", "recoloured_clean"):
            r = entry[kind]
            label = kind.replace("_", ", ")
            rows.append(
                f"| {name} | {label} | {r['model']:.2f} dB | {r['bicubic']:.2f} dB | "
                f"{r['lanczos']:.2f} dB | {r['gain_over_bicubic']:+.2f} dB |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upscalers", type=Path, default=up.DEFAULT_OUT)
    parser.add_argument("--data", type=Path, default=up.DEFAULT_DATA, help="cached pictures")
    parser.add_argument("--model", type=Path, default=up.DEFAULT_MODEL, help="diffusion model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    up.ensure_data(args.data, args.model)
    heldout = up.load_split(args.data, "heldout")
    sizes = [image.shape[0] for image in heldout]
    report = evaluate(args.upscalers, heldout, sizes)
    print(json.dumps(report, indent=2))
    print(table(report))
    if not args.no_write:
        out = args.upscalers / "eval_results.json"
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {out}")
    short = [
        n
        for n, e in report["models"].items()
        if e["degraded"]["gain_over_bicubic"] < REQUIRED_GAIN_DB
    ]
    if short:
        sys.exit(f"below the {REQUIRED_GAIN_DB} dB gain over bicubic: {', '.join(short)}")


if __name__ == "__main__":
    main()
