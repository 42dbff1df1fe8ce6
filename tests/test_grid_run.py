"""`ldstudio grid` end to end: cells as library images linked to their grid, the grid's
metadata, folder output, refusals; the fake backend for orchestration, the tiny model once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldstudio.cli import main, runs
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from ldstudio.core.grid import GRID_KEY
from ldstudio.core.library import LibraryStore
from ldstudio.core.library.grids import cell_position, grid_cells, grid_of
from ldstudio.core.metadata import read_request
from ldstudio.core.settings import load_settings
from ldstudio.engine.fake import FakeBackend


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    backend = FakeBackend()
    monkeypatch.setattr(runs, "make_backend", lambda options, blobs: _with_blobs(backend, blobs))
    return backend


def _with_blobs(backend: FakeBackend, blobs) -> FakeBackend:
    backend.blobs = blobs
    return backend


def _library() -> LibraryStore:
    return LibraryStore(load_settings().library_dir())


def test_a_2x2_grid_fills_the_library_with_4_linked_cells_and_one_grid(fake, capsys) -> None:
    code = main(
        ["grid", "--x", "cfg=3,5", "--y", "sampler=Euler a,DPM++ 2M", "a red cat", "--steps", "2",
         "--seed", "5", "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    result = json.loads(out.out)
    assert result["status"] == "finished" and result["shape"] == [2, 2, 1]
    assert len(result["cells"]) == 4 and len(result["grids"]) == 1
    assert "cell 4/4 done: CFG Scale: 5, DPM++ 2M" in out.err and "ETA" in out.err
    with _library() as store:
        entries = store.entries(store.ids())
        assert len(entries) == 5
        (grid,) = [e for e in entries if "grid_cells" in e.extra]
        assert str(grid.path) == result["grids"][0]
        cells = grid_cells(store, grid)
        assert [str(c.path) for c in cells] == result["cells"]  # in grid order
        made = [(c.guidance_scale, c.scheduler, c.seed) for c in cells]
        assert made == [
            (3.0, "Euler a", 5),
            (5.0, "Euler a", 5),
            (3.0, "DPM++ 2M", 5),
            (5.0, "DPM++ 2M", 5),
        ]
        for i, cell in enumerate(cells):
            found = grid_of(store, cell)
            assert found is not None and found.id == grid.id
            assert cell_position(grid, cell) == i
        assert grid_of(store, grid) is None and grid_cells(store, cells[0]) == []
        assert grid.extra["Script"] == "X/Y/Z plot" and grid.extra["Y Type"] == "Sampler"
        # The grid holds the first cell's parameters, so reusing it reuses that cell.
        assert grid.params_json == cells[0].params_json
        assert (grid.width, grid.height) == Image.open(grid.path).size
        assert grid.width > 128 and grid.height > 128
    with Image.open(result["grids"][0]) as image:
        text = image.text
    assert (
        'Script: X/Y/Z plot, X Type: CFG Scale, X Values: "3,5", Y Type: Sampler'
        in text["parameters"]
    )
    chunk = json.loads(text[GRID_KEY])
    assert len(chunk["cells"]) == 4 and chunk["cells"][0].startswith("images/")
    request, _missing = read_request(Path(result["grids"][0]))
    assert request is not None and request.params.guidance_scale == 3.0


def test_the_grid_image_shows_each_cell_pixel_for_pixel(fake, capsys) -> None:
    assert (
        main(["grid", "--x", "size=64x64,96x64", "cat", "--steps", "1", "--seed", "1", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    grid = np.asarray(Image.open(result["grids"][0]).convert("RGB"))
    cells = [np.asarray(Image.open(p).convert("RGB")) for p in result["cells"]]
    assert cells[0].shape == (64, 64, 3) and cells[1].shape == (64, 96, 3)
    top = grid.shape[0] - 64
    # Slots are 96 wide (the largest cell); the 64-wide cell sits centred in the first.
    assert grid.shape[1] == 2 * 96
    assert (grid[top:, 16:80] == cells[0]).all() and (grid[top:, 96:] == cells[1]).all()


def test_z_separate_makes_one_grid_per_z_value_into_a_folder(fake, tmp_path, capsys) -> None:
    out = tmp_path / "grids"
    code = main(
        ["grid", "--x", "steps=1,2", "--y", "cfg=3,4", "--z", "seed=1-3", "--z-layout", "separate",
         "cat", "--out", str(out), "--json"]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and len(result["cells"]) == 12 and len(result["grids"]) == 3
    assert all(Path(p).parent == out for p in result["cells"] + result["grids"])
    for z, path in enumerate(result["grids"]):
        chunk = json.loads(Image.open(path).text[GRID_KEY])
        assert chunk["z"] == z and chunk["cells"] == [
            Path(p).name for p in result["cells"][z * 4 : z * 4 + 4]
        ]
    assert not (load_settings().library_dir() / "images").exists()  # nothing in the library


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--x", "cfg=3,40"], "--x cfg: CFG Scale: 40: guidance_scale: 40.0 is out of range"),
        (["--x", "colour=red"], "--x: axis type 'colour' is not known; allowed: prompt, seed"),
        (["--x", "cfg=3", "--z", "steps=1,2"], "--z: only with --y"),
        (["--x", "strength=0.5"], "a strength axis needs an img2img"),
        (["--x", "cfg=3", "--batch", "2"], "a grid cell makes one image"),
        (["--x", "prompt=dog,cat"], "Prompt S/R did not find 'dog'"),
        (
            ["--x", "model=no-such-model"],
            "--x model: 'no-such-model' is neither an existing path nor a known model",
        ),
        (["--x", "cfg=3", "--out", "grid.png"], "--out: grid saves many images"),
        (["--x", "cfg=3", "--z-layout", "separate"], "--z-layout: only with --z"),
    ],
)
def test_bad_grids_are_refused_before_anything_runs(fake, args, message, capsys) -> None:
    assert main(["grid", "a cat", *args]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and err.startswith("ldstudio grid: error:")
    assert fake.jobs_run == []


def test_a_strength_axis_over_an_img2img_source(fake, tmp_path, capsys) -> None:
    source = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(source)
    code = main(
        ["grid", "--x", "strength=0.25-0.75 [3]", "a cat", "--init-image", str(source),
         "--steps", "4", "--json"]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and len(result["cells"]) == 3
    with _library() as store:
        cells = [store.entry_for_path(Path(p)) for p in result["cells"]]
        requests = [c.request for c in cells if c is not None]
        assert [r.face for r in requests] == ["img2img"] * 3
        assert [r.inpaint.strength for r in requests if r.inpaint] == [0.25, 0.5, 0.75]
        (grid,) = [e for e in store.entries(store.ids()) if "grid_cells" in e.extra]
        assert grid.extra["X Type"] == "Denoising" and grid.face == "img2img"


def test_an_option_generate_gained_that_grid_does_not_know_is_refused(
    fake, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(runs, "_KNOWN_GENERATE_DESTS", runs._KNOWN_GENERATE_DESTS - {"emphasis"})
    assert main(["grid", "--x", "cfg=3", "a cat", "--emphasis", "comfy"]) == EXIT_BAD_INPUT
    assert "--emphasis: not supported by `ldstudio grid`" in capsys.readouterr().err
    assert main(["grid", "--x", "cfg=3", "a cat", "--steps", "1"]) == EXIT_OK  # not given: fine


def test_a_failed_cell_stops_the_grid_and_says_how_far_it_got(fake, capsys) -> None:
    fake.fail_next("the GPU caught fire")
    assert main(["grid", "--x", "cfg=3,5,7", "a cat", "--steps", "2"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "error: the GPU caught fire" in err
    assert "grid failed: 0 of 3 cell(s) saved; no grid image made" in err
    with _library() as store:
        assert store.count() == 0


def test_a_real_grid_on_the_tiny_model_matches_generate(tiny_model, capsys) -> None:
    code = main(
        ["grid", "--x", "steps=1,2", "a red circle", "--model", str(tiny_model), "--seed", "9",
         "--device", "cpu", "--json"]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and len(result["cells"]) == 2
    again = ["--model", str(tiny_model), "--seed", "9", "--steps", "2", "--device", "cpu"]
    assert main(["generate", "a red circle", *again, "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)["images"][0]["path"]
    # The cell is the very image generate makes with the same settings.
    assert np.array_equal(np.asarray(Image.open(result["cells"][1])), np.asarray(Image.open(alone)))
