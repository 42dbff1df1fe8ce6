"""Whether Qt can open a window here, checked before PySide6 loads a platform plugin; GUI thread.

Imports no PySide6 module on purpose: without a display, or without the system libraries the xcb
plugin links against (which pip cannot install), creating the QApplication makes Qt print
"Reinstalling the application may fix this problem" and abort with a core dump. This module
says what is actually missing instead, and how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

HEADLESS_HINT = "for headless use run `ldstudio generate PROMPT` (see `ldstudio generate --help`)"

# The system libraries PySide6's xcb plugin needs (what `ldd libqxcb.so` lists outside the
# wheel), with the package that installs each: (apt: Debian/Ubuntu, dnf: Fedora, pacman: Arch).
PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-render-util.so.0": (
        "libxcb-render-util0",
        "xcb-util-renderutil",
        "xcb-util-renderutil",
    ),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libXau.so.6": ("libxau6", "libXau", "libxau"),
    "libXdmcp.so.6": ("libxdmcp6", "libXdmcp", "libxdmcp"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx", "libglvnd"),
    "libGLdispatch.so.0": ("libglvnd0", "libglvnd", "libglvnd"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libpng16.so.16": ("libpng16-16", "libpng", "libpng"),
    "libz.so.1": ("zlib1g", "zlib", "zlib"),
    "libzstd.so.1": ("libzstd1", "libzstd", "zstd"),
    "libexpat.so.1": ("libexpat1", "expat", "expat"),
}
# How each package manager installs packages, in the order of PACKAGES' columns.
INSTALLERS = (
    ("apt-get", "apt-get install", "Debian/Ubuntu"),
    ("dnf", "dnf install", "Fedora"),
    ("pacman", "pacman -S", "Arch"),
)

LddRunner = Callable[[Path], str | None]
Which = Callable[[str], str | None]
Connect = Callable[[str], bool]


def window_problem(
    env: Mapping[str, str] | None = None,
    platform: str = sys.platform,
    plugin: Path | None = None,
    ldd: LddRunner | None = None,
    which: Which = shutil.which,
    x_server_answers: Connect | None = None,
) -> str | None:
    """Why Qt cannot open a window here (a message for the terminal), or None when it can or
    when this cannot tell (not Linux, a platform plugin the user chose, no `ldd`).

    `ldd` and `x_server_answers` stand in for running `ldd` and connecting to the X server.
    """
    env = os.environ if env is None else env
    if not platform.startswith("linux"):
        return None
    requested = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if requested not in ("", "xcb"):
        return None  # offscreen, wayland, eglfs, vnc ...: the user's choice; Qt reports on it
    display, wayland = env.get("DISPLAY"), env.get("WAYLAND_DISPLAY")
    if requested == "xcb" and not display:
        return (
            "ldstudio: cannot open the window: QT_QPA_PLATFORM is xcb but DISPLAY is not set; "
            f"{HEADLESS_HINT}"
        )
    if not display and not wayland:
        return (
            "ldstudio: cannot open the window: no display (neither DISPLAY nor WAYLAND_DISPLAY "
            f"is set); {HEADLESS_HINT}"
        )
    if not requested and wayland and (not display or env.get("XDG_SESSION_TYPE") == "wayland"):
        return None  # Qt takes its wayland plugin, which needs none of the xcb libraries
    plugin = plugin if plugin is not None else xcb_plugin()
    output = (ldd or ldd_runner(which))(plugin) if plugin is not None else None
    missing = not_found(output or "")
    if missing:
        return missing_libraries_message(missing, which)
    if display and not (x_server_answers or answers)(display):
        return (
            f"ldstudio: cannot open the window: no X server answers on DISPLAY={display} (is "
            f"it running? is DISPLAY right?); {HEADLESS_HINT}"
        )
    return None


def answers(display: str, timeout: float = 1.0) -> bool:
    """Whether something accepts connections where `display` (e.g. ":0", "localhost:10.0")
    points: the socket only, no X handshake (so authorization is Qt's to check). True for a
    form this does not know, so that Qt tries it."""
    host, _colon, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit() or "/" in host:
        return True
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        for address in ("\0" + path, path):  # the abstract socket first, as libxcb does
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                try:
                    sock.connect(address)
                    return True
                except OSError:
                    continue
        return False
    try:
        socket.create_connection((host, 6000 + int(number)), timeout).close()
    except OSError:
        return False
    return True


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing PySide6 (or None)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if path.is_file():
            return path
    return None


def ldd_runner(which: Which = shutil.which) -> LddRunner:
    """Runs `ldd` from PATH; the runner returns None when there is no ldd or it fails."""

    def run(library: Path) -> str | None:
        ldd = which("ldd")
        if ldd is None:
            return None
        try:
            done = subprocess.run(
                [ldd, str(library)], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout

    return run


def not_found(ldd_output: str) -> list[str]:
    """The sonames `ldd` could not find, in its order, each once."""
    missing: list[str] = []
    for line in ldd_output.splitlines():
        name, arrow, where = line.strip().partition("=>")
        name = name.strip()
        if arrow and where.strip() == "not found" and name not in missing:
            missing.append(name)
    return missing


def missing_libraries_message(missing: Sequence[str], which: Which = shutil.which) -> str:
    lines = [
        "ldstudio: cannot open the window: Qt's xcb platform plugin needs system libraries "
        f"that are missing: {', '.join(missing)}",
    ]
    sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    here = [i for i, (tool, _command, _systems) in enumerate(INSTALLERS) if which(tool)][:1]
    for column in here or range(len(INSTALLERS)):
        _tool, command, systems = INSTALLERS[column]
        packages = dict.fromkeys(PACKAGES[name][column] for name in missing if name in PACKAGES)
        if packages:
            how = "install them with" if here else f"on {systems}"
            lines.append(f"  {how}: {sudo}{command} {' '.join(packages)}")
    unknown = [name for name in missing if name not in PACKAGES]
    if unknown:
        lines.append(
            f"  and install the package that provides {', '.join(unknown)} "
            "(your package manager's file search finds it)"
        )
    lines.append(f"Then start ldstudio again; {HEADLESS_HINT}.")
    return "\n".join(lines)
