"""Code quality gates, run by the same pytest command as everything else (so CI runs them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

BIN = Path(sys.executable).parent  # the tools installed beside this interpreter by [test]


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", "."],
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        [str(BIN / "lint-imports")],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff-lint", "ruff-format", "import-layers", "mypy"],
)
def test_quality_gate(command: list[str]) -> None:
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
