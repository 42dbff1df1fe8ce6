"""What A1111-style prompt encoding costs: weights and chunks against the pipeline's own
encoding of the same text.

    python benchmarks/bench_prompts.py [--models bundled,sd15] [--runs 20]

Per model, alternated in one process (median of --runs): diffusers' `encode_prompt` of a
prompt and a negative prompt with classifier-free guidance (what a plain job runs), and
ldstudio's `engine/prompts.encode` of the same prompts with weights on a third of the words
(`(word:1.2)`), the same number of tokens (one chunk). The difference is the parsing,
per-segment tokenizing and weighting; goal: under 5 % of the text encoding time. A second
row times a 3-chunk prompt (its cost grows with the chunks the encoder runs, as it must).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from common import machine, machine_line, median, sd15_folder, write_results

from ldstudio.core.params import GenerationParams
from ldstudio.core.paths import bundled_model_dir

GOAL = 0.05
WORDS = ["a", "castle", "on", "a", "hill", "at", "sunset", "with", "red", "flags", "and"]


def prompts(words: int) -> tuple[str, str]:
    plain = " ".join(WORDS[i % len(WORDS)] for i in range(words))
    weighted = " ".join(
        f"({WORDS[i % len(WORDS)]}:1.2)" if i % 3 == 0 else WORDS[i % len(WORDS)]
        for i in range(words)
    )
    return plain, weighted


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(folder: Path, runs: int) -> list[dict[str, Any]]:
    from diffusers import StableDiffusionPipeline

    from ldstudio.engine.prompts import encode

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    negative = "blurry, low quality"
    rows = []
    for words in (14, 150):
        plain, weighted = prompts(words)
        params = GenerationParams(prompt=weighted, negative_prompt=negative)

        def theirs(text: str = plain) -> None:
            with torch.no_grad():
                pipe.encode_prompt(text, "cpu", 1, True, negative)

        def ours(p: GenerationParams = params) -> None:
            encode(pipe, p, "cpu")

        theirs()
        ours()
        a, b = [], []
        for _ in range(runs):
            a.append(timed(theirs))
            b.append(timed(ours))
        chunks = encode(pipe, params, "cpu").chunks
        rows.append(
            {
                "model": folder.name,
                "words": words,
                "chunks": chunks,
                "pipeline_encode_ms": round(median(a) * 1e3, 2),
                "weighted_encode_ms": round(median(b) * 1e3, 2),
                "extra_fraction": round(median(b) / median(a) - 1, 4),
                "goal": GOAL if chunks == 1 else None,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bundled,sd15")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    info = machine()
    print(machine_line(info))
    rows = []
    known = {"bundled": bundled_model_dir, "sd15": sd15_folder}
    for name in args.models.split(","):
        folder = known[name]() if name in known else Path(name)
        for row in bench(Path(folder), args.runs):
            rows.append(row)
            note = "" if row["goal"] is None else f" (goal < {GOAL:.0%})"
            print(
                f"{row['model']}: {row['words']} words, {row['chunks']} chunk(s): pipeline "
                f"{row['pipeline_encode_ms']} ms, weighted {row['weighted_encode_ms']} ms, "
                f"extra {row['extra_fraction']:+.1%}{note}"
            )
    path = write_results("prompts", {"machine": info, "runs": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
