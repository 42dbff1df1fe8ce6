"""End to end: the real diffusers engine (tiny model, CPU) saves straight into the library."""

from __future__ import annotations

from pathlib import Path

from engine_support import run_job

from ldstudio.core.events import JobFinished
from ldstudio.core.jobs import JobState
from ldstudio.core.library import LibraryFilter, LibraryStore
from ldstudio.core.params import GenerationParams
from ldstudio.core.readers import read_file


def test_engine_writes_into_the_library(backend, tiny_model: Path, tmp_path: Path) -> None:
    params = GenerationParams(
        prompt="a red circle", model=str(tiny_model), steps=3, seed=4321, batch_size=2
    )
    with LibraryStore(tmp_path / "lib") as store:
        _, state, events = run_job(backend, params, store)
        assert state is JobState.FINISHED
        finished = events[-1]
        assert isinstance(finished, JobFinished) and len(finished.records) == 2
        entries = store.page(LibraryFilter(text="circle"), 0, 10)
        assert {e.path for e in entries} == {r.path for r in finished.records}
        assert sorted(e.seed for e in entries) == [4321, 4322]
        for entry in entries:
            assert entry.path.is_relative_to(store.images_dir)
            assert entry.params == read_file(entry.path).params
            assert entry.params is not None and entry.params.seed == entry.seed
            assert entry.device == "cpu" and entry.seconds is not None
            assert store.thumbnail(entry).is_file()
