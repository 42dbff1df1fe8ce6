"""`ldstudio info` and `ldstudio library ...` in-process, on the per-test LDSTUDIO_HOME library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from library_support import A1111_TEXT, ldstudio_png, png_with_text, tool_images
from PIL import Image

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK
from ldstudio.core.library import LibraryFilter, LibraryStore
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import read_file


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def library(ldstudio_home: Path) -> list[int]:
    """Three images in the default library: two foxes (one a favourite) and a whale."""
    ids = []
    with LibraryStore() as store:
        for seed, prompt, model in (
            (1, "a red fox", "m1"),
            (2, "a blue whale", "m2"),
            (3, "fox cub", "m1"),
        ):
            params = GenerationParams(prompt=prompt, seed=seed, width=64, height=64)
            record = store.save(
                Image.new("RGB", (64, 64)),
                params,
                index=0,
                model_name=model,
                device="cpu",
                dtype="float32",
                seconds=0.1,
            )
            entry = store.entry_for_path(record.path)
            assert entry
            ids.append(entry.id)
        store.set_favourite(ids[0], True)
    return ids


# --- ldstudio info ---------------------------------------------------------------------------


def test_info_text_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = png_with_text(tmp_path / "a.png", {"parameters": A1111_TEXT})
    code, out, _ = run(capsys, "info", str(path))
    assert code == EXIT_OK
    assert "source: AUTOMATIC1111 / Forge / SD.Next / Krita" in out
    assert "sampler: DPM++ 2M Karras" in out and "seed: 965400086" in out
    assert "Model hash: 45dee52b" in out
    code, out, _ = run(capsys, "info", str(path), "--json")
    data = json.loads(out)
    assert code == EXIT_OK and data["found"] is True and data["source"] == "a1111"
    assert data["fields"]["steps"] == 28 and (data["width"], data["height"]) == (32, 24)


def test_info_names_each_value_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ldstudio.core.export import export_image

    jpeg = export_image(ldstudio_png(tmp_path / "a.png"), tmp_path / "a.jpg")
    code, out, _ = run(capsys, "info", str(jpeg))
    assert code == EXIT_OK and "source: AUTOMATIC1111" in out
    lines = [line.split(":")[0].lower() for line in out.splitlines()]
    assert lines.count("sampler") == 1 and lines.count("model") == 1


def test_info_shows_cutoff_vae_and_loras(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    from ldstudio.core.imagefiles import write_png_atomic
    from ldstudio.core.metadata import png_text_chunks

    # The image names the files by name and hash; `info` shows where they are on this machine.
    models = tmp_path / "m"
    models.mkdir()
    vae, ink = models / "vae.safetensors", models / "ink.safetensors"
    vae.write_bytes(b"vae weights")
    ink.write_bytes(b"lora weights")
    params = GenerationParams(
        prompt="x", seed=1, width=64, height=64, guidance_cutoff=0.6,
        vae=str(vae), loras=((str(ink), 0.8),),
    )  # fmt: skip
    path = tmp_path / "made.png"
    write_png_atomic(Image.new("RGB", (64, 64)), path, png_text_chunks(params, "m"))
    code, out, _ = run(capsys, "info", str(path))
    assert code == EXIT_OK
    for line in ("guidance cut-off: 0.6 of the steps", f"VAE: {vae}",
                 f"LoRA: {ink} ×0.8"):  # fmt: skip
        assert line in out.splitlines()


def test_info_every_tool(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for source, path in tool_images(tmp_path).items():
        code, out, _ = run(capsys, "info", str(path), "--json")
        assert code == EXIT_OK
        assert json.loads(out)["source"] == source


def test_info_plain_missing_and_unreadable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plain = png_with_text(tmp_path / "plain.png", {})
    code, out, _ = run(capsys, "info", str(plain))
    assert code == EXIT_OK and "no generation metadata found" in out
    code, _, err = run(capsys, "info", str(tmp_path / "missing.png"))
    assert code == EXIT_BAD_INPUT and "missing.png: no such file" in err
    junk = tmp_path / "junk.webp"
    junk.write_bytes(b"RIFF....")
    code, _, err = run(capsys, "info", str(junk))
    assert code == EXIT_BAD_INPUT and "not a readable image" in err


# --- ldstudio library ------------------------------------------------------------------------


def test_list_text_json_and_filters(capsys: pytest.CaptureFixture[str], library: list[int]) -> None:
    code, out, err = run(capsys, "library", "list")
    assert code == EXIT_OK and "3 of 3 image(s)" in err
    assert out.index("fox cub") < out.index("a blue whale") < out.index("a red fox")
    code, out, _ = run(capsys, "library", "list", "--search", "fox", "--json")
    data = json.loads(out)
    assert data["total"] == 2 and {i["prompt"] for i in data["images"]} == {"a red fox", "fox cub"}
    code, out, _ = run(capsys, "library", "list", "--model", "m2", "--json")
    assert [i["prompt"] for i in json.loads(out)["images"]] == ["a blue whale"]
    code, out, _ = run(capsys, "library", "list", "--favourites", "--json")
    assert [i["id"] for i in json.loads(out)["images"]] == [library[0]]
    code, out, err = run(capsys, "library", "list", "--limit", "1")
    assert len(out.strip().splitlines()) == 1 and "1 of 3" in err
    code, out, _ = run(
        capsys, "library", "list", "--since", "2000-01-01", "--until", "2000-12-31", "--json"
    )
    assert json.loads(out)["total"] == 0


def test_bad_gallery_input(
    capsys: pytest.CaptureFixture[str], library: list[int], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "library", "list", "--since", "yesterday")
    assert code == EXIT_BAD_INPUT and "--since: 'yesterday' is not a date" in err
    code, _, err = run(capsys, "library", "list", "--limit", "0")
    assert code == EXIT_BAD_INPUT and "--limit: 0 is too small" in err
    code, _, err = run(capsys, "library", "show", "9999")
    assert code == EXIT_BAD_INPUT and "image 9999: not in the library" in err
    code, _, err = run(capsys, "library", "empty-trash")
    assert code == EXIT_BAD_INPUT and "--yes" in err
    code, _, err = run(capsys, "library", "export", "1", "--search", "fox", "--to", str(tmp_path))
    assert code == EXIT_BAD_INPUT and "not both" in err
    file = tmp_path / "file.txt"
    file.write_text("x")
    code, _, err = run(capsys, "library", "--library", str(file), "list")
    assert code == EXIT_BAD_INPUT and "is a file" in err


def test_show(capsys: pytest.CaptureFixture[str], library: list[int]) -> None:
    code, out, _ = run(capsys, "library", "show", str(library[0]))
    assert code == EXIT_OK and "prompt: a red fox" in out and "favourite: yes" in out
    code, out, _ = run(capsys, "library", "show", str(library[0]), "--json")
    assert json.loads(out)["params"]["seed"] == 1


def test_export_by_search_and_ids(
    capsys: pytest.CaptureFixture[str], library: list[int], tmp_path: Path
) -> None:
    out_dir = tmp_path / "exported"
    code, out, err = run(
        capsys, "library", "export", "--search", "fox", "--to", str(out_dir), "--format", "jpeg"
    )
    files = [Path(line) for line in out.splitlines()]
    assert code == EXIT_OK and len(files) == 2 and "exported 2 of 2" in err
    assert all(f.suffix == ".jpg" for f in files)
    assert {read_file(f).fields["prompt"] for f in files} == {"a red fox", "fox cub"}

    code, out, _ = run(
        capsys, "library", "export", str(library[1]), "--to", str(out_dir), "--strip-metadata"
    )
    (clean,) = [Path(line) for line in out.splitlines()]
    assert clean.suffix == ".png" and not read_file(clean).found
    # Exporting again never overwrites.
    code, out, _ = run(capsys, "library", "export", str(library[1]), "--to", str(out_dir))
    (second,) = [Path(line) for line in out.splitlines()]
    assert second != clean and clean.exists() and read_file(second).found


def test_export_into_the_library_is_refused(
    capsys: pytest.CaptureFixture[str], library: list[int]
) -> None:
    """Copies inside the library would be adopted by the next reconcile: 3 images became 6."""
    with LibraryStore() as store:
        root = store.root
    for target in (root / "images" / "shared", root, root / "exports"):
        code, out, err = run(capsys, "library", "export", "--to", str(target))
        assert code == EXIT_BAD_INPUT and out == ""
        assert f"is inside the image library ({root}); export to a folder outside it" in err
    assert not (root / "images" / "shared").exists() and not (root / "exports").exists()
    code, _, err = run(capsys, "library", "reconcile")
    assert code == EXIT_OK and "adopted 0" in err
    with LibraryStore() as store:
        assert store.count() == 3


def test_a_file_name_that_is_not_utf8_is_imported_and_shown(
    capsys: pytest.CaptureFixture[str], ldstudio_home: Path, tmp_path: Path
) -> None:
    raw = os.fsencode(tmp_path) + b"/src/bad-\xff.png"
    try:
        ldstudio_png(Path(os.fsdecode(raw)), prompt="odd name")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not valid UTF-8")
    code, _, err = run(capsys, "library", "import", str(tmp_path / "src"))
    assert code == EXIT_OK and "imported 1 image(s)" in err and "0 skipped" in err
    code, out, _ = run(capsys, "library", "show", "1")
    out.encode("utf-8")  # what a strict UTF-8 stdout takes: no surrogates left
    assert code == EXIT_OK and f"path: {tmp_path}/src/bad-\\xff.png" in out
    code, out, _ = run(capsys, "library", "list", "--json")
    out.encode("utf-8")
    (image,) = json.loads(out)["images"]
    assert os.fsencode(image["path"]) == raw  # the JSON names exactly that file's bytes
    code, out, _ = run(capsys, "library", "export", "1", "--to", str(tmp_path / "out"))
    out.encode("utf-8")
    assert code == EXIT_OK and out.strip().endswith("1-bad-\\xff.png")
    assert os.fsencode(next((tmp_path / "out").iterdir()).name) == b"1-bad-\xff.png"


def test_delete_restore_empty_trash(capsys: pytest.CaptureFixture[str], library: list[int]) -> None:
    code, _, err = run(capsys, "library", "delete", str(library[1]))
    assert code == EXIT_OK and "moved 1 image(s) to the trash" in err
    _, out, _ = run(capsys, "library", "list", "--json")
    assert json.loads(out)["total"] == 2
    _, out, _ = run(capsys, "library", "list", "--trash", "--json")
    assert [i["id"] for i in json.loads(out)["images"]] == [library[1]]
    code, out, _ = run(capsys, "library", "restore", str(library[1]))
    assert code == EXIT_OK and Path(out.strip()).is_file()
    run(capsys, "library", "delete", str(library[1]))
    with LibraryStore() as store:
        trashed = store.get(library[1]).path
    moved = trashed.rename(trashed.with_name("elsewhere.png"))  # the file leaves the trash
    code, _, err = run(capsys, "library", "restore", str(library[1]))
    assert code == EXIT_BAD_INPUT
    assert f"image {library[1]}: its file is missing from the trash" in err
    moved.rename(trashed)
    code, _, err = run(capsys, "library", "empty-trash", "--yes")
    assert code == EXIT_OK and "deleted 1 image(s) for good" in err
    with LibraryStore() as store:
        assert store.count() == 2 and store.count(LibraryFilter(trashed=True)) == 0


def test_list_and_show_read_well(
    capsys: pytest.CaptureFixture[str], library: list[int], tmp_path: Path
) -> None:
    plain = png_with_text(tmp_path / "in" / "plain.png", {})
    run(capsys, "library", "import", str(plain.parent))
    code, out, _ = run(capsys, "library", "list")
    assert code == EXIT_OK and "no seed" in out and "seed None" not in out
    code, out, _ = run(capsys, "library", "show", str(library[0]))
    assert "seconds: 0.10" in out.splitlines()


def test_favourite_and_tag(capsys: pytest.CaptureFixture[str], library: list[int]) -> None:
    assert run(capsys, "library", "favourite", str(library[1]))[0] == EXIT_OK
    code, out, _ = run(capsys, "library", "tag", str(library[1]), "ocean", "blue")
    assert code == EXIT_OK and out.strip() == "blue, ocean"
    code, out, _ = run(capsys, "library", "tag", str(library[1]), "blue", "--remove")
    assert out.strip() == "ocean"
    run(capsys, "library", "favourite", str(library[0]), "--off")
    with LibraryStore() as store:
        assert [e.id for e in store.page(LibraryFilter(favourites=True))] == [library[1]]
        assert store.count(LibraryFilter(tags=("ocean",))) == 1


def test_import_and_reconcile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "old"
    tool_images(folder)
    code, _, err = run(capsys, "library", "import", str(folder), "--copy")
    assert code == EXIT_OK and "imported 7 image(s) (copied)" in err
    code, _, err = run(capsys, "library", "import", str(folder), "--copy")
    assert code == EXIT_OK and "imported 0 image(s) (copied); 7 already in the library" in err
    code, _, err = run(capsys, "library", "import", str(tmp_path / "nope"))
    assert code == EXIT_BAD_INPUT and "not a folder" in err
    with LibraryStore() as store:
        orphan = ldstudio_png(store.images_dir / "dropped.png", prompt="dropped in by hand")
    code, _, err = run(capsys, "library", "reconcile")
    assert code == EXIT_OK and "adopted 1" in err
    _, out, _ = run(capsys, "library", "list", "--search", "dropped", "--json")
    assert json.loads(out)["images"][0]["path"] == str(orphan)


def test_import_show_and_list_an_image_whose_seed_is_too_big_for_the_index(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "outputs"
    huge = "99999999999999999999"
    png_with_text(folder / "big.png", {"parameters": A1111_TEXT.replace("965400086", huge)})
    ldstudio_png(folder / "fine.png")
    library = str(tmp_path / "L")
    code, _, err = run(capsys, "library", "--library", library, "import", str(folder))
    assert code == EXIT_OK and "imported 2 image(s) (indexed in place)" in err
    assert "0 skipped" in err
    _, out, _ = run(capsys, "library", "--library", library, "list", "--json")
    (big,) = [i for i in json.loads(out)["images"] if i["path"].endswith("big.png")]
    assert big["seed"] is None and big["steps"] == 28
    code, out, _ = run(capsys, "library", "--library", library, "show", str(big["id"]))
    assert code == EXIT_OK and f"seed: {huge}" in out
    code, out, _ = run(capsys, "library", "--library", library, "show", str(big["id"]), "--json")
    assert code == EXIT_OK and json.loads(out)["extra"]["seed"] == int(huge)
    code, out, _ = run(capsys, "library", "--library", library, "list")
    assert code == EXIT_OK and "a lighthouse at dusk" in out


def test_deleting_an_image_indexed_in_place_never_touches_its_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    photo = ldstudio_png(tmp_path / "photos" / "photo.png")
    original = photo.read_bytes()
    assert run(capsys, "library", "import", str(photo.parent))[0] == EXIT_OK
    _, out, _ = run(capsys, "library", "list", "--json")
    (image_id,) = [str(i["id"]) for i in json.loads(out)["images"]]
    assert run(capsys, "library", "delete", image_id)[0] == EXIT_OK
    assert photo.read_bytes() == original
    code, out, _ = run(capsys, "library", "restore", image_id)
    assert code == EXIT_OK and Path(out.strip()) == photo
    run(capsys, "library", "delete", image_id)
    assert run(capsys, "library", "empty-trash", "--yes")[0] == EXIT_OK
    assert photo.read_bytes() == original
    with LibraryStore() as store:
        assert store.count() == 0 and store.count(LibraryFilter(trashed=True)) == 0


def test_cli_help_does_not_import_pillow_heavy_paths() -> None:
    # `ldstudio --help` must stay instant: the gallery and info commands import lazily.
    code = "import ldstudio.cli, sys; print('ldstudio.core.library' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_gallery_is_kept_as_the_old_name_of_library(capsys: pytest.CaptureFixture[str]) -> None:
    from ldstudio.cli import build_parser

    assert run(capsys, "library", "list") == run(capsys, "gallery", "list")
    assert "library" in build_parser().format_help()
