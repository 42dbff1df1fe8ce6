"""Screenshots of the real app under Xvfb: one mid-denoising, one after; writes docs/screenshots/.

    python tools/screenshots.py [--steps 24] [--out docs/screenshots]

Starts a virtual X server (Debian: `apt-get install xvfb`), runs ldstudio's own window with the
real engine on the bundled model (or, while that is missing, a tiny random model built offline)
in a throwaway data folder, generates one image and grabs the window twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPT = "a large yellow star in the top left on a purple background"
SCREEN = "1440x900x24"


def start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("Xvfb") is None:
        sys.exit("Xvfb is not installed; on Debian/Ubuntu: apt-get install -y xvfb")
    for number in range(90, 110):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            display = f":{number}"
            server = subprocess.Popen(
                ["Xvfb", display, "-screen", "0", SCREEN, "-nolisten", "tcp"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while not Path(f"/tmp/.X11-unix/X{number}").exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"Xvfb did not start on display {display}")
                time.sleep(0.05)
            return server, display
    sys.exit("no free X display number between :90 and :109")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument(
        "--model", type=Path, help="a diffusers folder (default: the bundled model)"
    )
    args = parser.parse_args()
    server, display = start_xvfb()
    home = Path(tempfile.mkdtemp(prefix="ldstudio-shots-"))
    os.environ.update(
        DISPLAY=display,
        QT_QPA_PLATFORM="xcb",
        LDSTUDIO_HOME=str(home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    try:
        return shoot(args.steps, args.out.resolve(), home, args.model)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(home, ignore_errors=True)


def shoot(steps: int, out: Path, home: Path, chosen: Path | None) -> int:
    import qasync

    from ldstudio.app import build_window, diffusers_backend_factory, ensure_application
    from ldstudio.core import paths
    from ldstudio.core.events import JobFailed, StepProgress

    app = ensure_application()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = build_window(diffusers_backend_factory())
    model = paths.bundled_model_dir()
    if chosen is not None:
        window.add_model_folder(chosen.resolve())
    elif not (model / "model_index.json").is_file():
        sys.path.insert(0, str(REPO / "tests"))
        from tiny_model import build_tiny_model

        print(f"{model} is missing; using a tiny random model instead", file=sys.stderr)
        window.add_model_folder(build_tiny_model(home / "models" / "tiny-sd"))
    window.show()
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    done = asyncio.Event()
    failure: list[str] = []

    def grab(name: str) -> None:
        path = out / name
        window.grab().save(str(path))
        shots.append(path)

    def on_step(event: StepProgress) -> None:
        if event.step == steps // 2 and not shots:
            window.preview_pane.flush()  # the frame of exactly this step, not the last tick's
            grab("ldstudio-denoising.png")

    async def scenario() -> None:
        window.start()
        window.prompt_pane.set_prompts(PROMPT, "")
        pane = window.params_pane
        pane.steps_spin.setValue(steps)
        pane.scheduler_combo.setCurrentText("DPM++ 2M Karras")
        pane.set_seed(42)
        window.controller.step_progressed.connect(on_step)
        outcome = await window.run_job(window.current_params())
        if isinstance(outcome, JobFailed):
            failure.append(outcome.message)
        else:
            for _ in range(100):  # the final image and the thumbnail load off-thread
                if window.pending_tasks() <= 1:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            grab("ldstudio-done.png")
        done.set()

    with loop:
        loop.create_task(scenario())
        loop.run_until_complete(done.wait())
        window.close()
    if failure:
        print(f"generation failed: {failure[0]}", file=sys.stderr)
        return 1
    for path in shots:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
