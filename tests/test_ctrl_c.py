"""Ctrl+C while a command or the window starts: exit 130, one line, no traceback; with --json a
JSON object that says so. (A Ctrl+C during generation is tested in test_cli and
test_cli_inputs.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldstudio.__main__ import main

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def sigint_restored() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupted_while_the_engine_loads_in_process(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sigint_restored: None,
) -> None:
    import ldstudio.engine.backend

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # what Ctrl+C raises while torch or a model loads

    monkeypatch.setattr(ldstudio.engine.backend.DiffusersBackend, "__init__", interrupted)
    code = main(["generate", "x", "--steps", "1", "--out", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 130
    assert json.loads(out) == {"status": "aborted"}
    assert err == "ldstudio generate: interrupted (Ctrl+C)\n"
    # Without --json: the line only, stdout stays empty.
    assert main(["generate", "x", "--steps", "1", "--out", str(tmp_path)]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err == "ldstudio generate: interrupted (Ctrl+C)\n"


def start(args: list[str], home: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ldstudio", *args],
        env={**os.environ, "LDSTUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_library(proc: subprocess.Popen[str], name: str, timeout: float = 120) -> None:
    """Until the process has mapped a shared library named `name`: a point in its start-up
    that a fixed sleep would miss on a busy machine (or hit before ldstudio's code runs)."""
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + timeout
    while name not in maps.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{name} never loaded"
        time.sleep(0.005)


def interrupt(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str, float]:
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # Ctrl+C ignored: fail without leaving it running
        proc.communicate()
        raise
    return stdout, stderr, time.monotonic() - sent


linux = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc (Linux)")


@linux
# Several moments inside numpy's start-up: a Ctrl+C that lands inside a C extension's import
# once came out as an ImportError traceback ("PyCapsule_Import could not import module").
@pytest.mark.parametrize("delay", [0.0, 0.01, 0.04])
def test_generate_interrupted_while_starting(
    tmp_path: Path, ldstudio_home: Path, delay: float
) -> None:
    proc = start(["generate", "a cat", "--steps", "1", "--out", str(tmp_path), "--json"],
                 ldstudio_home)  # fmt: skip
    # numpy loads with ldstudio.cli; torch and diffusers, seconds of imports, come next.
    wait_for_library(proc, "_multiarray_umath")
    time.sleep(delay)
    stdout, stderr, seconds = interrupt(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    result = json.loads(stdout)
    if result["status"] == "aborted":  # before generate took Ctrl+C over
        assert result == {"status": "aborted"}
        assert stderr == "ldstudio generate: interrupted (Ctrl+C)\n"
    else:  # a fast machine: already loading the model, so the job is cancelled
        assert result["status"] == "cancelled" and result["images"] == []
    assert list(tmp_path.glob("*.png")) == []
    assert seconds < 30


@linux
def test_window_interrupted_while_starting(ldstudio_home: Path) -> None:
    proc = start([], ldstudio_home, QT_QPA_PLATFORM="offscreen")
    # Importing PySide6: a KeyboardInterrupt raised in there is swallowed, or aborts Python
    # ("Fatal Python error: libshiboken/signature").
    wait_for_library(proc, "libshiboken6")
    stdout, stderr, seconds = interrupt(proc)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("INFO ")]
    assert lines in (
        ["ldstudio: interrupted (Ctrl+C) while starting the window"],
        # A fast machine: the window was already up.
        ["ldstudio: interrupted (Ctrl+C); closing the window (Ctrl+C again quits at once)"],
    ), stderr
    assert stdout == "" and seconds < 30


def free_display() -> str:
    for number in range(91, 140):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return f":{number}"
    pytest.skip("no free X display number")


@pytest.fixture
def xvfb() -> Iterator[str]:
    if shutil.which("Xvfb") is None or shutil.which("xwininfo") is None:
        pytest.skip("needs Xvfb and xwininfo (Debian: apt-get install xvfb x11-utils)")
    display = free_display()
    server = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{display[1:]}").exists():
            assert server.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.05)
        yield display
    finally:
        server.terminate()
        server.wait(timeout=20)


def top_level_windows(display: str) -> str:
    done = subprocess.run(
        ["xwininfo", "-root", "-children", "-display", display],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    return done.stdout


@posix
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11")
def test_real_window_opens_under_xvfb_and_ctrl_c_closes_it(xvfb: str, ldstudio_home: Path) -> None:
    from ldstudio.qt.platform_check import window_problem

    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    problem = window_problem({**env, "DISPLAY": xvfb})
    if problem is not None:  # what test_platform_check covers; here the window must open
        pytest.skip(problem)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ldstudio"],
        env={**env, "DISPLAY": xvfb, "LDSTUDIO_HOME": str(ldstudio_home), "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while '"ldstudio": ("' not in top_level_windows(xvfb):  # the main window, mapped
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no ldstudio window on the display"
        time.sleep(0.25)
    time.sleep(1)  # the event loop runs
    stdout, stderr, seconds = interrupt(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "qt.qpa" not in stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("INFO ")]
    assert lines == [
        "ldstudio: interrupted (Ctrl+C); closing the window (Ctrl+C again quits at once)"
    ]
    assert (ldstudio_home / "settings.json").is_file()  # closed as by its close button
    assert stdout == "" and seconds < 60  # it waits for the engine thread's torch import
