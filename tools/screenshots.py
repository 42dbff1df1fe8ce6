"""Screenshots of the real app under Xvfb at 1280×800; writes docs/screenshots/.

    python tools/screenshots.py [--steps 24] [--out docs/screenshots] [--size 1280x800]

Starts a virtual X server (Debian: `apt-get install xvfb`), runs ldstudio's own window with the
real engine on the bundled model (or, while that is missing, a tiny random model built offline)
in a throwaway data folder, generates three images and grabs the window: mid-denoising
(ldstudio-denoising.png), done (ldstudio-done.png), the image details tab scrubbed back on the
timeline (ldstudio-details.png) and a filtered library (ldstudio-library.png); then the star
image on the canvas with a painted mask (ldstudio-canvas-mask.png), the inpainted result in the
before/after compare (ldstudio-canvas-compare.png) and that result extended for an outpaint
(ldstudio-canvas-outpaint.png); last, the star made again with the hires fix, 64 → 128 px
(ldstudio-hires.png).
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
INPAINT_PROMPT = "a large red circle in the top left on a purple background"
PROMPTS = (
    "a small red circle in the bottom right on a green background",
    "a large blue square in the center on a yellow background",
)


def start_xvfb(width: int, height: int) -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("Xvfb") is None:
        sys.exit("Xvfb is not installed; on Debian/Ubuntu: apt-get install -y xvfb")
    for number in range(90, 110):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            display = f":{number}"
            server = subprocess.Popen(
                ["Xvfb", display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
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
    parser.add_argument("--size", default="1280x800", help="screen and window size, WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    server, display = start_xvfb(width, height)
    home = Path(tempfile.mkdtemp(prefix="ldstudio-shots-"))
    os.environ.update(
        DISPLAY=display,
        QT_QPA_PLATFORM="xcb",
        LDSTUDIO_HOME=str(home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    try:
        return shoot(args.steps, args.out.resolve(), home, args.model, (width, height))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(home, ignore_errors=True)


def shoot(steps: int, out: Path, home: Path, chosen: Path | None, size: tuple[int, int]) -> int:
    import qasync

    from ldstudio.app import build_window, diffusers_backend_factory, ensure_application
    from ldstudio.core import paths
    from ldstudio.core.events import JobFailed, JobFinished, StepProgress

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
    window.resize(*size)  # no window manager: the window is the whole screen
    window.show()
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    done = asyncio.Event()
    failure: list[str] = []
    star_path: list[Path] = []  # the star image, which the canvas shots work on

    def grab(name: str) -> None:
        path = out / name
        window.grab().save(str(path))
        shots.append(path)

    def on_step(event: StepProgress) -> None:
        if event.step == steps // 2 and not shots:
            window.preview_pane.flush()  # the frame of exactly this step, not the last tick's
            grab("ldstudio-denoising.png")

    async def settle() -> None:
        for _ in range(100):  # the final image and the thumbnails load off-thread
            if window.pending_tasks() <= 1 and not window.library_model.is_busy():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)

    async def scenario() -> None:
        window.start()
        pane = window.params_pane
        pane.steps_spin.setValue(steps)
        pane.scheduler_combo.setCurrentText("DPM++ 2M Karras")
        pane.set_seed(42)
        for prompt in PROMPTS:  # a library to browse
            window.prompt_pane.set_prompts(prompt, "")
            outcome = await window.run_job(window.current_params())
            if isinstance(outcome, JobFailed):
                failure.append(outcome.message)
                done.set()
                return
        window.prompt_pane.set_prompts(PROMPT, "")
        window.controller.step_progressed.connect(on_step)
        outcome = await window.run_job(window.current_params())
        if isinstance(outcome, JobFailed):
            failure.append(outcome.message)
            done.set()
            return
        if isinstance(outcome, JobFinished):
            star_path.extend(record.path for record in outcome.records)
        await settle()
        grab("ldstudio-done.png")
        # The image's parameters in their tab, and the timeline scrubbed back to a step.
        entry = window.library_pane.current_entry()
        if entry is not None:
            window.library_pane.entry_activated.emit(entry)
        window.preview_pane.timeline_slider.setValue(steps // 3)
        await settle()
        grab("ldstudio-details.png")
        window.focus_prompt()
        window.library_pane.search_edit.setText("large")
        window.library_pane.apply_filter()
        await settle()
        grab("ldstudio-library.png")
        window.library_pane.search_edit.setText("")
        window.library_pane.apply_filter()
        await settle()
        await canvas_scenario()
        await hires_scenario()
        done.set()

    async def hires_scenario() -> None:
        from ldstudio.core.request import Request

        window.show_preview()
        box = window.params_pane.hires_box
        box.setChecked(True)
        window.prompt_pane.set_prompts(PROMPT, "")
        request = Request.txt2img(window.current_params(), box.settings())
        outcome = await window.run_job(request)
        if not isinstance(outcome, JobFinished):
            failure.append(f"the hires job ended with {outcome!r}")
            return
        await settle()
        grab("ldstudio-hires.png")

    def paint(start: tuple[float, float], end: tuple[float, float]) -> None:
        from PySide6.QtCore import QPoint, QPointF, Qt
        from PySide6.QtTest import QTest

        view = window.canvas_pane.view
        a = view.to_screen(QPointF(*start)).toPoint()
        b = view.to_screen(QPointF(*end)).toPoint()
        QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
        for i in range(1, 9):
            QTest.mouseMove(
                view, QPoint(a.x() + (b.x() - a.x()) * i // 8, a.y() + (b.y() - a.y()) * i // 8)
            )
        QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)

    def zoom_in(factor: float = 5.0) -> None:
        # The bundled model's 64 px images: fitted, they would be a stamp in the middle.
        from PySide6.QtCore import QPointF

        view = window.canvas_pane.view
        view.fit()
        view.zoom_at(factor, QPointF(view.width() / 2, view.height() / 2))

    async def canvas_scenario() -> None:
        entry = window.store.entry_for_path(star_path[0]) if star_path else None
        if entry is None:
            failure.append("the star image is not in the library")
            return
        window.library.actions.send_to_canvas(entry)
        for _ in range(100):
            if window.canvas_pane.document() is not None:
                break
            await asyncio.sleep(0.05)
        await settle()
        pane = window.canvas_pane
        zoom_in()
        pane.size_spin.setValue(20)
        paint((10, 10), (26, 24))  # over the star in the top left
        paint((26, 12), (12, 26))
        window.prompt_pane.set_prompts(INPAINT_PROMPT, "")
        await settle()
        grab("ldstudio-canvas-mask.png")
        outcome = await window.canvas.generate(window.current_params())
        if not isinstance(outcome, JobFinished):
            failure.append(f"the inpaint job ended with {outcome!r}")
            return
        for _ in range(100):
            if pane.result() is not None:
                break
            await asyncio.sleep(0.05)
        await settle()
        pane.view.set_split(0.3)  # the red circle on the right of the split, the star left
        grab("ldstudio-canvas-compare.png")
        pane.use_result_as_source()
        pane.set_settings(pane.settings().replace(outpaint=(0, 0, 32, 16)))
        window.canvas.update_generate()
        await settle()
        zoom_in(3.5)
        await settle()
        grab("ldstudio-canvas-outpaint.png")

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
