"""Brush latency on a 4096×4096 canvas: per stroke segment, as a user feels it (p50/p95/max).

    python benchmarks/bench_brush.py [--segments 300] [--size 4096] [--quick]

Runs ldstudio's real CanvasPane (offscreen unless DISPLAY is set) on a 4096² source. Each
segment is one mouse-move event sent to the canvas view with the left button held: the
document paints the segment (numpy, dirty rectangle only), the view recomposes that rectangle
of its displayed QImage and asks for a repaint of where it lands; the time runs until Qt has
painted it (the events processed). Brushes of 16, 64 and 256 px at hardness 0.5, at the fitted
zoom (the whole 4096² canvas in the window: a 12 px mouse move is ~80 image px) and at 100 %.
Releasing the button closes the stroke as one undo step; that is timed apart. Goal: every
segment under 16 ms (one frame at 60 Hz; A1111's lagging brush on large images, their #4477,
is the bar).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import machine, machine_line, percentile, write_results  # noqa: E402

BRUSHES = (16, 64, 256)
HARDNESS = 0.5
GOAL_MS = 16.0
MOVE_PX = 12  # screen pixels between two mouse-move events: a brisk stroke at ~120 Hz
VIEW_SIZE = (1000, 700)  # the canvas view inside a 1280×800 window


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=300, help="per brush and zoom")
    parser.add_argument("--size", type=int, default=4096, help="canvas side in pixels")
    parser.add_argument("--quick", action="store_true", help="40 segments (a smoke run)")
    args = parser.parse_args()
    segments = 40 if args.quick else args.segments
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "offscreen")

    import numpy as np
    from PIL import Image
    from PySide6.QtCore import QEvent, QObject, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from ldstudio.qt.canvas import CanvasPane

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    side = args.size
    # A noisy source: no flat colour a codec or blit could shortcut.
    pixels = rng.integers(0, 256, size=(side // 8, side // 8, 3), dtype=np.uint8)
    source = Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR)
    pane = CanvasPane()
    pane.resize(VIEW_SIZE[0] + 300, VIEW_SIZE[1] + 60)
    pane.show()
    loaded = time.perf_counter()
    pane.set_source(source, f"{side}×{side} noise")
    app.processEvents()
    open_ms = (time.perf_counter() - loaded) * 1000
    view = pane.view
    document = pane.document()
    assert document is not None

    class PaintCounter(QObject):
        """Counts the view's paint events: each timed segment must really have been painted."""

        count = 0

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                self.count += 1
            return False

    counter = PaintCounter()
    view.installEventFilter(counter)

    def send(kind: QEvent.Type, point: QPointF, buttons: Qt.MouseButton) -> None:
        button = (
            Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
        )
        event = QMouseEvent(
            kind, point, view.mapToGlobal(point), button, buttons, Qt.KeyboardModifier.NoModifier
        )
        QApplication.sendEvent(view, event)

    rows = []
    for zoom in ("fit", "100 %"):
        view.fit()
        if zoom == "100 %":
            view.actual_size()
        app.processEvents()
        for brush in BRUSHES:
            pane.size_spin.setValue(brush)
            pane.hardness_slider.setValue(round(HARDNESS * 100))
            # A zigzag across the visible part of the canvas, MOVE_PX screen pixels a step.
            width, height = view.width(), view.height()
            points = []
            x, y, dx = 40.0, 40.0, 1.0
            for index in range(segments + 1):
                points.append(QPointF(x, y))
                x += dx * MOVE_PX * 0.9
                y += MOVE_PX * 0.43 * math.sin(index / 7)
                if not 40 <= x <= width - 40:
                    dx = -dx
                    y = 40 + (y + 60 - 40) % (height - 80)
            send(QEvent.Type.MouseButtonPress, points[0], Qt.MouseButton.LeftButton)
            app.processEvents()
            times = []
            painted = counter.count
            for point in points[1:]:
                started = time.perf_counter()
                send(QEvent.Type.MouseMove, point, Qt.MouseButton.LeftButton)
                app.processEvents()  # the paint of the dirty region happens here
                times.append((time.perf_counter() - started) * 1000)
            painted = counter.count - painted
            started = time.perf_counter()
            send(QEvent.Type.MouseButtonRelease, points[-1], Qt.MouseButton.NoButton)
            app.processEvents()
            release_ms = (time.perf_counter() - started) * 1000
            step = document._undo[-1] if document.can_undo else None
            rect = step.rect if step else (0, 0, 0, 0)
            row = {
                "zoom": zoom,
                "scale": round(view.scale, 4),
                "brush_px": brush,
                "hardness": HARDNESS,
                "segments": len(times),
                "paints": painted,
                "image_px_per_segment": round(MOVE_PX * 0.9 / view.scale, 1),
                "p50_ms": round(percentile(times, 50), 3),
                "p95_ms": round(percentile(times, 95), 3),
                "max_ms": round(max(times), 3),
                "over_goal": sum(t >= GOAL_MS for t in times),
                "release_ms": round(release_ms, 3),
                "stroke_rect": [rect[2] - rect[0], rect[3] - rect[1]],
            }
            rows.append(row)
            document.clear()
            app.processEvents()

    # Whole-mask edits recompose the whole picture: timed for the record, not per segment.
    started = time.perf_counter()
    pane.invert()
    app.processEvents()
    invert_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    pane.undo()
    app.processEvents()
    undo_invert_ms = (time.perf_counter() - started) * 1000

    results = {
        "machine": machine(),
        "canvas": [side, side],
        "view": [view.width(), view.height()],
        "platform": QApplication.platformName(),
        "move_px": MOVE_PX,
        "goal_ms": GOAL_MS,
        "open_ms": round(open_ms, 1),
        "invert_ms": round(invert_ms, 1),
        "undo_invert_ms": round(undo_invert_ms, 1),
        "runs": rows,
    }
    print(f"machine: {machine_line(results['machine'])} · Qt platform {results['platform']}")
    view_size = "×".join(map(str, results["view"]))
    print(
        f"canvas {side}×{side}, view {view_size}; opening it {open_ms:.0f} ms, invert "
        f"{invert_ms:.0f} ms, undoing that {undo_invert_ms:.0f} ms"
    )
    print("zoom   brush  img px/seg  p50 ms  p95 ms  max ms  ≥ goal  release ms  goal")
    for row in rows:
        verdict = "✓" if row["max_ms"] < GOAL_MS else ("p95 ✓" if row["p95_ms"] < GOAL_MS else "✗")
        print(
            f"{row['zoom']:<6} {row['brush_px']:>5}  {row['image_px_per_segment']:>10}  "
            f"{row['p50_ms']:>6.2f}  {row['p95_ms']:>6.2f}  {row['max_ms']:>6.2f}  "
            f"{row['over_goal']:>6}  "
            f"{row['release_ms']:>10.1f}  {verdict}"
        )
    path = write_results("brush", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
