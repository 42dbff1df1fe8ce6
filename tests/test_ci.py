""".ci/run refuses a machine whose system Python has ldstudio's dependencies (a green run there
would prove nothing about what the README's command installs)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="CI scripts are bash")


def polluted_user_site(tmp_path: Path) -> dict[str, str]:
    """An environment in which the system Python sees this venv's torch & co., as after a
    `pip install --user torch`: a user site (PYTHONUSERBASE) whose .pth names our packages."""
    base = tmp_path / "userbase"
    user_site = Path(sysconfig.get_path("purelib", f"{os.name}_user", {"userbase": str(base)}))
    user_site.mkdir(parents=True)
    (user_site / "polluted.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    return dict(os.environ, PYTHONUSERBASE=str(base))


def test_the_system_python_here_is_bare() -> None:
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "check-bare-python")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_a_python_with_the_dependencies_is_named() -> None:
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "check-bare-python"), sys.executable],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert f"the system Python at {sys.executable} can import: torch diffusers" in done.stderr
    assert "PySide6" in done.stderr and "A green run would prove nothing" in done.stderr


def test_ci_run_stops_before_installing_anything(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(REPO / ".ci", clone / ".ci")
    shutil.copy(REPO / "README.md", clone / "README.md")
    done = subprocess.run(
        ["bash", str(clone / ".ci" / "run")],
        env=polluted_user_site(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refusing to run: the system Python at" in done.stderr
    assert "can import: torch diffusers transformers PySide6 qasync" in done.stderr
    assert not (clone / ".venv").exists()  # stopped before the venv, let alone the tests
