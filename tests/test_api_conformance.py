"""Conformance on the bundled model: the real `webuiapi` client against the server on a free
loopback port, and the same job over the API and in-process giving identical pixels (the
server is one more front end of the engine service, not a second engine)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import webuiapi
from api_support import pixels, running_server
from engine_support import run_job
from PIL import Image

from ldstudio.core.imagefiles import FolderSink
from ldstudio.core.metadata import read_request
from ldstudio.core.models import ModelFolderStore
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request, to_portable

PROMPT = "a red circle on a blue background"


@pytest.fixture
def server(backend, tmp_path: Path):
    with running_server(backend, tmp_path / "library") as running:
        yield running


@pytest.fixture
def api(server) -> webuiapi.WebUIApi:
    host, port = server.url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=4)


def in_process(backend, request: Request, folder: Path) -> np.ndarray:
    """The same request run the way the window runs it: one job on an EngineService."""
    _job, _state, events = run_job(backend, request, FolderSink(folder))
    [record] = events[-1].records
    return pixels(Image.open(record.path))


def test_webuiapi_txt2img_fixed_seed(api, server, backend, tmp_path: Path) -> None:
    api.util_wait_for_ready(check_interval=0.05)
    result = api.txt2img(prompt=PROMPT, seed=1234, width=64, height=64, cfg_scale=5)
    assert result.info["all_seeds"] == [1234] and result.info["seed"] == 1234
    assert result.image.size == (64, 64)
    assert server.saved() == 1
    # The same request in-process gives the same pixels; the PNG records that request.
    [entry] = server.library.page(None, 0, 1)
    request, missing = read_request(entry.path)
    assert request is not None and not missing
    expected = GenerationParams(
        prompt=PROMPT, seed=1234, steps=4, width=64, height=64, guidance_scale=5.0
    )
    assert request.params == expected
    local = in_process(backend, Request.txt2img(expected), tmp_path / "local")
    assert np.array_equal(pixels(result.image), local)
    api.util_wait_for_ready(check_interval=0.05)


def test_webuiapi_interrupt_mid_job(api, server) -> None:
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(api.txt2img(prompt=PROMPT, steps=150, width=256, height=256))
    )
    worker.start()
    deadline = time.monotonic() + 120
    while api.get_progress()["state"]["sampling_step"] < 1:
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.01)
    asked = time.monotonic()
    api.interrupt()
    worker.join(30)
    took = time.monotonic() - asked
    assert not worker.is_alive() and took < 10, f"interrupt took {took:.1f} s"
    [answer] = result
    assert answer.images == [] and answer.info["all_seeds"] == []
    assert server.saved() == 0
    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0


def test_webuiapi_model_switch_shows_in_options(api, tiny_model: Path) -> None:
    assert api.util_get_current_model() == "ldstudio-shapes"
    ModelFolderStore(folders=[str(tiny_model.parent)]).save()
    assert api.util_get_model_names() == ["ldstudio-shapes", "tiny-sd"]
    api.util_set_model("tiny-sd")
    assert api.get_options()["sd_model_checkpoint"] == "tiny-sd"
    assert api.util_get_current_model() == "tiny-sd"
    api.util_set_model("ldstudio-shapes")
    assert api.get_options()["sd_model_checkpoint"] == "ldstudio-shapes"


def test_native_job_same_pixels_as_in_process(server, backend, tmp_path: Path) -> None:
    params = GenerationParams(prompt=PROMPT, seed=77, steps=4, width=64, height=64)
    request = Request.txt2img(params)
    reply = server.post("/ldstudio/v1/jobs", json={"request": to_portable(request)})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    stream = server.http.get(f"{server.url}/ldstudio/v1/jobs/{job_id}/events", stream=True)
    lines = stream.iter_lines(decode_unicode=True)
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert names[-1] == "JobFinished" and "StepProgress" in names
    png = server.get(f"/ldstudio/v1/jobs/{job_id}/images/0").content
    [entry] = server.library.page(None, 0, 1)
    assert hashlib.sha256(png).hexdigest() == hashlib.sha256(entry.path.read_bytes()).hexdigest()
    over_http = pixels(Image.open(io.BytesIO(png)))
    assert np.array_equal(over_http, in_process(backend, request, tmp_path / "local"))


def test_webuiapi_wait_for_ready_waits_for_the_running_job(api, server) -> None:
    worker = threading.Thread(
        target=lambda: api.txt2img(prompt=PROMPT, steps=30, width=128, height=128)
    )
    worker.start()
    deadline = time.monotonic() + 120
    while api.get_progress()["state"]["job_count"] == 0:
        assert time.monotonic() < deadline, "the job was not queued"
        time.sleep(0.01)
    api.util_wait_for_ready(check_interval=0.05)
    assert server.saved() == 1  # ready only once the job's image is saved
    worker.join(60)


def test_webuiapi_inpaint_same_pixels_as_in_process(api, server, backend, tmp_path) -> None:
    source = Image.new("RGB", (64, 64), (30, 60, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 40, 40))
    result = api.img2img(
        images=[source],
        mask_image=mask,
        prompt=PROMPT,
        seed=99,
        denoising_strength=0.8,
        inpaint_full_res=False,
        inpainting_fill=1,
        width=64,
        height=64,
    )
    assert result.info["all_seeds"] == [99] and result.image.size == (64, 64)
    out = pixels(result.image)
    assert (out[60, 60] == (30, 60, 200)).all()  # outside the mask (and its blur): the source
    # The saved image records the request, its source and mask by hash in the blob store.
    [entry] = server.library.page(None, 0, 1)
    request, missing = read_request(entry.path)
    assert request is not None and not missing and request.face == "inpaint"
    assert dict(request.inputs).keys() == {"image", "mask"}
    assert request.inpaint is not None and request.inpaint.strength == 0.8
    assert np.array_equal(out, in_process(backend, request, tmp_path / "local"))
