"""The layer split holds: core imports neither torch nor Qt; the engine imports no Qt."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_modules(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {name.split(".")[0] for name in done.stdout.split()}


@pytest.mark.parametrize(
    "module",
    [
        "ldstudio.core.params",
        "ldstudio.core.events",
        "ldstudio.core.jobs",
        "ldstudio.core.metadata",
        "ldstudio.core.imagefiles",
        "ldstudio.core.paths",
        "ldstudio.cli",
        "ldstudio.cli.generate",
    ],
)
def test_core_loads_neither_torch_nor_qt(module: str) -> None:
    loaded = loaded_modules(f"import {module}")
    assert "torch" not in loaded and "diffusers" not in loaded
    assert "PySide6" not in loaded


def test_engine_loads_no_qt() -> None:
    loaded = loaded_modules("import ldstudio.engine.backend")
    assert "torch" in loaded and "diffusers" in loaded
    assert "PySide6" not in loaded
