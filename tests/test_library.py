"""The gallery store: saving, queries for a virtual grid, tags, trash, import, reconcile, schema."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from library_support import A1111_TEXT, COMFY_PROMPT, ldstudio_png, png_with_text, tool_images
from PIL import Image

from ldstudio.core.imagefiles import ImageSink
from ldstudio.core.library import (
    DB_NAME,
    SCHEMA_VERSION,
    LibraryError,
    LibraryFilter,
    LibraryStore,
    NewEntry,
    default_library_dir,
    migrate,
)
from ldstudio.core.library import store as gallery_module
from ldstudio.core.library import trash as trash_module
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import read_file


def save(store: LibraryStore, prompt: str, seed: int = 1, model: str = "tiny") -> Path:
    params = GenerationParams(prompt=prompt, seed=seed, width=64, height=64)
    record = store.save(
        Image.new("RGB", (64, 64), (seed % 256, 0, 0)),
        params,
        index=0,
        model_name=model,
        device="cpu",
        dtype="float32",
        seconds=0.5,
    )
    return record.path


@pytest.fixture
def store(tmp_path: Path) -> LibraryStore:
    with LibraryStore(tmp_path / "lib") as opened:
        yield opened


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_default_location_follows_ldstudio_home(ldstudio_home: Path) -> None:
    assert default_library_dir() == ldstudio_home / "library"
    with LibraryStore() as opened:
        assert opened.root == (ldstudio_home / "library").resolve()
        assert (opened.root / DB_NAME).exists()
        mode = opened._conn().execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_store_is_an_image_sink_and_round_trips_params(store: LibraryStore) -> None:
    sink: ImageSink = store
    params = GenerationParams(
        prompt="a red fox", negative_prompt="dull", seed=9, width=64, height=64
    )
    record = sink.save(
        Image.new("RGB", (64, 64)),
        params,
        index=2,
        model_name="tiny",
        device="cpu",
        dtype="float32",
        seconds=1.25,
    )
    assert record.path.is_file() and record.path.is_relative_to(store.images_dir)
    assert record.index == 2 and record.seed == 9
    assert read_file(record.path).params == params
    entry = store.entry_for_path(record.path)
    assert entry is not None
    assert entry.params == params
    assert (entry.model, entry.seed, entry.width, entry.seconds) == ("tiny", 9, 64, 1.25)
    assert (entry.scheduler, entry.steps, entry.device) == ("Euler a", 20, "cpu")
    assert entry.mtime_ns == record.path.stat().st_mtime_ns
    assert not list(store.root.rglob("*.tmp"))


def test_page_count_and_order_for_a_virtual_grid(store: LibraryStore) -> None:
    for i in range(12):
        save(store, f"image number {i}", seed=i)
    assert store.count() == 12
    newest = store.page(LibraryFilter(), 0, 5)
    assert [e.seed for e in newest] == [11, 10, 9, 8, 7]
    assert [e.seed for e in store.page(LibraryFilter(), 10, 5)] == [1, 0]
    oldest = store.page(LibraryFilter(newest_first=False), 0, 3)
    assert [e.seed for e in oldest] == [0, 1, 2]
    ids = store.ids()
    assert len(ids) == 12 and ids[0] == newest[0].id
    assert [e.id for e in store.entries(ids[3:6])] == ids[3:6]
    assert [e.id for e in store.entries([ids[4], 999_999, ids[1]])] == [ids[4], ids[1]]
    with pytest.raises(ValueError, match="must not be negative"):
        store.page(LibraryFilter(), -1, 5)


@pytest.mark.parametrize("use_fts", [True, False])
def test_filters(tmp_path: Path, use_fts: bool) -> None:
    with LibraryStore(tmp_path / "lib", use_fts=use_fts) as store:
        assert store.use_fts is use_fts
        fox = save(store, "a red fox in the snow", seed=1, model="m1")
        save(store, "a blue whale, deep sea", seed=2, model="m2")
        save(store, "Foxglove flowers in a café garden", seed=3, model="m1")
        fox_id = store.entry_for_path(fox).id  # type: ignore[union-attr]

        def seeds(f: LibraryFilter) -> set[int | None]:
            found = {e.seed for e in store.page(f, 0, 100)}
            assert store.count(f) == len(found)
            return found

        assert seeds(LibraryFilter(text="fox")) == {1, 3}  # prefix match: fox, Foxglove
        assert seeds(LibraryFilter(text="red fox")) == {1}  # every word must match
        assert seeds(LibraryFilter(text="FOX SNOW")) == {1}
        assert seeds(LibraryFilter(text="cafe" if use_fts else "café")) == {3}
        assert seeds(LibraryFilter(text="whale", model="m1")) == set()
        assert seeds(LibraryFilter(model="m1")) == {1, 3}
        # Search syntax from users is text, never FTS syntax.
        for hostile in ('"', "AND", "NEAR(", "fox*", "a OR b", "-", "%", "_"):
            store.count(LibraryFilter(text=hostile))
        assert seeds(LibraryFilter(text='"fox"')) == {1, 3}
        if use_fts:
            # One character is a whole word, not a prefix of every word starting with it.
            assert seeds(LibraryFilter(text="a")) == {1, 2, 3}
            assert seeds(LibraryFilter(text="f")) == set()

        store.set_favourite(fox_id, True)
        assert seeds(LibraryFilter(favourites=True)) == {1}
        store.set_favourite(fox_id, False)
        assert seeds(LibraryFilter(favourites=True)) == set()
        every = store.ids()
        assert store.set_favourites([*every, 999], True) == 3  # an unknown id changes nothing
        assert seeds(LibraryFilter(favourites=True)) == {1, 2, 3}
        assert store.set_favourites(every[:2], False) == 2
        assert len(seeds(LibraryFilter(favourites=True))) == 1
        store.set_favourites(every, False)

        store.add_tags(fox_id, ["animals", "Winter"])
        assert store.get(fox_id).tags == ("animals", "Winter")
        assert seeds(LibraryFilter(tags=("winter",))) == {1}  # tags ignore case
        assert seeds(LibraryFilter(tags=("animals", "nope"))) == set()
        assert store.all_tags() == [("animals", 1), ("Winter", 1)]
        store.remove_tags(fox_id, ["Winter"])
        assert store.all_tags() == [("animals", 1)]
        with pytest.raises(LibraryError, match="cannot contain a comma"):
            store.add_tags(fox_id, ["a,b"])
        with pytest.raises(LibraryError, match="1 to 100 characters"):
            store.add_tags(fox_id, ["   "])

        assert store.models() == [("m1", 2), ("m2", 1)]


@pytest.mark.parametrize("use_fts", [True, False])
def test_emoji_and_symbols_are_found_too(tmp_path: Path, use_fts: bool) -> None:
    with LibraryStore(tmp_path / "lib", use_fts=use_fts) as store:
        save(store, "a small green triangle 🦊 on black", seed=1)
        save(store, 'a ★ star, quoted "just so"', seed=2)
        save(store, "a plain triangle", seed=3)

        def seeds(text: str) -> set[int | None]:
            f = LibraryFilter(text=text)
            found = {e.seed for e in store.page(f, 0, 100)}
            assert store.count(f) == len(found)
            return found

        assert seeds("🦊") == {1}  # the FTS tokenizer drops emoji: found as a substring
        assert seeds("triangle 🦊") == {1}
        assert seeds("★") == {2}
        assert seeds('"') == {2}  # only punctuation: looked for as typed
        assert seeds("triangle,") == {1, 3}  # beside words, ASCII punctuation is ignored
        assert seeds("🐳") == set()


def test_date_range_filter(store: LibraryStore, tmp_path: Path) -> None:
    day = 86_400.0
    base = 1_700_000_000.0
    entries = [
        NewEntry(path=ldstudio_png(tmp_path / "ext" / f"{i}.png"), created=base + i * day)
        for i in range(5)
    ]
    store.add_entries(entries)
    f = LibraryFilter(since=base + day, until=base + 3 * day)
    assert [e.created for e in store.page(f, 0, 10)] == [base + 2 * day, base + day]
    assert store.count(LibraryFilter(since=base + 4 * day)) == 1


def test_unknown_ids_are_named(store: LibraryStore) -> None:
    with pytest.raises(LibraryError, match="image 42: not in the library"):
        store.get(42)
    with pytest.raises(LibraryError, match="image 42"):
        store.set_favourite(42, True)
    with pytest.raises(LibraryError, match="image 42"):
        store.add_tags(42, ["x"])


def test_trash_restore_and_empty(store: LibraryStore) -> None:
    keep = store.entry_for_path(save(store, "keep me", seed=1))
    gone = store.entry_for_path(save(store, "throw me away", seed=2))
    assert keep and gone
    thumb = store.thumbnail(gone)
    assert store.trash([gone.id]) == [gone.id]
    trashed = store.get(gone.id)
    assert not gone.path.exists() and trashed.path.is_file()
    assert trashed.path.parent == store.trash_dir
    assert trashed.trashed_at is not None and trashed.original_path == gone.path
    assert store.count() == 1 and store.count(LibraryFilter(trashed=True)) == 1
    assert store.count(LibraryFilter(text="throw")) == 0
    assert store.count(LibraryFilter(text="throw", trashed=True)) == 1

    assert store.restore([gone.id]) == [gone.id]
    restored = store.get(gone.id)
    assert restored.path == gone.path and restored.path.is_file()
    assert restored.trashed_at is None and store.count() == 2

    # Restoring onto a place that is taken meanwhile picks a free name; nothing is overwritten.
    store.trash([gone.id])
    gone.path.write_bytes(b"somebody else's file")
    store.restore([gone.id])
    again = store.get(gone.id)
    assert again.path != gone.path and again.path.is_file()
    assert gone.path.read_bytes() == b"somebody else's file"

    store.trash([gone.id])
    assert store.empty_trash() == 1
    assert not list(store.trash_dir.iterdir())
    assert not thumb.exists()
    assert store.count() == 1 and store.get(keep.id).path.is_file()
    with pytest.raises(LibraryError):
        store.get(gone.id)


def test_an_image_indexed_in_place_is_never_moved_or_deleted_by_the_trash(
    store: LibraryStore, tmp_path: Path
) -> None:
    outside = ldstudio_png(tmp_path / "mine" / "photo.png")
    original = outside.read_bytes()
    (image_id,) = store.import_folder(tmp_path / "mine").added
    thumb = store.thumbnail(store.get(image_id))

    assert store.trash([image_id]) == [image_id]
    trashed = store.get(image_id)
    assert trashed.path == outside and outside.read_bytes() == original
    assert trashed.trashed_at is not None and not any(store.trash_dir.iterdir())
    assert store.count() == 0
    assert [e.id for e in store.page(LibraryFilter(trashed=True))] == [image_id]
    assert store.thumbnail(trashed) == thumb
    # Reconcile neither flags it missing nor adopts it, and it stays in the trash.
    assert not store.reconcile().changed
    assert store.get(image_id) == trashed
    assert store.import_folder(tmp_path / "mine").already_in_library == [outside]

    assert store.restore([image_id]) == [image_id]
    restored = store.get(image_id)
    assert restored.path == outside and restored.trashed_at is None and store.count() == 1

    store.trash([image_id])
    assert store.empty_trash() == 1
    assert outside.read_bytes() == original  # the user's file, untouched
    assert not thumb.exists()
    with pytest.raises(LibraryError, match=f"image {image_id}: not in the library"):
        store.get(image_id)
    assert not store.reconcile().changed
    assert store.count() == 0 and store.count(LibraryFilter(trashed=True)) == 0


def test_empty_trash_gives_back_in_place_images_that_earlier_versions_moved_in(
    store: LibraryStore, tmp_path: Path
) -> None:
    outside = ldstudio_png(tmp_path / "mine" / "photo.png")
    (image_id,) = store.import_folder(tmp_path / "mine").added
    # What trash() used to do with such an image: move the user's file into the trash.
    target = store.trash_dir / f"{image_id}-photo.png"
    store._move(store.get(image_id), target, trashed_at=time.time(), original=outside)
    assert target.is_file() and not outside.exists()
    assert store.empty_trash() == 1
    assert outside.is_file() and not target.exists()
    assert store.count() == 0 and store.count(LibraryFilter(trashed=True)) == 0


def test_restore_refuses_an_image_whose_file_is_gone_and_changes_nothing(
    store: LibraryStore, tmp_path: Path
) -> None:
    kept = store.entry_for_path(save(store, "kept", seed=1))
    lost = store.entry_for_path(save(store, "lost", seed=2))
    assert kept and lost
    store.trash([kept.id, lost.id])
    trashed_lost = store.get(lost.id)
    trashed_lost.path.unlink()
    with pytest.raises(
        LibraryError,
        match=rf"image {lost.id}: its file is missing from the trash \(.*{lost.id}-.*\.png\); "
        "nothing to restore",
    ):
        store.restore([kept.id, lost.id])
    assert store.get(lost.id) == trashed_lost
    assert store.get(kept.id).trashed_at is not None  # the request was refused as a whole
    assert store.restore([kept.id]) == [kept.id]
    assert store.get(kept.id).path == kept.path and kept.path.is_file()

    outside = ldstudio_png(tmp_path / "mine" / "photo.png")
    (image_id,) = store.import_folder(tmp_path / "mine").added
    store.trash([image_id])
    outside.unlink()
    with pytest.raises(LibraryError, match=f"image {image_id}: its file has gone"):
        store.restore([image_id])
    assert store.get(image_id).trashed_at is not None


def test_interrupted_trash_move_is_finished_by_reconcile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lib"
    store = LibraryStore(root)
    entry = store.entry_for_path(save(store, "half moved", seed=3))
    assert entry

    def killed(_source: Path, _target: Path) -> None:
        raise KeyboardInterrupt  # the process dies between the row update and the file move

    monkeypatch.setattr(trash_module, "_move_file", killed)
    with pytest.raises(KeyboardInterrupt):
        store.trash([entry.id])
    monkeypatch.undo()
    store.close()
    with LibraryStore(root, reconcile=True) as reopened:
        assert reopened.last_reconcile is not None
        assert reopened.last_reconcile.moves_finished == [entry.id]
        moved = reopened.get(entry.id)
        assert moved.path.parent == reopened.trash_dir and moved.path.is_file()
        assert not entry.path.exists() and not moved.missing


def test_reconcile_adopts_orphans_flags_missing_and_removes_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    with LibraryStore(root) as store:
        kept = save(store, "kept", seed=1)
        lost = save(store, "lost", seed=2)
    lost_bytes = lost.read_bytes()
    lost.unlink()
    orphan = ldstudio_png(root / "images" / "2020-01" / "orphan.png", prompt="orphan", seed=77)
    foreign = png_with_text(root / "images" / "dropped.png", {"parameters": A1111_TEXT})
    trashed_orphan = ldstudio_png(root / "trash" / "old.png", prompt="was trashed")
    temp = root / "images" / "2020-01" / ".orphan.x1y2.tmp"
    temp.write_bytes(b"half a png")
    junk = root / "images" / "notes.png"
    junk.write_bytes(b"not an image")

    with LibraryStore(root, reconcile=True) as store:
        report = store.last_reconcile
        assert report is not None
        assert sorted(report.adopted) == sorted([orphan, foreign, trashed_orphan])
        assert report.unreadable == [junk] and junk.exists()  # never deleted
        assert report.temp_files_removed == [temp] and not temp.exists()
        lost_entry = next(e for e in store.page(LibraryFilter(), 0, 10) if e.prompt == "lost")
        assert report.flagged_missing == [lost_entry.id] and lost_entry.missing
        assert store.count(LibraryFilter(missing=False)) == 3
        adopted = store.entry_for_path(orphan)
        assert adopted and adopted.source == "ldstudio" and adopted.seed == 77
        assert adopted.params is not None and adopted.params.prompt == "orphan"
        assert store.entry_for_path(foreign).source == "a1111"  # type: ignore[union-attr]
        assert store.entry_for_path(trashed_orphan).trashed_at is not None  # type: ignore[union-attr]
        assert store.entry_for_path(kept) is not None
        # Nothing to do the second time.
        assert not store.reconcile().changed
        # Thumbnails of images no longer in the index are pruned.
        stale = store.thumbnails.path_for(9999, 1)
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"old")
        live = store.thumbnail(adopted)
        assert store.reconcile().thumbnails_removed == 1
        assert not stale.exists() and live.exists()

        lost.write_bytes(lost_bytes)
        assert store.reconcile().found_again == [lost_entry.id]
        assert not store.get(lost_entry.id).missing


def test_unclean_shutdown_triggers_reconcile_and_clean_close_does_not(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    with LibraryStore(root) as store:
        save(store, "one")
    with LibraryStore(root) as store:
        assert not store.crashed_before and store.last_reconcile is None
    crashed = LibraryStore(root)
    orphan = ldstudio_png(root / "images" / "orphan.png")
    # A process that dies never runs close(): its session file stays, unlocked.
    crashed._session.handle.close()  # type: ignore[union-attr]
    crashed._closed = True
    with LibraryStore(root) as store:
        assert store.crashed_before
        assert store.last_reconcile is not None and store.last_reconcile.adopted == [orphan]


def test_reconcile_spares_temp_files_while_another_session_is_live(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    with LibraryStore(root) as writer:
        temp = root / "images" / ".being-written.abc.tmp"
        temp.write_bytes(b"in progress")
        old = time.time() - 3600  # older than both sessions: only a live writer protects it
        os.utime(temp, (old, old))
        with LibraryStore(root) as other:
            assert other.reconcile().temp_files_removed == []
        assert temp.exists()
        assert writer.reconcile().temp_files_removed == [temp]


def test_import_in_place_and_copy(store: LibraryStore, tmp_path: Path) -> None:
    folder = tmp_path / "other-tools"
    images = tool_images(folder)
    (folder / "sub").mkdir()
    ldstudio_png(folder / "sub" / "nested.png", prompt="nested one")
    (folder / "readme.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    Image.new("RGB", (8, 8)).save(folder / "anim.gif")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    seen: list[tuple[int, int]] = []
    report = store.import_folder(
        folder, progress=lambda done, total: seen.append((done, total)), progress_every=0
    )
    total = sum(1 for _ in folder.rglob("*"))
    assert seen == [(done, total) for done in range(total + 1)]  # every file, then the end
    assert len(report.added) == len(images) + 1
    skipped = dict((p.name, why) for p, why in report.skipped)
    assert sorted(skipped) == ["anim.gif", "broken.png"]  # the caption .txt passes quietly
    assert skipped["anim.gif"] == "GIF is not imported; ldstudio keeps PNG, JPEG and WebP images"
    sources = {store.get(i).source for i in report.added}
    assert sources == {"ldstudio", "a1111", "comfyui", "invokeai", "fooocus", "novelai", "none"}
    assert store.get(report.added[0]).path.is_relative_to(folder)
    comfy = store.entry_for_path(images["comfyui"])
    assert comfy and comfy.prompt == "a castle on a hill" and comfy.model
    assert "prompt_graph" not in comfy.extra  # graphs stay in the file, not the index
    assert store.count(LibraryFilter(text="nested")) == 1

    again = store.import_folder(folder)
    assert again.added == [] and len(again.already_in_library) == len(images) + 1

    copied = store.import_folder(folder, copy=True)
    assert len(copied.added) == len(images) + 1
    for image_id in copied.added:
        path = store.get(image_id).path
        assert path.is_relative_to(store.images_dir) and path.is_file()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before

    with pytest.raises(LibraryError, match="not a folder"):
        store.import_folder(tmp_path / "nope")
    with pytest.raises(LibraryError, match="inside the library"):
        store.import_folder(store.images_dir)


def test_copy_import_twice_copies_each_unchanged_file_once(
    store: LibraryStore, tmp_path: Path
) -> None:
    folder = tmp_path / "other-tools"
    images = tool_images(folder)
    first = store.import_folder(folder, copy=True)
    assert len(first.added) == len(images)
    copies = sorted(all_files(store.images_dir))

    again = store.import_folder(folder, copy=True)
    assert again.added == [] and again.skipped == []
    assert sorted(again.already_in_library) == sorted(images.values())
    assert sorted(all_files(store.images_dir)) == copies

    # A file changed since is copied again; a folder beside it with a similar name is its own.
    edited = images["a1111"]
    stat = edited.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    ldstudio_png(tmp_path / "other-tools2" / "ldstudio.png")
    third = store.import_folder(folder, copy=True)
    assert [store.get(i).source for i in third.added] == ["a1111"]
    assert len(third.already_in_library) == len(images) - 1
    assert len(store.import_folder(tmp_path / "other-tools2", copy=True).added) == 1

    # Indexing in place is a different thing from copying: it does not count as imported.
    assert len(store.import_folder(folder).added) == len(images)


def test_numbers_too_big_for_the_index_do_not_stop_an_import(
    store: LibraryStore, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    huge = 99999999999999999999
    big_seed = png_with_text(
        folder / "seed.png", {"parameters": A1111_TEXT.replace("965400086", str(huge))}
    )
    big_steps = png_with_text(
        folder / "steps.png", {"parameters": A1111_TEXT.replace("Steps: 28", f"Steps: {huge}")}
    )
    graph = copy.deepcopy(COMFY_PROMPT)
    graph["3"]["inputs"]["seed"] = 2**64 - 1  # ComfyUI's largest seed
    comfy = png_with_text(folder / "comfy.png", {"prompt": json.dumps(graph)})
    fine = ldstudio_png(folder / "fine.png", seed=7)

    report = store.import_folder(folder)
    assert report.skipped == [] and len(report.added) == 4
    seed_entry = store.entry_for_path(big_seed)
    assert seed_entry and seed_entry.seed is None and seed_entry.extra["seed"] == huge
    assert seed_entry.steps == 28 and seed_entry.prompt.startswith("a lighthouse")
    steps_entry = store.entry_for_path(big_steps)
    assert steps_entry and steps_entry.steps is None and steps_entry.extra["steps"] == huge
    assert steps_entry.seed == 965400086 and "seed" not in steps_entry.extra
    comfy_entry = store.entry_for_path(comfy)
    assert comfy_entry and comfy_entry.seed is None and comfy_entry.extra["seed"] == 2**64 - 1
    assert store.entry_for_path(fine).seed == 7  # type: ignore[union-attr]
    assert store.count(LibraryFilter(text="lighthouse")) == 2
    assert json.loads(json.dumps(seed_entry.to_dict()))["seed"] is None

    # Reconcile adopts such a file into the library as well.
    dropped = Path(shutil.copy(big_seed, store.images_dir / "dropped.png"))
    assert store.reconcile().adopted == [dropped]
    assert store.entry_for_path(dropped).extra["seed"] == huge  # type: ignore[union-attr]


def test_one_row_the_index_refuses_is_skipped_and_the_rest_added(
    store: LibraryStore, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    good = NewEntry.from_file(ldstudio_png(folder / "good.png", prompt="a good one"))
    # A value no INTEGER column holds (sizes come from the file system; a bad one is refused).
    bad = dataclasses.replace(
        NewEntry.from_file(ldstudio_png(folder / "bad.png", prompt="a bad size")),
        file_size=2**64,
    )

    # Without `failed` the whole batch is refused, as one save must be.
    with pytest.raises(OverflowError):
        store.add_entries([good, bad])
    assert store.count() == 0

    failed: list[tuple[NewEntry, str]] = []
    added = store.add_entries([good, bad], failed=failed)
    assert added == [store.entry_for_path(good.path).id]  # type: ignore[union-attr]
    ((refused, why),) = failed
    assert refused == bad and "the library index cannot store it" in why


def test_a_file_name_that_is_not_utf8_is_stored_as_its_bytes(
    store: LibraryStore, tmp_path: Path
) -> None:
    """Linux allows any bytes in a name; the row names exactly that file, every way round."""
    folder = tmp_path / "mixed"
    good = ldstudio_png(folder / "good.png", prompt="a good one")
    raw = os.fsencode(folder) + b"/bad-\xff.png"
    try:
        bad = ldstudio_png(Path(os.fsdecode(raw)), prompt="a bad name")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not valid UTF-8")

    report = store.import_folder(folder)
    assert report.skipped == [] and len(report.added) == 2
    entry = store.entry_for_path(bad)
    assert entry is not None and os.fsencode(entry.path) == raw
    assert entry.prompt == "a bad name" and entry.path.is_file()
    assert store.get(entry.id).path == bad
    again = store.import_folder(folder)  # both known: not added twice
    assert again.added == [] and sorted(again.already_in_library) == sorted([bad, good])

    copied = store.import_folder(folder, copy=True)
    assert len(copied.added) == 2 and copied.skipped == []
    (copy_entry,) = [e for e in store.entries(copied.added) if e.prompt == "a bad name"]
    assert os.fsencode(copy_entry.path.name) == b"bad-\xff.png" and copy_entry.path.is_file()
    assert store.import_folder(folder, copy=True).added == []  # the copy source is known too

    # Trash and restore move the library's copy under its bytes name, and back.
    store.trash([copy_entry.id])
    trashed = store.get(copy_entry.id)
    assert trashed.path.is_file() and trashed.path.is_relative_to(store.trash_dir)
    assert store.restore([copy_entry.id]) == [copy_entry.id]
    assert store.get(copy_entry.id).path == copy_entry.path and copy_entry.path.is_file()

    # Reconcile adopts such a file and then knows it.
    orphan = Path(shutil.copy(bad, store.images_dir / os.fsdecode(b"orphan-\xfe.png")))
    assert store.reconcile().adopted == [orphan]
    assert store.reconcile().adopted == [] and not store.get(entry.id).missing
    bad.unlink()
    assert store.reconcile().flagged_missing == [entry.id]


def test_thumbnails_are_lazy_cached_and_follow_edits(store: LibraryStore) -> None:
    path = save(store, "thumb", seed=4)
    entry = store.entry_for_path(path)
    assert entry
    expected = store.thumbnail_path(entry)
    assert not expected.exists()
    thumb = store.thumbnail(entry)
    assert thumb == expected and thumb.is_file()
    with Image.open(thumb) as image:
        assert image.format == "WEBP" and max(image.size) <= 256
    first_mtime = thumb.stat().st_mtime_ns
    assert store.thumbnail(entry).stat().st_mtime_ns == first_mtime  # reused, not rebuilt
    big = Image.new("RGB", (1024, 512), (0, 200, 0))
    big.save(path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    fresh = store.thumbnail(entry)
    assert fresh != thumb
    with Image.open(fresh) as image:
        assert image.size == (256, 128)


def test_many_threads_save_and_query_at_once(store: LibraryStore) -> None:
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(10):
                save(store, f"thread {worker} image {i}", seed=worker * 100 + i)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(30):
                store.page(LibraryFilter(text="thread"), 0, 20)
                store.count()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 40
    assert len({e.path for e in store.page(LibraryFilter(), 0, 100)}) == 40


def test_revision_changes_when_another_connection_commits(tmp_path: Path) -> None:
    with LibraryStore(tmp_path / "lib") as viewer, LibraryStore(tmp_path / "lib") as writer:
        before = viewer.revision()
        assert viewer.revision() == before
        save(writer, "new")
        assert viewer.revision() != before


def test_migration_from_schema_version_1(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    (root / "images").mkdir()
    image = ldstudio_png(root / "images" / "old.png", prompt="an old lighthouse", seed=8)
    params = read_file(image).params
    assert params is not None
    conn = sqlite3.connect(root / DB_NAME, isolation_level=None)
    assert migrate(conn, target=1) == 0
    conn.execute(
        "INSERT INTO images (path, params_json, prompt, model, seed, width, height, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ("images/old.png", params.to_json(), params.prompt, "tiny", 8, 64, 64, 1_700_000_000.0),
    )
    conn.close()

    with LibraryStore(root) as store:
        assert store.schema_version() == SCHEMA_VERSION == 4
        (entry,) = store.page(LibraryFilter(text="lighthouse"), 0, 10)
        assert entry.path == image and entry.params == params
        assert (entry.scheduler, entry.steps, entry.guidance_scale) == ("Euler a", 20, 7.0)
        assert entry.trashed_at is None and not entry.missing and entry.tags == ()
        store.add_tags(entry.id, ["kept"])
        assert store.count(LibraryFilter(tags=("kept",))) == 1
        ldstudio_png(tmp_path / "outside" / "new.png")
        assert len(store.import_folder(tmp_path / "outside", copy=True).added) == 1
        assert store.import_folder(tmp_path / "outside", copy=True).added == []


def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    conn = sqlite3.connect(root / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(LibraryError, match="schema version 99, newer than"):
        LibraryStore(root)


def test_library_folder_can_move(tmp_path: Path) -> None:
    with LibraryStore(tmp_path / "a") as store:
        save(store, "portable")
    (tmp_path / "a").rename(tmp_path / "b")
    with LibraryStore(tmp_path / "b", reconcile=True) as store:
        (entry,) = store.page(LibraryFilter(), 0, 10)
        assert entry.path.is_file() and entry.path.is_relative_to(tmp_path / "b")
        assert store.last_reconcile is not None and not store.last_reconcile.changed


def test_entry_to_dict_is_json(store: LibraryStore) -> None:
    entry = store.entry_for_path(save(store, "json me"))
    assert entry
    data = json.loads(json.dumps(entry.to_dict()))
    assert data["params"]["prompt"] == "json me" and data["trashed"] is False


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = LibraryStore(tmp_path / "lib")
    store.close()
    with pytest.raises(LibraryError, match="is closed"):
        store.count()
    assert all_files(tmp_path / "lib" / "sessions") == []


@pytest.mark.parametrize("threshold", [1, 10**9])
def test_both_text_query_plans_agree(
    store: LibraryStore, monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    # Common words page by walking the date index, rare ones by sorting the matches; the
    # threshold picks the plan, so force each one and check the answers are the same.
    monkeypatch.setattr(gallery_module, "_DATE_SCAN_HITS", threshold)
    for i in range(9):
        save(store, f"{'castle' if i % 3 else 'cat'} picture {i}", seed=i)
    trashed = [e.id for e in store.page(LibraryFilter(text="castle"), 0, 2)]
    store.trash(trashed)
    f = LibraryFilter(text="ca")
    assert store.count(f) == 7
    assert [e.seed for e in store.page(f, 0, 100)] == [6, 5, 4, 3, 2, 1, 0]
    assert [e.seed for e in store.page(f, 2, 3)] == [4, 3, 2]
    assert store.ids(f) == [e.id for e in store.page(f, 0, 100)]
    assert store.count(LibraryFilter(text="castle", trashed=True)) == 2
    assert store.count(LibraryFilter(text="castle", model="tiny")) == 4
    assert store.count(LibraryFilter(text="cat picture")) == 3


def test_empty_trash_removes_adopted_files_in_trash_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    LibraryStore(root).close()
    nested = ldstudio_png(root / "trash" / "from-elsewhere" / "old.png", prompt="old")
    with LibraryStore(root, reconcile=True) as store:
        assert store.count(LibraryFilter(trashed=True)) == 1
        assert store.empty_trash() == 1
        assert not nested.exists()
        assert not store.reconcile().adopted  # gone for good, not re-adopted


def test_library_modules_load_neither_torch_nor_qt() -> None:
    code = (
        "import ldstudio.core.library, ldstudio.core.readers, ldstudio.core.export, "
        "ldstudio.core.thumbnails, ldstudio.cli.library, ldstudio.cli.info, sys; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'PySide6', 'diffusers'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_without_fts5_search_falls_back_to_like_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gallery_module, "fts5_available", lambda: False)
    with pytest.raises(LibraryError, match="lacks FTS5"):
        LibraryStore(tmp_path / "strict", use_fts=True)
    with caplog.at_level("WARNING"), LibraryStore(tmp_path / "lib") as store:
        assert not store.use_fts
        save(store, "a red fox")
        assert store.count(LibraryFilter(text="fox")) == 1
    assert "no FTS5" in caplog.text


def test_deferred_recovery_is_not_forgotten(tmp_path: Path) -> None:
    # The GUI opens with reconcile=False and reconciles on a worker thread; if it never gets
    # there, the next open must still know that a crash needs recovering.
    root = tmp_path / "lib"
    LibraryStore(root).close()
    (root / "sessions" / "killed.lock").write_text("123\n")
    with LibraryStore(root, reconcile=False) as store:
        assert store.crashed_before and store.last_reconcile is None
    with LibraryStore(root, reconcile=False) as store:
        assert store.crashed_before
        store.reconcile()
    with LibraryStore(root) as store:
        assert not store.crashed_before


def test_reconcile_never_removes_a_save_in_flight(tmp_path: Path) -> None:
    """The engine thread may be writing while a worker reconciles at start-up."""
    import os
    import time

    store = LibraryStore(tmp_path / "lib", reconcile=False)
    leftover = store.images_dir / ".old.abc.tmp"
    leftover.write_bytes(b"from a killed process")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    in_flight = store.images_dir / ".new.def.tmp"
    in_flight.write_bytes(b"being written by this process right now")
    report = store.reconcile()
    assert leftover in report.temp_files_removed and not leftover.exists()
    assert in_flight.exists() and in_flight not in report.temp_files_removed
    store.close()
