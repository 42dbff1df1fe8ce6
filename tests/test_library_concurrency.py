"""Several processes save into one library at the same moment, same prompt and seed: no image
is lost or overwritten, and each has exactly one row."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from ldstudio.core import atomic
from ldstudio.core.library import LibraryFilter, LibraryStore
from ldstudio.core.params import GenerationParams

WRITER = r"""
import hashlib
import os
import sys
from pathlib import Path

from PIL import Image

from ldstudio.core.library import LibraryStore
from ldstudio.core.params import GenerationParams

root, saves = Path(sys.argv[1]), int(sys.argv[2])
# Identical parameters in every writer: every save computes the same file name this second.
params = GenerationParams(prompt="the same prompt in every writer", seed=1234)
store = LibraryStore(root)
print("READY", flush=True)
sys.stdin.readline()  # the barrier: every writer is released at once
for i in range(saves):
    image = Image.frombytes("RGB", (16, 16), os.urandom(16 * 16 * 3))  # this save's own pixels
    record = store.save(
        image, params, index=0, model_name="tiny", device="cpu", dtype="float32", seconds=0.0
    )
    digest = hashlib.sha256(image.tobytes()).hexdigest()
    print(f"SAVED {digest} {record.path}", flush=True)
store.close()
"""

WRITERS = 4
SAVES_EACH = 30  # 120 saves in all


def _run_writers(root: Path, script: Path) -> list[tuple[str, Path]]:
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(SAVES_EACH)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "READY\n", child.stderr.read() if child.stderr else line
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    reported: list[tuple[str, Path]] = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        for line in out.splitlines():
            _saved, digest, path = line.split(" ", 2)
            reported.append((digest, Path(path)))
    return reported


def test_concurrent_writers_never_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    LibraryStore(root).close()  # created once, so the writers race on names, not on set-up
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    reported = _run_writers(root, script)
    assert len(reported) == WRITERS * SAVES_EACH

    overwritten = []
    for digest, path in reported:
        with Image.open(path) as image:
            if hashlib.sha256(image.convert("RGB").tobytes()).hexdigest() != digest:
                overwritten.append(path)
    assert overwritten == [], f"{len(overwritten)} reported image(s) hold another save's pixels"
    paths = [path for _digest, path in reported]
    assert len(set(paths)) == len(paths), "two saves were reported under one name"
    # The writers really raced on one name: all but a few share the first save's stem.
    assert len({p.name.split("-1234-")[0] for p in paths}) <= 3

    with LibraryStore(root) as store:
        entries = store.page(LibraryFilter(), 0, 10_000)
        assert sorted(e.path for e in entries) == sorted(paths)  # one row each, no other row
        assert set((root / "images").rglob("*.png")) == set(paths)  # no file without its row
        assert store.reconcile().adopted == []
    assert [p for p in root.rglob("*") if p.name.endswith(".tmp")] == []


def _save_in_threads(store: LibraryStore, threads: int) -> list[tuple[bytes, Path]]:
    barrier = threading.Barrier(threads)
    results: list[tuple[bytes, Path]] = []
    lock = threading.Lock()
    params = GenerationParams(prompt="same", seed=7)

    def work(n: int) -> None:
        image = Image.new("RGB", (8, 8), (n * 30 % 256, 0, 0))
        barrier.wait()
        entry = store.add_image(image, params, model_name="m")
        with lock:
            results.append((image.tobytes(), entry.path))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def _check_saved(store: LibraryStore, results: list[tuple[bytes, Path]]) -> None:
    paths = [path for _pixels, path in results]
    assert len(set(paths)) == len(paths)
    for pixels, path in results:
        with Image.open(path) as image:
            assert image.convert("RGB").tobytes() == pixels, path
        assert store.entry_for_path(path) is not None


def test_threads_saving_at_once_get_their_own_files(tmp_path: Path) -> None:
    with LibraryStore(tmp_path / "lib") as store:
        for _round in range(8):
            _check_saved(store, _save_in_threads(store, 4))
        assert store.count() == 32


# EINVAL: what Windows says for exFAT/FAT ("Incorrect function").
@pytest.mark.parametrize("code", [errno.EPERM, errno.EINVAL])
def test_names_are_claimed_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """FAT and some network shares have no hard links: O_EXCL claims the name instead."""

    def no_links(_src: object, _dst: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "link", no_links)
    with LibraryStore(tmp_path / "lib") as store:
        for _round in range(4):
            _check_saved(store, _save_in_threads(store, 4))
        assert store.count() == 16


def test_reconcile_removes_a_claimed_name_never_written(tmp_path: Path) -> None:
    """Without hard links, a writer killed between claiming a name and renaming its data onto
    it leaves an empty file: no image, no row. Reconcile removes it instead of calling it an
    unreadable image for ever."""
    root = tmp_path / "lib"
    LibraryStore(root).close()
    claimed = root / "images" / "2026-12" / "20261201-120000-7-same.png"
    claimed.parent.mkdir(parents=True)
    claimed.touch()
    past = time.time() - 60
    os.utime(claimed, (past, past))
    with LibraryStore(root, reconcile=True) as store:
        report = store.last_reconcile
        assert report is not None
        assert claimed in report.temp_files_removed
        assert report.unreadable == [] and report.adopted == []
        assert store.count() == 0
    assert not claimed.exists()
