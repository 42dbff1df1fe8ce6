"""Before the window: no display, or missing xcb system libraries, are named (exit 1), instead of
Qt's "Reinstalling the application may fix this problem" and a core dump."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ldstudio.qt.platform_check import (
    HEADLESS_HINT,
    answers,
    missing_libraries_message,
    not_found,
    window_problem,
    xcb_plugin,
)

PLUGIN = Path("/fake/PySide6/Qt/plugins/platforms/libqxcb.so")
LDD_ALL_FOUND = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f77)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f77)
\tlibxcb-icccm.so.4 => /lib/x86_64-linux-gnu/libxcb-icccm.so.4 (0x00007f78)
"""
LDD_TWO_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f77)
\tlibxcb-icccm.so.4 => not found
"""
X11 = {"DISPLAY": ":0"}


def ldd_printing(output: str) -> object:
    calls: list[Path] = []

    def ldd(library: Path) -> str:
        calls.append(library)
        return output

    ldd.calls = calls  # type: ignore[attr-defined]
    return ldd


def only(*tools: str) -> object:
    return lambda name: f"/usr/bin/{name}" if name in tools else None


def test_no_display_is_one_line_pointing_to_generate() -> None:
    ldd = ldd_printing(LDD_TWO_MISSING)
    problem = window_problem({}, "linux", PLUGIN, ldd)
    assert problem is not None and "\n" not in problem
    assert "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)" in problem
    assert "ldstudio generate" in problem
    assert window_problem({"QT_QPA_PLATFORM": "xcb"}, "linux", PLUGIN, ldd) == (
        "ldstudio: cannot open the window: QT_QPA_PLATFORM is xcb but DISPLAY is not set; "
        f"{HEADLESS_HINT}"
    )


@pytest.mark.parametrize(
    "env",
    [
        {"QT_QPA_PLATFORM": "offscreen"},  # headless Qt, as the tests run
        {"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"},
        {"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"},
        {"WAYLAND_DISPLAY": "wayland-0"},  # only Wayland: Qt takes its wayland plugin
        {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland"},
    ],
)
def test_platforms_that_do_not_use_xcb_are_not_checked(env: dict[str, str]) -> None:
    ldd = ldd_printing(LDD_TWO_MISSING)
    assert window_problem(env, "linux", PLUGIN, ldd) is None
    assert ldd.calls == []  # type: ignore[attr-defined]


def test_only_linux_is_checked() -> None:
    for platform in ("darwin", "win32"):
        assert window_problem({}, platform, PLUGIN, ldd_printing(LDD_TWO_MISSING)) is None


@pytest.mark.parametrize(
    "env",
    [
        X11,
        {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"},
        {"QT_QPA_PLATFORM": "xcb:nomitshm", "DISPLAY": "host:10.0"},
        # An X11 session that also runs a Wayland compositor: Qt still picks xcb.
        {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"},
    ],
)
def test_missing_libraries_are_named_with_the_command_that_installs_them(
    env: dict[str, str],
) -> None:
    ldd = ldd_printing(LDD_TWO_MISSING)
    problem = window_problem(env, "linux", PLUGIN, ldd, only("ldd", "apt-get"))
    assert ldd.calls == [PLUGIN]  # type: ignore[attr-defined]
    assert problem is not None
    lines = problem.splitlines()
    assert lines[0].endswith("needs system libraries that are missing: "
                             "libxcb-cursor.so.0, libxcb-icccm.so.4")  # fmt: skip
    assert lines[1].endswith("apt-get install libxcb-cursor0 libxcb-icccm4")
    assert "ldstudio generate" in lines[-1] and "Reinstall" not in problem


def test_all_libraries_found_opens_the_window() -> None:
    ldd = ldd_printing(LDD_ALL_FOUND)
    assert window_problem(X11, "linux", PLUGIN, ldd, x_server_answers=lambda _d: True) is None


def test_a_display_nobody_answers_on_is_named() -> None:
    asked: list[str] = []

    def nobody(display: str) -> bool:
        asked.append(display)
        return False

    problem = window_problem(
        {"DISPLAY": ":7"}, "linux", PLUGIN, ldd_printing(LDD_ALL_FOUND), x_server_answers=nobody
    )
    assert asked == [":7"]
    assert problem == (
        "ldstudio: cannot open the window: no X server answers on DISPLAY=:7 (is it running? "
        f"is DISPLAY right?); {HEADLESS_HINT}"
    )
    # Missing libraries come first: they are what the user must install either way.
    problem = window_problem(
        X11, "linux", PLUGIN, ldd_printing(LDD_TWO_MISSING), x_server_answers=nobody
    )
    assert problem is not None and "missing: libxcb-cursor.so.0" in problem


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux abstract sockets")
def test_answers_connects_to_the_x_socket_or_tcp_port() -> None:
    import socket

    number = 4000 + os.getpid() % 1000  # far above real displays
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(f"\0/tmp/.X11-unix/X{number}")  # abstract: nothing on disk
        server.listen()
        assert answers(f":{number}") and answers(f":{number}.0") and answers(f"unix:{number}")
    assert not answers(f":{number}")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert answers(f"127.0.0.1:{port - 6000}.0")
    assert not answers(f"127.0.0.1:{port - 6000}")
    assert answers("not a display")  # a form it does not know: Qt tries it


def test_no_ldd_skips_the_check() -> None:
    up = {"x_server_answers": lambda _d: True}
    assert window_problem(X11, "linux", PLUGIN, lambda _path: None, **up) is None
    # The default runner finds ldd on PATH; without one there is nothing to run.
    assert window_problem(X11, "linux", PLUGIN, which=only("apt-get"), **up) is None


def test_each_package_manager_gets_its_own_package_names() -> None:
    missing = ["libxcb-cursor.so.0", "libxcb-keysyms.so.1", "libxcb-randr.so.0"]
    dnf = missing_libraries_message(missing, only("dnf"))
    assert "dnf install xcb-util-cursor xcb-util-keysyms libxcb\n" in dnf
    pacman = missing_libraries_message(missing, only("pacman"))
    assert "pacman -S xcb-util-cursor xcb-util-keysyms libxcb\n" in pacman
    # No known package manager: the commands for all three, each named.
    unknown = missing_libraries_message(missing, only()).splitlines()
    assert unknown[1].startswith("  on Debian/Ubuntu: ")
    assert unknown[1].endswith("apt-get install libxcb-cursor0 libxcb-keysyms1 libxcb-randr0")
    assert unknown[2].startswith("  on Fedora: ") and unknown[3].startswith("  on Arch: ")


def test_a_library_without_a_known_package_is_still_named() -> None:
    message = missing_libraries_message(["libxcb-icccm.so.4", "libfoo.so.3"], only("apt-get"))
    assert "missing: libxcb-icccm.so.4, libfoo.so.3" in message
    assert "apt-get install libxcb-icccm4\n" in message
    assert "install the package that provides libfoo.so.3" in message


def test_ldd_output_parsing() -> None:
    assert not_found(LDD_TWO_MISSING) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4"]
    assert not_found(LDD_ALL_FOUND) == []
    assert not_found("\tnot a dynamic executable\n") == []


linux_with_ldd = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("ldd") is None or xcb_plugin() is None,
    reason="needs Linux, ldd and PySide6's xcb plugin",
)


def ldstudio_window(env: dict[str, str], timeout: float = 60) -> tuple[int, str, float]:
    """`python -m ldstudio` (no arguments: the window) run to its end."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ldstudio"], env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    return done.returncode, done.stderr, time.monotonic() - started


def bare_env(**extra: str) -> dict[str, str]:
    unset = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "XDG_SESSION_TYPE")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    return {**env, **extra}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux displays")
def test_window_without_a_display_exits_1_at_once() -> None:
    code, stderr, seconds = ldstudio_window(bare_env())
    assert code == 1, stderr
    assert seconds < 5
    assert stderr.splitlines() == [
        "ldstudio: cannot open the window: no display (neither DISPLAY nor WAYLAND_DISPLAY is "
        f"set); {HEADLESS_HINT}"
    ]


@linux_with_ldd
def test_window_with_a_missing_library_names_it(tmp_path: Path) -> None:
    # A wrapper first on PATH makes the check see libxcb-cursor absent, as on a bare Debian.
    real = shutil.which("ldd")
    fake = tmp_path / "bin" / "ldd"
    fake.parent.mkdir()
    fake.write_text(
        f"#!/bin/sh\n{real} \"$@\" | grep -v 'libxcb-cursor.so.0'\n"
        "printf '\\tlibxcb-cursor.so.0 => not found\\n'\n"
    )
    fake.chmod(0o755)
    # :99 need not exist: the check comes before Qt would connect to it.
    env = bare_env(DISPLAY=":99", PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    code, stderr, seconds = ldstudio_window(env)
    assert code == 1, stderr
    lines = stderr.splitlines()
    assert "needs system libraries that are missing: " in lines[0]
    assert "libxcb-cursor.so.0" in lines[0]
    # The install command names the missing library's package (with any others missing here).
    commands = (
        r"apt-get install [^\n]*\blibxcb-cursor0\b",
        r"dnf install [^\n]*\bxcb-util-cursor\b",
        r"pacman -S [^\n]*\bxcb-util-cursor\b",
    )
    assert any(re.search(command, stderr) for command in commands), stderr
    assert "ldstudio generate" in lines[-1]
    assert "Reinstalling" not in stderr and "qt.qpa" not in stderr
    assert seconds < 5


@linux_with_ldd
def test_window_on_a_display_without_a_server_exits_1(tmp_path: Path) -> None:
    display = f":{4000 + os.getpid() % 1000}"  # no X server there
    if (problem := window_problem(bare_env(DISPLAY=display))) and "missing" in problem:
        pytest.skip(f"this machine lacks the xcb libraries: {problem}")
    code, stderr, seconds = ldstudio_window(bare_env(DISPLAY=display))
    assert code == 1, stderr
    assert stderr.splitlines() == [
        f"ldstudio: cannot open the window: no X server answers on DISPLAY={display} (is it "
        f"running? is DISPLAY right?); {HEADLESS_HINT}"
    ]
    assert seconds < 5
