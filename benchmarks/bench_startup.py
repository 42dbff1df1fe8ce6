"""Launch → window shown, launch → engine ready, launch → first image on the bundled model.

    python benchmarks/bench_startup.py [--runs 3] [--steps 20]

Each run is a fresh `python` process running ldstudio's own app wiring (ldstudio.app) with the
real engine, offscreen unless DISPLAY is set, in a throwaway data folder. Times are measured from
just before the process is spawned, so interpreter start-up and imports are included. Also says
whether torch was still importing when the window appeared (it should be: torch loads on the
engine thread). Falls back to a tiny random model, clearly labelled, while the bundled one is
missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, machine_text, write_results

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import asyncio, json, sys, time
T0 = float(sys.argv[1])
def mark(name, **extra):
    print(json.dumps({"event": name, "t": time.time() - T0, **extra}), flush=True)
import qasync
from PySide6.QtCore import QEvent, QObject
from ldstudio.app import build_window, diffusers_backend_factory, ensure_application
app = ensure_application()
loop = qasync.QEventLoop(app)
asyncio.set_event_loop(loop)
window = build_window(diffusers_backend_factory())
if len(sys.argv) > 3:
    window.add_model_folder(__import__("pathlib").Path(sys.argv[3]))
class FirstPaint(QObject):
    done = False
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and not self.done:
            self.done = True
            # torch_loaded: fully imported by now? (It loads on the engine thread.)
            mark("window_shown", torch_loaded="torch.nn" in sys.modules)
        return False
painter = FirstPaint()
window.installEventFilter(painter)
window.show()
done = asyncio.Event()
window.controller.backend_ready.connect(lambda label: mark("engine_ready", device=label))
async def scenario():
    window.start()
    window.prompt_pane.set_prompts("a red circle on a blue background", "")
    window.params_pane.steps_spin.setValue(int(sys.argv[2]))
    outcome = await window.run_job(window.current_params())
    mark("first_image", outcome=type(outcome).__name__)
    done.set()
with loop:
    loop.create_task(scenario())
    loop.run_until_complete(done.wait())
    window.close()
"""


MILESTONES = (
    ("window_shown", "launch → window shown"),
    ("engine_ready", "launch → engine ready (torch imported, device chosen)"),
    ("first_image", "launch → first image saved"),
)


def one_run(steps: int, model: Path | None) -> dict[str, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.setdefault("QT_QPA_PLATFORM", "xcb" if env.get("DISPLAY") else "offscreen")
    with tempfile.TemporaryDirectory() as home:
        env["LDSTUDIO_HOME"] = home
        t0 = time.time()
        args = [sys.executable, "-c", CHILD, str(t0), str(steps)]
        if model is not None:
            args.append(str(model))
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    marks: dict[str, float] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            marks[event["event"]] = event["t"]
            if event["event"] == "window_shown":
                marks["torch_loaded_at_show"] = float(event["torch_loaded"])
            if event["event"] == "first_image" and event["outcome"] != "JobFinished":
                raise SystemExit(f"the job ended with {event['outcome']}:\n{done.stderr[-2000:]}")
    if "first_image" not in marks:
        raise SystemExit(f"the app did not finish a job:\n{done.stderr[-3000:]}")
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--model", type=Path, help="a diffusers folder (default: the bundled model)"
    )
    args = parser.parse_args()
    bundled = ROOT / "resources" / "models" / "ldstudio-shapes"
    model = args.model
    label = f"model {args.model}" if args.model else "bundled model ldstudio-shapes"
    if model is None and not (bundled / "model_index.json").is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_model import build_tiny_model

        model = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny-sd")
        label = "TINY RANDOM MODEL (the bundled model is missing)"
    runs = [one_run(args.steps, model) for _ in range(args.runs)]
    print(f"machine: {machine_text()}")
    print(f"model: {label}; {args.steps} steps, 1 image at native size; {args.runs} runs")
    medians: dict[str, float] = {}
    for key, text in MILESTONES:
        values = [r[key] for r in runs]
        medians[key] = round(statistics.median(values), 3)
        print(f"{text:55s} median {medians[key]:6.2f} s  (runs: "
              + ", ".join(f"{v:.2f}" for v in values) + ")")  # fmt: skip
    still_importing = sum(1 for r in runs if not r["torch_loaded_at_show"])
    print(f"torch still importing when the window appeared: {still_importing}/{len(runs)} runs")
    results = {
        "machine": machine(),
        "model": label,
        "steps": args.steps,
        "runs": [{key: round(r[key], 3) for key, _ in MILESTONES} for r in runs],
        "median_s": medians,
        "torch_still_importing_at_show": still_importing,
    }
    print(f"wrote {write_results('startup', results)}")


if __name__ == "__main__":
    main()
