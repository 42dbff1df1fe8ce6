"""The attribute classifier that scores generated shapes images, and the script that trains it.

A small CNN with one head per attribute (shape, colour, background, size, position), trained on
freshly rendered ground truth with blur/noise/colour augmentation so that slightly soft
generated images are read the way a person would read them. Weights live in
training/evaluator/ as safetensors + json.

    python training/evaluator.py --seed 1 [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training import shapes

EVALUATOR_DIR = Path(__file__).resolve().parent / "evaluator"


class AttributeClassifier(nn.Module):
    """Conv trunk down to 4x4 (kept spatial so position stays readable), one linear head each."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        # The first convolution already strides: at 64x64 it would cost as much as the rest.
        chans = [(3, w, 2), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 2)]
        layers: list[nn.Module] = []
        for cin, cout, stride in chans:
            layers += [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        self.trunk = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({a: nn.Linear(256, n) for a, n in shapes.NUM_CLASSES.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, 64, 64) in [-1, 1]; returns logits per attribute."""
        h = self.fc(self.trunk(x))
        return {a: head(h) for a, head in self.heads.items()}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur, colour shift and noise of about the size a small VAE/diffusion model produces."""
    b = x.shape[0]
    sigma = torch.rand(b, generator=gen) * 1.2
    k = torch.arange(-3, 4, dtype=torch.float32)
    kern = torch.exp(-(k[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))
    kern = kern / kern.sum(1, keepdim=True)  # (b, 7)
    xp = F.pad(x, (3, 3, 3, 3), mode="replicate")
    # Separable per-image blur through grouped convolution.
    xr = xp.reshape(1, b * 3, *xp.shape[-2:])
    kh = kern.repeat_interleave(3, 0)[:, None, None, :]
    kv = kern.repeat_interleave(3, 0)[:, None, :, None]
    xr = F.conv2d(F.conv2d(xr, kh, groups=b * 3), kv, groups=b * 3)
    x = xr.reshape(b, 3, *x.shape[-2:])
    x = x + (torch.rand(b, 3, 1, 1, generator=gen) - 0.5) * 0.12
    x = x + torch.randn(x.shape, generator=gen) * torch.rand(b, 1, 1, 1, generator=gen) * 0.06
    return x.clamp(-1, 1)


def load_evaluator(folder: Path = EVALUATOR_DIR) -> AttributeClassifier:
    cfg = json.loads((folder / "config.json").read_text())
    model = AttributeClassifier(width=cfg["width"])
    model.load_state_dict(load_file(folder / "evaluator.safetensors"))
    return model.eval()


@torch.no_grad()
def classify(
    model: AttributeClassifier, images: np.ndarray, batch: int = 256
) -> dict[str, np.ndarray]:
    """Predicted class index per attribute for (N, 64, 64, 3) uint8 images."""
    out: dict[str, list[np.ndarray]] = {a: [] for a in shapes.ATTRIBUTES}
    for i in range(0, len(images), batch):
        logits = model(to_tensor(images[i : i + batch]))
        for a in shapes.ATTRIBUTES:
            out[a].append(logits[a].argmax(1).numpy())
    return {a: np.concatenate(v) for a, v in out.items()}


def accuracy(pred: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    return {a: float((pred[a] == labels[a]).mean()) for a in shapes.ATTRIBUTES}


def train(seed: int, steps: int, n_train: int, batch: int, log: Path) -> dict[str, object]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    images, labels = shapes.make_dataset(n_train, seed=seed * 1000 + 1)
    x_all = to_tensor(images)
    y_all = {a: torch.from_numpy(v) for a, v in labels.items()}
    model = AttributeClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    with log.open("w") as f:
        for step in range(steps):
            idx = torch.randint(0, n_train, (batch,), generator=gen)
            logits = model(augment(x_all[idx], gen))
            loss = sum(F.cross_entropy(logits[a], y_all[a][idx]) for a in shapes.ATTRIBUTES)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 50 == 0 or step == steps - 1:
                f.write(f"step {step} loss {loss.item():.4f} t {time.time() - t0:.0f}s\n")
                f.flush()
    model.eval()
    test_images, test_labels = shapes.make_dataset(5000, seed=seed * 1000 + 2)
    acc = accuracy(classify(model, test_images), test_labels)
    return {
        "seed": seed,
        "steps": steps,
        "train_samples": n_train,
        "batch": batch,
        "held_out_samples": 5000,
        "held_out_accuracy": acc,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.time() - t0, 1),
        "_model": model,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--n-train", type=int, default=40000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=EVALUATOR_DIR)
    # One thread by default: on a shared, busy CPU a second OpenMP thread mostly waits.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = Path(__file__).resolve().parent / "runs" / "evaluator_log.txt"
    log.parent.mkdir(exist_ok=True)
    result = train(args.seed, args.steps, args.n_train, args.batch, log)
    model = result.pop("_model")
    assert isinstance(model, AttributeClassifier)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        args.out / "evaluator.safetensors",
    )
    (args.out / "config.json").write_text(json.dumps({"width": 32, **result}, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
