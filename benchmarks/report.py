"""Builds docs/benchmarks.md from the JSON results in docs/benchmarks/.

python benchmarks/report.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, machine_line

# Published figures to read ours against (diffusers' docs and stable-fast's README).
GPU_REFERENCES = [
    ("SD 1.5, 512×512, fp16, A100, diffusers eager", "≈ 22 it/s"),
    ("SD 1.5, 512×512, fp16, A100, diffusers + torch.compile", "≈ 50 it/s"),
    ("SD 1.5, 512×512, fp16, H100, stable-fast", "≈ 105 it/s"),
]


def overhead_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Overhead: ldstudio's engine vs a bare `pipe(...)`",
        "",
        f"Measured on {machine_line(data['machine'])}. Alternating runs in one process, median "
        "ratio (engine run includes writing the PNG with metadata; the ratio without that write "
        "is beside it). Goals: ≤ 1.03× previews off, ≤ 1.05× latent2rgb every step.",
        "",
        "| model | size | steps | preview | bare (s) | ratio | without PNG write | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        for method in ("none", "latent2rgb", "taesd", "vae"):
            row = run.get(method)
            if not row:
                continue
            goal = row.get("goal")
            verdict = "—"
            if goal:
                miss = row["ratio_median"] - goal
                verdict = f"≤ {goal} ✓" if miss <= 0 else f"≤ {goal} ✗ (over by {miss:.3f})"
            lines.append(
                f"| {run['model']} | {run['size']}² | {run['steps']} | {method} | "
                f"{row['bare_median_s']:.3f} | {row['ratio_median']:.3f}× | "
                f"{row['ratio_without_png_write']:.3f}× | {verdict} |"
            )
    for run in data["runs"]:
        for method in ("none", "latent2rgb"):
            profile = run.get(method, {}).get("profile")
            if profile:
                lines += [
                    "",
                    f"Profile of one engine run ({run['model']}, {method}), ldstudio's "
                    "own functions by cumulative time:",
                    "",
                ]
                lines += [f"- `{entry}`" for entry in profile]
    return lines


def memory_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Memory",
        "",
        f"Measured on {machine_line(data['machine'])}, each model in a fresh process.",
        "",
        "| model | device | size | after imports (MiB) | load peak (MiB) | generation peak (MiB) "
        "| VRAM load / generation (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in data["runs"]:
        vram = "—"
        if "load_peak_vram_mib" in row:
            vram = f"{row['load_peak_vram_mib']:.0f} / {row['generate_peak_vram_mib']:.0f}"
        lines.append(
            f"| {row['model']} | {row['device']} | {row['size']}² | {row['baseline_rss_mib']:.0f} "
            f"| {row['load_peak_rss_mib']:.0f} | {row['generate_peak_rss_mib']:.0f} | {vram} |"
        )
    return lines


def gpu_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## GPU",
        "",
        f"Measured on {machine_line(data['machine'])}. Random weights with the real "
        "architectures, fp16, Euler.",
        "",
        "| family | size | eager it/s | compiled it/s | compile warm-up (s) | ratio vs bare "
        "| preview ms/step | peak VRAM (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in data["runs"]:
        previews = ", ".join(f"{k} {v}" for k, v in row.get("preview_ms_per_step", {}).items())
        lines.append(
            f"| {row['family']} | {row['size']}² | {row.get('eager_it_s', '—')} | "
            f"{row.get('compiled_it_s', '—')} | {row.get('compile_warmup_s', '—')} | "
            f"{row.get('ratio_vs_bare', '—')}× | {previews or '—'} | "
            f"{row.get('peak_vram_mib', '—')} |"
        )
    if data.get("skipped"):
        lines += ["", f"Skipped for time: {', '.join(data['skipped'])}."]
    lines += ["", "Published references:", ""]
    lines += [f"- {what}: {figure}" for what, figure in GPU_REFERENCES]
    return lines


def gui_section(data: dict[str, Any]) -> list[str]:
    goal = data["goal_p99_ms"]
    lines = [
        "## GUI responsiveness while generating",
        "",
        f"Measured on {machine_line(data['machine'])}, {data['engine_threads']} torch threads on "
        f"the engine thread. {data['model']}: {data['images']} image(s) × {data['steps']} steps "
        "with a latent2rgb preview every step. A 10 ms timer on the GUI thread; lateness is how "
        f"late each tick fired. Goal: p99 ≤ {goal} ms while generating.",
        "",
        "| phase | p50 (ms) | p99 (ms) | max (ms) | ticks | goal |",
        "|---|---|---|---|---|---|",
    ]
    names = {"start": "engine start + model load", "generate": "generating"}
    for name, row in data["lateness"].items():
        verdict = "—"
        if name == "generate":
            miss = row["p99_ms"] - goal
            verdict = f"≤ {goal} ✓" if miss <= 0 else f"≤ {goal} ✗ (over by {miss:.1f} ms)"
        lines.append(
            f"| {names.get(name, name)} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} "
            f"| {row['ticks']} | {verdict} |"
        )
    previews = data["previews"]
    seconds = max(previews["seconds"], 1e-9)
    lines += [
        "",
        f"Previews: {previews['produced']} produced ({previews['produced'] / seconds:.1f}/s), "
        f"{previews['displayed']} displayed ({previews['displayed'] / seconds:.1f}/s) over "
        f"{previews['seconds']} s; the window shows the newest and skips the ones it could not "
        "paint in time.",
    ]
    return lines


def startup_section(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    lines = [
        "## Start-up",
        "",
        f"Measured on {machine_line(data['machine'])}, each run a fresh process in a fresh data "
        f"folder ({data['model']}, {data['steps']} steps, {len(runs)} runs). Times count from "
        "just before the process starts, so interpreter start-up and imports are included.",
        "",
        "| milestone | median (s) | runs (s) |",
        "|---|---|---|",
    ]
    names = {
        "window_shown": "launch → window shown",
        "engine_ready": "launch → engine ready (torch imported, device chosen)",
        "first_image": "launch → first image saved",
    }
    for key, median_s in data["median_s"].items():
        each = ", ".join(f"{run[key]:.2f}" for run in runs)
        lines.append(f"| {names.get(key, key)} | {median_s:.2f} | {each} |")
    lines += [
        "",
        f"torch was still importing (on the engine thread) when the window appeared in "
        f"{data['torch_still_importing_at_show']} of {len(runs)} runs.",
    ]
    return lines


def upscale_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## Upscaling: throughput and the tiled refine (#16)",
        "",
        f"`python benchmarks/bench_upscale.py` on {machine_line(data['machine'])}. Megapixels of "
        "output per second, the bundled upscaler run as the engine runs it (256 px tiles with "
        "16 px context) against Pillow's resize of the same image, alternated, median:",
        "",
        "| scale | upscaler | output | median | MP/s |",
        "|---|---|---|---|---|",
    ]
    for row in data["throughput"]:
        lines.append(
            f"| ×{row['scale']} | {row['upscaler']} | {row['output']} | "
            f"{row['seconds_median']:.3f} s | {row['mp_per_s']:.2f} |"
        )
    refine = data.get("refine")
    if refine:
        rss_ok = "✓" if refine["peak_rss_mib"] < refine["rss_goal_mib"] else "✗"
        seam_ok = "✓" if refine["seam_ratio"] <= refine["seam_goal"] else "✗"
        plain = refine["no_overlap"]
        lines += [
            "",
            f"A whole upscale job {refine['source']} → {refine['output']} (bundled upscaler, "
            f"then the refine at 0.3 on {refine['tiles']} tiles of {refine['tile']} px with "
            f"{refine['overlap']} px overlap, {refine['steps']}-step schedule) in a fresh "
            f"process on {refine['device']}: {refine['seconds']} s, peak RSS "
            f"**{refine['peak_rss_mib']:.0f} MiB** (goal < {refine['rss_goal_mib']} {rss_ok}; "
            f"{refine['baseline_rss_mib']:.0f} MiB after imports). Tile grid on a "
            f"{refine.get('picture', '?')} (no structure of its own at the tile period): "
            f"gradient energy across the tile overlaps in {refine.get('seam_bin_px', '?')}-px "
            f"bands against the energy away from every overlap, the worst band as "
            f"max(r, 1/r): **{refine['seam_ratio']:.3f}** (goal ≤ {refine['seam_goal']} "
            f"{seam_ok}); band by band against the unrefined upscale "
            f"{refine.get('seam_ratio_vs_plain', float('nan')):.3f}; the picture upscaled "
            f"without refine, on the same grid, {refine.get('plain_seam_ratio', float('nan')):.3f} "
            f"(the measure's floor); the same refine without overlap "
            f"({plain['source']} → {plain['output']}) reads {plain['seam_ratio']:.3f}.",
        ]
    return lines


def api_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## API overhead per image and previews over SSE (`bench_api.py`)",
        "",
        f"On {machine_line(data['machine'])} (the prose is in the `ldstudio serve` notes above).",
        "",
        "| model | size, steps | in-process | over the API | ratio (goal) | preview frames/s |",
        "|---|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        ok = "✓" if run["ratio"] <= run["goal"] else "✗"
        lines.append(
            f"| {run['model']} | {run['size']} px, {run['steps']} | "
            f"{run['in_process_median_s']:.3f} s | {run['api_median_s']:.3f} s | "
            f"**{run['ratio']:.3f}** (≤ {run['goal']} {ok}) | {run['preview_fps']} "
            f"({run['preview_frames']} of {run['preview_steps']}; engine "
            f"{run['engine_it_per_s']} it/s) |"
        )
    return lines


SECTIONS = {
    "api": api_section,
    "upscale": upscale_section,
    "overhead": overhead_section,
    "memory": memory_section,
    "gpu": gpu_section,
    "gui": gui_section,
    "startup": startup_section,
}


def build(folder: Path) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Every figure names the machine it came from. Regenerate with "
        "`python benchmarks/run.py` (CPU) and `python benchmarks/gpu_bench.py` (GPU), then "
        "`python benchmarks/report.py`.",
    ]
    found = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
    if "gpu" not in found:
        lines += [
            "",
            "## GPU",
            "",
            "Not measured yet: no GPU was available. `benchmarks/gpu_bench.py` is ready (about "
            "5–8 minutes on one GPU); `bash benchmarks/gpu_device.sh run` runs it on a lent "
            "machine whose Python lacks diffusers. What was checked without a GPU is under "
            '"GPU script, checked without a GPU" below.',
            "",
            "Published references:",
            "",
        ]
        lines += [f"- {what}: {figure}" for what, figure in GPU_REFERENCES]
    notes = folder / "notes.md"
    if notes.is_file():  # figures measured by scripts that print rather than write JSON
        lines += ["", notes.read_text().rstrip()]
    for name, data in found.items():
        lines.append("")
        if name in SECTIONS:
            lines += SECTIONS[name](data)
        else:
            lines += [f"## {name}", "", "```json", json.dumps(data, indent=2), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    folder = Path(os.environ.get("LDSTUDIO_BENCH_DIR") or DOCS / "benchmarks")
    target = folder.parent / "benchmarks.md"
    target.write_text(build(folder))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
