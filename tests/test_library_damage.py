"""A damaged library index: a clear message everywhere, saving keeps the image, and a rebuild
from the image files that keeps the damaged file and carries over what it still reads."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from library_support import ldstudio_png
from PIL import Image

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_FAILED, EXIT_OK
from ldstudio.core.library import (
    DB_NAME,
    IndexDamaged,
    LibraryError,
    LibraryFilter,
    LibraryStore,
    rebuild_index,
)
from ldstudio.core.params import GenerationParams

VERBS = (
    ("list",),
    ("list", "--json"),
    ("show", "1"),
    ("export", "1", "--to", "{tmp}/out"),
    ("import", "{tmp}/outside"),
    ("delete", "1"),
    ("restore", "1"),
    ("empty-trash", "--yes"),
    ("favourite", "1"),
    ("tag", "1", "keeper"),
    ("reconcile",),
)


def make_library(root: Path, outside: Path) -> dict[str, Path]:
    """Four generated images (one favourite and tagged, one trashed) and one indexed in place."""
    with LibraryStore(root) as store:
        paths = {}
        for n, prompt in enumerate(("a fox", "a whale", "an owl", "a crow")):
            image = Image.new("RGB", (16, 16), (n * 60, 0, 0))
            entry = store.add_image(image, GenerationParams(prompt=prompt, seed=n), model_name="m")
            paths[prompt] = entry.path
        fox = store.entry_for_path(paths["a fox"])
        assert fox is not None
        store.set_favourite(fox.id, True)
        store.add_tags(fox.id, ["keeper", "red"])
        whale = store.entry_for_path(paths["a whale"])
        assert whale is not None
        store.trash([whale.id])
        paths["a whale"] = store.get(whale.id).path
        ldstudio_png(outside / "mine.png", prompt="imported in place")
        (added,) = store.import_folder(outside).added
        store.set_favourite(added, True)
        paths["imported in place"] = outside / "mine.png"
    assert not (root / f"{DB_NAME}-wal").exists()  # all of it is in the main file now
    return paths


def damage_table(db: Path, name: str) -> None:
    """Overwrite the root page of one table or index: the file still opens, that part fails."""
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root_page,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)
        ).fetchone()
    conn.close()
    with open(db, "r+b") as handle:
        handle.seek((root_page - 1) * page_size)
        handle.write(b"\xff" * page_size)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed header"])
def test_every_verb_names_the_damage_and_rebuild_restores_the_files(
    damage: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root, outside = tmp_path / "lib", tmp_path / "outside"
    paths = make_library(root, outside)
    db = root / DB_NAME
    data = db.read_bytes()
    if damage == "garbage":
        db.write_bytes(os.urandom(len(data)))
    elif damage == "truncated":
        db.write_bytes(data[:1000])
    else:
        db.write_bytes(b"\0" * 100 + data[100:])
    damaged = db.read_bytes()

    for verb in VERBS:
        argv = [arg.replace("{tmp}", str(tmp_path)) for arg in verb]
        started = time.monotonic()
        code, out, err = run(capsys, "library", "--library", str(root), *argv)
        assert time.monotonic() - started < 2, verb
        assert code == EXIT_FAILED, (verb, err)
        assert f"the library index {db} is damaged" in err, (verb, err)
        assert f"`ldstudio library --library {root} rebuild`" in err
        assert "Traceback" not in err and out == ""
    assert db.read_bytes() == damaged  # nothing was written into it or over it

    code, _, err = run(capsys, "library", "--library", str(root), "rebuild")
    assert code == EXIT_OK, err
    (kept,) = root.glob(f"{DB_NAME}.bad-*[0-9]")
    assert kept.read_bytes() == damaged  # kept aside, never deleted
    assert f"the old index is kept as {kept}" in err
    with LibraryStore(root) as store:
        live = {e.path: e for e in store.page(LibraryFilter(), 0, 100)}
        trashed = {e.path: e for e in store.page(LibraryFilter(trashed=True), 0, 100)}
    # Every image file of the library is back, with the parameters its PNG carries.
    assert set(live) == {paths["a fox"], paths["an owl"], paths["a crow"]}
    assert set(trashed) == {paths["a whale"]}
    fox = live[paths["a fox"]]
    assert (fox.prompt, fox.seed, fox.model, fox.width) == ("a fox", 0, "m", 16)
    assert all(e.params is not None for e in [*live.values(), *trashed.values()])
    # What only the damaged index held could not be read: said so, not pretended.
    assert "could not be read to the end" in err and "of 0 carried over" in err
    assert "images it had indexed in place outside the library" in err
    assert not live[paths["a fox"]].favourite
    assert (outside / "mine.png").is_file()  # the user's file is untouched either way


def test_rebuild_carries_over_what_the_old_index_still_reads(tmp_path: Path) -> None:
    """A damaged date index: the table itself still reads, so nothing only it held is lost."""
    root, outside = tmp_path / "lib", tmp_path / "outside"
    paths = make_library(root, outside)
    with LibraryStore(root) as store:
        before = {e.path: e for e in store.page(LibraryFilter(), 0, 100)}
        before_trash = {e.path: e for e in store.page(LibraryFilter(trashed=True), 0, 100)}
    damage_table(root / DB_NAME, "images_live_by_date")
    with pytest.raises(sqlite3.DatabaseError) as raised, LibraryStore(root) as store:
        store.page(LibraryFilter(), 0, 100)
    assert "is damaged" in str(store.damage(raised.value))

    leftover = root / "images" / ".an-interrupted-save.tmp"  # of a process killed long ago
    leftover.write_bytes(b"half a PNG")
    os.utime(leftover, (time.time() - 60, time.time() - 60))
    report = rebuild_index(root)
    assert not leftover.exists()
    assert report.salvage_error is None and report.damaged_copy is not None
    assert report.images == 5 and report.recovered == 5 and report.unreadable == []
    with LibraryStore(root) as store:
        after = {e.path: e for e in store.page(LibraryFilter(), 0, 100)}
        after_trash = {e.path: e for e in store.page(LibraryFilter(trashed=True), 0, 100)}
        fox = after[paths["a fox"]]
        assert fox.favourite and fox.tags == ("keeper", "red")
        assert after[paths["imported in place"]].favourite  # indexed in place: back too
        for path, entry in before.items():
            assert (after[path].created, after[path].favourite) == (entry.created, entry.favourite)
        (whale,) = after_trash.values()
        (old_whale,) = before_trash.values()
        assert whale.trashed_at == old_whale.trashed_at
        assert whale.original_path == old_whale.original_path  # restore puts it back home
        assert store.restore([whale.id]) == [whale.id]
        assert store.get(whale.id).path == old_whale.original_path


def test_saving_on_a_damaged_index_keeps_the_image_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    make_library(root, tmp_path / "outside")
    damage_table(root / DB_NAME, "images")
    params = GenerationParams(prompt="saved anyway", seed=9)
    image = Image.new("RGB", (16, 16), (1, 2, 3))
    with LibraryStore(root) as store:
        record = store.save(
            image, params, index=0, model_name="m", device="cpu", dtype="fp32", seconds=0.0
        )
        with Image.open(record.path) as saved:
            assert saved.tobytes() == image.tobytes()
        ((path, why),) = store.unindexed
        assert path == record.path and "is damaged" in why and "rebuild" in why
        with pytest.raises(IndexDamaged, match="was saved all the same") as raised:
            store.add_image(image, params, model_name="m")
        assert "rebuild" in str(raised.value)
    rebuild_index(root)
    with LibraryStore(root) as store:
        entry = store.entry_for_path(record.path)
        assert entry is not None and entry.params == params


def test_rebuild_waits_for_the_other_users_of_the_library(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    with LibraryStore(root), pytest.raises(LibraryError, match="close them, then rebuild"):
        rebuild_index(root)
    assert (root / DB_NAME).is_file() and list(root.glob(f"{DB_NAME}.bad-*")) == []


def test_generate_on_a_damaged_index_reports_the_saved_image(
    tiny_model: Path, ldstudio_home: Path
) -> None:
    root = ldstudio_home / "library"
    make_library(root, ldstudio_home / "outside")
    damage_table(root / DB_NAME, "images")
    env = {**os.environ, "LDSTUDIO_HOME": str(ldstudio_home), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "ldstudio", "generate", "a cat", "--model", str(tiny_model)]
    proc = subprocess.run(
        [*command, "--steps", "1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "finished"
    (image,) = result["images"]
    assert Path(image["path"]).is_file()
    assert result["not_indexed"] == [image["path"]] and "is damaged" in result["index_error"]
    assert "warning: 1 image(s) saved but not added to the library index" in proc.stderr
    assert "Traceback" not in proc.stderr

    # An index that cannot even be opened: refused before generating, nothing written.
    (root / DB_NAME).write_bytes(os.urandom(8192))
    before = sorted((root / "images").rglob("*.png"))
    proc = subprocess.run(
        [*command, "--steps", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        proc.returncode == EXIT_FAILED and "is damaged" in proc.stderr and "rebuild" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert sorted((root / "images").rglob("*.png")) == before


def test_the_window_offers_to_rebuild_a_damaged_index(qtbot, tmp_path: Path) -> None:
    from ldstudio.app import open_library

    root = tmp_path / "lib"
    make_library(root, tmp_path / "outside")
    (root / DB_NAME).write_bytes(os.urandom(8192))
    asked: list[str] = []

    def decline(message: str) -> bool:
        asked.append(message)
        return False

    assert open_library(root, ask=decline) is None
    assert "is damaged" in asked[0] and list(root.glob(f"{DB_NAME}.bad-*")) == []
    store = open_library(root, ask=lambda _message: True)
    assert store is not None
    try:
        assert store.count() == 3 and store.count(LibraryFilter(trashed=True)) == 1
    finally:
        store.close()
    assert len(list(root.glob(f"{DB_NAME}.bad-*[0-9]"))) == 1


def test_the_library_pane_names_the_damage_not_a_traceback(qtbot, tmp_path: Path) -> None:
    from ldstudio.qt.library_model import LibraryModel

    root = tmp_path / "lib"
    make_library(root, tmp_path / "outside")
    damage_table(root / DB_NAME, "images_live_by_date")  # what the grid's count reads
    with LibraryStore(root) as store:
        model = LibraryModel(store, poll_revision=False)
        try:
            with qtbot.waitSignal(model.failed) as failed:
                model.refresh()
            assert "is damaged" in failed.args[0] and "rebuild" in failed.args[0]
        finally:
            model.close()


def test_the_window_says_when_a_saved_image_could_not_be_indexed(qtbot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QWidget

    from ldstudio.qt.library_controller import LibraryController
    from ldstudio.qt.params_pane import ParamsPane
    from ldstudio.qt.prompt_pane import PromptPane

    root = tmp_path / "lib"
    make_library(root, tmp_path / "outside")
    damage_table(root / DB_NAME, "images")
    window, prompt_pane, params_pane = QWidget(), PromptPane(), ParamsPane()
    for widget in (window, prompt_pane, params_pane):
        qtbot.addWidget(widget)
    with LibraryStore(root) as store:
        controller = LibraryController(store, prompt_pane, params_pane, window, poll_revision=False)
        errors: list[str] = []
        controller.error.connect(errors.append)
        try:
            record = store.save(  # what the engine thread does with a finished image
                Image.new("RGB", (8, 8)),
                GenerationParams(prompt="unindexed", seed=1),
                index=0,
                model_name="m",
                device="cpu",
                dtype="fp32",
                seconds=0.0,
            )
            controller.refresh()  # what the window does after a job
            told = [e for e in errors if "not added to the library" in e]
            assert len(told) == 1 and str(record.path) in told[0] and "rebuild" in told[0]
            controller.refresh()  # told once, not after every job
            assert len([e for e in errors if "not added to the library" in e]) == 1
        finally:
            controller.close()
