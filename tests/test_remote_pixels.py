"""The same job on this computer and through an `ldstudio serve` server (the real diffusers
engine on the tiny model, both sides): identical pixels, and the local library's copy carries
the same metadata as an image made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from api_support import running_server
from engine_support import Borrowed
from PIL import Image

from ldstudio.core.events import JobFinished, StepProgress
from ldstudio.core.library import LibraryStore
from ldstudio.core.metadata import LDSTUDIO_KEY, PARAMETERS_KEY
from ldstudio.core.models import ModelFolderStore
from ldstudio.core.params import GenerationParams
from ldstudio.core.service import EngineService
from ldstudio.remote.backend import RemoteBackend
from ldstudio.remote.client import ServerClient

TIMEOUT = 600


def _run(service: EngineService, params: GenerationParams) -> JobFinished:
    service.start()
    try:
        outcome = service.run(params, timeout=TIMEOUT)
    finally:
        service.close(timeout=TIMEOUT)
    assert isinstance(outcome, JobFinished), outcome
    return outcome


def _text(path: Path) -> dict[str, str]:
    with Image.open(path) as image:
        return dict(image.text)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_same_job_here_and_through_the_server_gives_identical_pixels(
    backend, tiny_model: Path, tmp_path: Path
) -> None:
    ModelFolderStore(folders=[str(tiny_model.parent)]).save()
    # The window sends the model by its path here; the request names it by name + hash.
    params = GenerationParams(
        prompt="a red square",
        model=str(tiny_model.resolve()),
        steps=3,
        width=64,
        height=64,
        seed=1234,
        batch_size=2,
        preview_method="latent2rgb",
    )
    here = LibraryStore(tmp_path / "here", reconcile=False)
    local = _run(EngineService(lambda: Borrowed(backend), here), params)

    mine = LibraryStore(tmp_path / "mine", reconcile=False)
    with running_server(backend, tmp_path / "server") as server:
        client = ServerClient(server.url)
        remote_service = EngineService(lambda: RemoteBackend(client, blobs=mine.blobs), mine)
        events: list[object] = []
        remote_service.subscribe(events.append)
        remote = _run(remote_service, params)
        theirs = {entry.params.seed: entry.path for entry in server.library.page(None, 0, 10)}
    try:
        assert [r.seed for r in remote.records] == [r.seed for r in local.records] == [1234, 1235]
        for made_here, made_there in zip(local.records, remote.records, strict=True):
            assert made_there.path.is_relative_to(mine.root)
            assert np.array_equal(_pixels(made_here.path), _pixels(made_there.path))
            # The local copy: the server's metadata, byte for byte, and an image made here
            # says the same (both machines have the same model files).
            copy = _text(made_there.path)
            assert copy == _text(theirs[made_there.seed])
            assert copy[LDSTUDIO_KEY] == _text(made_here.path)[LDSTUDIO_KEY]
            assert copy[PARAMETERS_KEY] == _text(made_here.path)[PARAMETERS_KEY]
            assert Path(made_there.params.model) == tiny_model.resolve()
        previews = [e.preview for e in events if isinstance(e, StepProgress)]
        assert previews and all(p is not None and p.dtype == np.uint8 for p in previews)
    finally:
        here.close()
        mine.close()
