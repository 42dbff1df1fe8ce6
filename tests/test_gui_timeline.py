"""The denoising timeline store stays within its memory bound; animations export correctly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldstudio.qt.timeline import TimelineStore, export_animation


def frame(value: int, side: int = 8) -> np.ndarray:
    return np.full((side, side, 3), value, dtype=np.uint8)


def test_only_the_last_jobs_are_kept() -> None:
    store = TimelineStore(max_jobs=2)
    for job in (1, 2, 3):
        for step in (1, 2):
            store.add_frame(job, 0, step, frame(step))
    assert store.job_ids() == [2, 3]
    assert store.get(1, 0) is None
    timeline = store.get(3, 0)
    assert timeline is not None and [s for s, _ in timeline.frames] == [1, 2]
    assert store.nbytes == 4 * frame(0).nbytes


def test_the_byte_bound_holds_even_for_one_huge_job() -> None:
    size = frame(0, 64).nbytes
    store = TimelineStore(max_jobs=5, max_bytes=3 * size)
    for step in range(1, 11):
        store.add_frame(7, 0, step, frame(step, 64))
    timeline = store.get(7, 0)
    assert timeline is not None and [s for s, _ in timeline.frames] == [8, 9, 10]
    assert store.nbytes == 3 * size <= store.max_bytes


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_export_animation_ends_on_the_final_image(tmp_path: Path, suffix: str) -> None:
    final = tmp_path / "final.png"
    Image.new("RGB", (64, 64), (0, 200, 0)).save(final)
    target = export_animation([frame(10), frame(120)], final, tmp_path / f"a{suffix}")
    with Image.open(target) as animation:
        assert animation.n_frames == 3
        assert animation.size == (256, 256)  # tiny images are scaled up to be watchable
        animation.seek(2)
        r, g, _ = animation.convert("RGB").getpixel((128, 128))
        assert g > 150 and r < 60


def test_export_refuses_unknown_types_and_empty_timelines(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"allowed: \.webp, \.gif"):
        export_animation([frame(1)], None, tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="no preview frames"):
        export_animation([], None, tmp_path / "a.gif")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"file is a file, so a\.gif cannot go in it"):
        export_animation([frame(1)], None, tmp_path / "file" / "a.gif")


@pytest.mark.gui
def test_preview_pane_says_step_counts_and_long_errors_never_widen_it(qtbot) -> None:
    from ldstudio.qt.preview_view import PreviewPane
    from ldstudio.qt.timeline import Timeline

    pane = PreviewPane()
    qtbot.addWidget(pane)
    pane.resize(500, 400)
    pane.show()
    one = Timeline(1, 0, [(1, np.zeros((8, 8, 3), np.uint8))])
    pane.set_timeline(one)
    assert pane.timeline_label.text() == "Timeline: 1 step"
    one.frames.append((2, np.zeros((8, 8, 3), np.uint8)))
    pane.set_timeline(one)
    assert pane.timeline_label.text() == "Timeline: 2 steps"

    narrowest = pane.minimumSizeHint().width()
    message = "Could not tag the image: tag " + "y" * 400 + " is too long"
    pane.show_error(message)
    assert pane.minimumSizeHint().width() == narrowest  # clipped, not a wider window
    assert pane.error_label.toolTip() == message  # the whole text is still there

    from PySide6.QtGui import QImage

    caption = "“" + "a very long prompt " * 20 + "” · 64×64 · seed 1"
    pane.show_image(QImage(8, 8, QImage.Format.Format_RGB32), caption)
    assert pane.caption.text().endswith("…") and len(pane.caption.text()) < len(caption)
    assert pane.caption.toolTip() == caption
    pane.resize(4000, 400)
    qtbot.waitUntil(lambda: pane.caption.text() == caption)  # room again: whole
