"""Ray Data batch renders on a real local Ray cluster (started once for the module, CPU actors,
the bundled 64 px model): bit-identical to the local engine, grids linked in the caller's
library, a failed cell named while the rest are saved."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from cluster_support import local_pixels  # noqa: E402

from ldstudio.cli import runs  # noqa: E402
from ldstudio.cluster import ClusterBackend, RenderedImage, RowFailed, render  # noqa: E402
from ldstudio.core.events import JobFailed, JobFinished  # noqa: E402
from ldstudio.core.grid import expand, parse_axis  # noqa: E402
from ldstudio.core.library import LibraryStore  # noqa: E402
from ldstudio.core.library.grid_sheets import save_sheets  # noqa: E402
from ldstudio.core.library.grids import cell_position, grid_cells, grid_of  # noqa: E402
from ldstudio.core.params import GenerationParams  # noqa: E402
from ldstudio.core.request import Request  # noqa: E402
from ldstudio.core.settings import load_settings  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _request(seed: int, **changes: object) -> Request:
    values: dict[str, object] = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64}
    values.update(changes)
    return Request.txt2img(GenerationParams(seed=seed, **values))  # type: ignore[arg-type]


def test_the_cluster_makes_bit_identical_images_to_the_local_engine(tmp_path: Path) -> None:
    requests = [_request(11), _request(12, guidance_scale=3.0, batch_size=2)]
    got = list(render(requests, actors=2))
    assert all(isinstance(item, RenderedImage) for item in got)
    assert [(item.index, item.image_index) for item in got] == [(0, 0), (1, 0), (1, 1)]
    remote = [np.asarray(Image.open(io.BytesIO(item.png)).convert("RGB")) for item in got]
    local = local_pixels(requests, tmp_path)
    assert len(local) == 3
    for made_here, made_there in zip(local, remote, strict=True):
        assert made_here.shape == (64, 64, 3)
        assert np.array_equal(made_here, made_there)
    # Each image comes back with its own resolved request: one image, its own seed.
    assert [item.request.params.seed for item in got] == [11, 12, 13]
    assert all(item.request.params.image_count == 1 for item in got)


def test_a_grid_of_8_cells_over_2_actors_fills_the_library_with_8_linked_images() -> None:
    axes = [parse_axis("cfg=3,5,7,9", "--x"), parse_axis("seed=1,2", "--y")]
    plan = expand(_request(1), axes)
    requests = [cell.request for cell in plan.cells]
    assert len(requests) == 8
    backend = ClusterBackend(requests, None, actors=2)
    sink, library = runs.open_sink(None)
    assert library is not None
    try:
        result = runs.run_requests(requests, backend, sink, runs.RunProgress(io.StringIO(), 8),
                                   lambda i, o: None)  # fmt: skip
        assert all(isinstance(o, JobFinished) for o in result.outcomes)
        cells = [o.records[0].path for o in result.outcomes if isinstance(o, JobFinished)]
        (grid_path,) = save_sheets(plan, cells, "column", None, library)
    finally:
        library.close()
    with LibraryStore(load_settings().library_dir()) as store:
        entries = store.entries(store.ids())
        assert len(entries) == 9
        (grid,) = [e for e in entries if "grid_cells" in e.extra]
        assert grid.path == grid_path
        linked = grid_cells(store, grid)
        assert [c.path for c in linked] == cells
        made = [(c.guidance_scale, c.seed) for c in linked]
        assert made == [(g, s) for s in (1, 2) for g in (3.0, 5.0, 7.0, 9.0)]
        for i, cell in enumerate(linked):
            found = grid_of(store, cell)
            assert found is not None and found.id == grid.id
            assert cell_position(grid, cell) == i


def test_a_failed_cell_is_named_and_the_others_are_still_saved(tmp_path) -> None:
    missing = str(tmp_path / "gone-model.safetensors")  # not on any node's model folders
    requests = [_request(1), _request(2, model=missing), _request(3)]
    items = list(render(requests, actors=2))
    assert [type(item) for item in items] == [RenderedImage, RowFailed, RenderedImage]
    failed = items[1]
    assert isinstance(failed, RowFailed) and "gone-model" in failed.message

    backend = ClusterBackend(requests, None, actors=2)
    sink, library = runs.open_sink(None)
    assert library is not None
    try:
        result = runs.run_requests(requests, backend, sink, runs.RunProgress(io.StringIO(), 3),
                                   lambda i, o: None, stop_on_failure=False)  # fmt: skip
    finally:
        library.close()
    first, second, third = result.outcomes
    assert isinstance(first, JobFinished) and isinstance(third, JobFinished)
    assert isinstance(second, JobFailed)
    assert second.message.startswith("cell 2 failed on the cluster:")
    assert "gone-model" in second.message
    with LibraryStore(load_settings().library_dir()) as store:
        assert sorted(e.seed for e in store.entries(store.ids())) == [1, 3]


def test_a_bad_actor_count_is_refused() -> None:
    with pytest.raises(ValueError, match="--ray-actors: 0; allowed: 1 or more"):
        list(render([_request(1)], actors=0))


def test_ldstudio_grid_with_ray_saves_linked_cells_and_the_grid(capsys) -> None:
    import json

    from ldstudio.cli import main

    code = main(
        ["grid", "--x", "cfg=3,5", "a red circle", "--steps", "2", "--seed", "4", "--size",
         "64x64", "--ray", "local", "--ray-actors", "2", "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["status"] == "finished" and len(result["cells"]) == 2
    with LibraryStore(load_settings().library_dir()) as store:
        (grid,) = [e for e in store.entries(store.ids()) if "grid_cells" in e.extra]
        assert [str(c.path) for c in grid_cells(store, grid)] == result["cells"]
        assert [c.guidance_scale for c in grid_cells(store, grid)] == [3.0, 5.0]


def test_ray_actors_without_ray_is_refused(capsys) -> None:
    from ldstudio.cli import main

    code = main(["grid", "--x", "cfg=3,5", "cat", "--ray-actors", "3"])
    assert code != 0
    assert "--ray-actors: only with --ray" in capsys.readouterr().err


def test_ldstudio_batch_with_ray_saves_every_line(tmp_path, capsys) -> None:
    import json

    from ldstudio.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n", encoding="utf-8")
    code = main(
        ["batch", str(prompts), "--steps", "2", "--seed", "7", "--size", "64x64", "--ray",
         "local", "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["status"] == "finished" and [r["line"] for r in result["lines"]] == [1, 2]
    with LibraryStore(load_settings().library_dir()) as store:
        prompts_made = sorted(e.prompt for e in store.entries(store.ids()))
    assert prompts_made == ["a blue square", "a red circle"]
