"""Issue 13: files whose content or kind once hung `ldstudio info`, imports and the library."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_support import hostile_comfy_png, hostile_comment_jpeg, hostile_exif_jpeg, hostile_png
from library_support import A1111_TEXT, ldstudio_png, png_with_text

from ldstudio.core.library import LibraryFilter, LibraryStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, sockets and SIGKILL")

# Before the fix, reconcile on a library holding hostile.png did not finish (killed after
# 30 s), and each later open reconciled again: the library could not be opened at all.
SECONDS = 2.0


def claims_size(path: Path, width: int, height: int) -> Path:
    """Rewrite a PNG's IHDR so it claims `width` x `height` (the pixel data stays tiny)."""
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: a Unix socket's path is limited to about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="ld13-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def hostile_folder(folder: Path) -> dict[str, Path]:
    """Every hostile image of issue 13, plus a FIFO, a socket and a dangling link."""
    files = {
        "comfy": hostile_comfy_png(folder / "comfy.png"),
        "a1111": hostile_png(folder / "a1111.png", 64_000),
        "exif": hostile_exif_jpeg(folder / "exif.jpg"),
        "comment": hostile_comment_jpeg(folder / "comment.jpg"),
        "big": claims_size(
            png_with_text(folder / "big.png", {"parameters": A1111_TEXT}), 10000, 10000
        ),
        "bomb": claims_size(png_with_text(folder / "bomb.png", {}), 20000, 20000),
        "good": ldstudio_png(folder / "good.png"),
    }
    os.mkfifo(folder / "fifo.png")
    (folder / "gone.png").symlink_to(folder / "nowhere.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.webp"))
    server.close()  # the socket file stays
    return files


def test_import_lists_odd_files_and_reads_hostile_ones_fast(
    short_dir: Path, tmp_path: Path
) -> None:
    source = short_dir / "in"
    source.mkdir()
    files = hostile_folder(source)
    with LibraryStore(tmp_path / "lib") as store:
        started = time.perf_counter()
        report = store.import_folder(source)
        seconds = time.perf_counter() - started
        assert seconds < 7 * SECONDS  # seven images, each bounded
        skipped = {path.name: why for path, why in report.skipped}
        assert skipped["fifo.png"] == "a named pipe (FIFO), not a regular file"
        assert skipped["sock.webp"] == "a socket, not a regular file"
        assert (
            skipped["gone.png"]
            == f"a symbolic link to {source / 'nowhere.png'}, which does not exist"
        )
        assert "bomb.png: image is 20,000×20,000 pixels, over the limit" in skipped["bomb.png"]
        assert len(skipped) == 4 and len(report.added) == 6
        sources = {e.path.name: e.source for e in store.page(LibraryFilter(), 0, 10)}
        assert sources == {
            "comfy.png": "comfyui",
            "a1111.png": "a1111",
            "exif.jpg": "a1111",
            "comment.jpg": "a1111",
            "big.png": "a1111",
            "good.png": "ldstudio",
        }
    assert files["good"].exists()


CHILD = r"""
import sys
from pathlib import Path
from ldstudio.core.library import LibraryStore
store = LibraryStore(Path(sys.argv[1]), reconcile=False)
print("READY", flush=True)
sys.stdin.read()
"""


def test_library_with_hostile_files_and_a_stale_session_opens_fast(short_dir: Path) -> None:
    root = short_dir / "lib"
    (root / "images").mkdir(parents=True)
    hostile_folder(root / "images")
    # A session that never closed (killed mid-reconcile, say): the next open reconciles.
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "READY"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert list((root / "sessions").glob("*.lock"))  # left behind, unlocked
    started = time.perf_counter()
    store = LibraryStore(root)
    seconds = time.perf_counter() - started
    try:
        assert store.crashed_before and store.last_reconcile is not None
        assert seconds < SECONDS, f"open with reconcile took {seconds:.1f} s"
        assert sorted(p.name for p in store.last_reconcile.unreadable) == ["bomb.png"]
        assert len(store.last_reconcile.adopted) == 6
    finally:
        store.close()
    # And from the command line, as the issue reported it.
    listed = ldstudio("library", "--library", str(root), "list", home=short_dir / "home")
    assert listed.returncode == 0 and "6 of 6 image(s)" in listed.stderr


def ldstudio(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LDSTUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ldstudio", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_info_explains_fifos_bombs_and_large_images(short_dir: Path) -> None:
    files = hostile_folder(short_dir)
    home = short_dir / "home"
    fifo = ldstudio("info", str(short_dir / "fifo.png"), home=home)
    assert fifo.returncode == 2
    assert "fifo.png: is a named pipe (FIFO), not a regular file" in fifo.stderr
    gone = ldstudio("info", str(short_dir / "gone.png"), home=home)
    assert gone.returncode == 2 and "a symbolic link to" in gone.stderr
    bomb = ldstudio("info", str(files["bomb"]), home=home)
    assert bomb.returncode == 2 and "image is 20,000×20,000 pixels" in bomb.stderr
    big = ldstudio("info", str(files["big"]), home=home)
    assert big.returncode == 0 and "image: PNG 10000x10000" in big.stdout
    assert "warning: image is 10,000×10,000 pixels, over the" in big.stdout
    assert "seed: 965400086" in big.stdout
    for done in (fifo, gone, bomb, big):
        # No raw Pillow warning, no traceback: only ldstudio's own words.
        assert "Traceback" not in done.stderr and "DecompressionBomb" not in done.stderr
    comfy = ldstudio("info", str(files["comfy"]), home=home)
    assert comfy.returncode == 0 and "source: ComfyUI" in comfy.stdout


def test_info_reports_metadata_too_large(short_dir: Path) -> None:
    path = png_with_text(short_dir / "huge.png", {"parameters": "p\n" + "x" * (2 << 20)})
    done = ldstudio("info", str(path), home=short_dir / "home")
    assert done.returncode == 0 and "no generation metadata found" in done.stdout
    assert (
        "warning: parameters: metadata too large (2,097,154 bytes; at most 1,048,576" in done.stdout
    )


def test_open_image_in_the_window_explains_a_bomb(tmp_path: Path) -> None:
    from ldstudio.qt.metadata_drop import read_parameters

    bomb = claims_size(png_with_text(tmp_path / "bomb.png", {}), 20000, 20000)
    with pytest.raises(ValueError, match=r"image is 20,000×20,000 pixels, over the limit of"):
        read_parameters(bomb)


def test_import_keeps_what_the_reader_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    png_with_text(folder / "huge.png", {"parameters": "p\n" + "x" * (2 << 20)})
    with LibraryStore(tmp_path / "lib") as store:
        report = store.import_folder(folder)
        assert len(report.added) == 1 and not report.skipped
        entry = store.get(report.added[0])
        assert entry.source == "none"
        assert entry.extra["metadata_warnings"].startswith(
            "parameters: metadata too large (2,097,154 bytes; at most 1,048,576 are read)"
        )
