"""End to end through the real engine thread and DiffusersBackend: the tiny model, then the
bundled one; plus the layer rule that the Qt layer never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gui_support import generate, make_window, output_pngs, qt_loop

from ldstudio.app import diffusers_backend_factory
from ldstudio.core import paths
from ldstudio.core.events import JobFinished, StepProgress
from ldstudio.core.metadata import read_ldstudio_params

pytestmark = pytest.mark.gui
__all__ = ["make_window", "qt_loop"]


def run_real_job(qtbot, window, steps: int, timeout: int) -> tuple[JobFinished, list[StepProgress]]:
    window.params_pane.steps_spin.setValue(steps)
    window.params_pane.scheduler_combo.setCurrentText("Euler a")
    progress: list[StepProgress] = []
    window.controller.step_progressed.connect(progress.append)
    outcome = generate(qtbot, window, "a red circle on a blue background", timeout=timeout)
    assert isinstance(outcome, JobFinished), outcome
    return outcome, progress


def test_tiny_model_through_the_real_engine_thread(
    make_window, qtbot, tiny_model: Path, ldstudio_home: Path
) -> None:
    window = make_window(diffusers_backend_factory(device="cpu"))
    window.add_model_folder(tiny_model)
    assert window.params_pane.model_value() == str(tiny_model.resolve())
    _, progress = run_real_job(qtbot, window, steps=3, timeout=120_000)
    assert [p.step for p in progress] == [1, 2, 3]
    assert all(p.preview is not None and p.preview.dtype.name == "uint8" for p in progress)
    (path,) = output_pngs(ldstudio_home)
    assert read_ldstudio_params(path).model == str(tiny_model.resolve())
    assert window.device_label.text() == "CPU · fp32"
    entry = window.store.entry_for_path(path)
    assert entry is not None and entry.params.model == str(tiny_model.resolve())
    qtbot.waitUntil(lambda: window.library_model.has_thumbnail(entry.id))


def test_bundled_model_end_to_end(make_window, qtbot, ldstudio_home: Path) -> None:
    model = paths.bundled_model_dir()
    if not (model / "model_index.json").is_file():
        pytest.skip(
            f"the bundled model is not in this checkout yet ({model} has no model_index.json)"
        )
    window = make_window(diffusers_backend_factory(device="cpu"))
    outcome, progress = run_real_job(qtbot, window, steps=8, timeout=300_000)
    (record,) = outcome.records
    assert (record.width, record.height) == (64, 64)
    assert [p.step for p in progress] == list(range(1, 9))
    assert progress[-1].preview is not None and progress[-1].preview.shape == (8, 8, 3)
    assert window.latent_label.text() == "latent 8×8×4 for a 64×64 image"
    assert read_ldstudio_params(record.path).prompt == "a red circle on a blue background"
    qtbot.waitUntil(lambda: window.preview_pane.canvas.image.width() == 64)


@pytest.mark.parametrize("module", ["ldstudio.qt.main_window", "ldstudio.app"])
def test_the_window_loads_without_torch(module: str) -> None:
    code = (
        f"import {module}, sys; "
        "print(' '.join(n for n in ('torch', 'diffusers', 'ldstudio.engine.backend') "
        "if n in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
