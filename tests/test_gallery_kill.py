"""Crash safety: a process saving into the library is SIGKILLed at random moments, repeatedly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ldstudio.core.gallery import GalleryFilter, GalleryStore

CHILD = r"""
import sys
from pathlib import Path

from PIL import Image

from ldstudio.core.gallery import GalleryStore
from ldstudio.core.params import GenerationParams

root, round_no = Path(sys.argv[1]), int(sys.argv[2])
store = GalleryStore(root)
print("READY", flush=True)
i = 0
while True:
    # Noise compresses badly: each PNG takes a while to encode, so kills land mid-write too.
    image = Image.effect_noise((192, 192), 80).convert("RGB")
    params = GenerationParams(prompt=f"kill round {round_no} image {i}", seed=i)
    record = store.save(
        image, params, index=0, model_name="tiny", device="cpu", dtype="float32", seconds=0.0
    )
    # Reported only after save() returned: the file is in place and its row committed.
    print(f"SAVED {record.path}", flush=True)
    i += 1
"""

ROUNDS = 8


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_saver_loses_nothing_reported(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(1126)
    reported: list[Path] = []
    for round_no in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, str(script), str(root), str(round_no)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready == "READY\n", child.stderr.read() if child.stderr else ready
        time.sleep(rng.uniform(0.02, 0.5))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        out = child.stdout.read()
        # A line cut by the kill has no newline: that save was not reported, so not promised.
        lines = out.split("\n")[:-1]
        reported += [
            Path(line.removeprefix("SAVED ")) for line in lines if line.startswith("SAVED ")
        ]

        with GalleryStore(root) as store:
            assert store.crashed_before, "the killed session must be detected"
            assert store.last_reconcile is not None
            for path in reported:
                entry = store.entry_for_path(path)
                assert entry is not None, f"reported image lost from the index: {path}"
                assert path.is_file(), f"reported image file lost: {path}"
            entries = store.page(GalleryFilter(), 0, 100_000)
            for entry in entries:
                assert entry.path.is_file() and not entry.missing, entry.path
            on_disk = {p for p in (root / "images").rglob("*.png")}
            assert {e.path for e in entries} == on_disk  # orphans adopted, nothing unindexed
            leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
            assert leftovers == []
            # Adopted orphans carry their exact parameters, read back from the file.
            assert all(e.params is not None for e in entries)
    assert reported  # the test really saved under fire
