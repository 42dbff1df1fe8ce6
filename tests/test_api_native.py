"""The /ldstudio/v1 protocol over HTTP on the fake backend: info, models, blobs, jobs, the SSE
event stream (replayed from the job's start) and the saved images' exact bytes."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from pathlib import Path

import pytest
from api_support import running_server
from PIL import Image

from ldstudio.api import native
from ldstudio.core.events import (
    JobCancelled,
    JobFinished,
    JobStarted,
    ModelReady,
    StepProgress,
)
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request, to_portable
from ldstudio.core.wire import decode_event
from ldstudio.engine.fake import FakeBackend


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def server(fake: FakeBackend, tmp_path: Path):
    with running_server(fake, tmp_path / "library") as running:
        yield running


def submit(server, request: Request):
    return server.post("/ldstudio/v1/jobs", json={"request": to_portable(request)})


def read_events(server, job_id: int) -> list[tuple[str, dict]]:
    """Every message of the job's stream until the server closes it."""
    reply = server.http.get(f"{server.url}/ldstudio/v1/jobs/{job_id}/events", stream=True)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    messages, name = [], None
    for line in reply.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            messages.append((name, json.loads(line.removeprefix("data: "))))
    return messages


def params(**changes) -> GenerationParams:
    return GenerationParams(prompt="a red fox", steps=3, seed=11, width=64, height=64, **changes)


def test_info_and_models(server) -> None:
    deadline = time.monotonic() + 10
    while not (info := server.get("/ldstudio/v1/info").json())["ready"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert info["protocol"] == 1 and info["device"] == "cpu" and info["dtype"] == "fp32"
    assert info["label"] == "CPU · fp32" and info["error"] == ""
    models = server.get("/ldstudio/v1/models").json()
    assert set(models) == {"checkpoints", "loras", "vaes", "upscalers", "embeddings"}
    first = models["checkpoints"][0]
    assert first["name"] == "ldstudio-shapes" and first["kind"] == "diffusers"
    assert set(first) == {"name", "kind", "family", "sha256"}
    assert [u["name"] for u in models["upscalers"]][:2] == [
        "ldstudio-compact-x2",
        "ldstudio-compact-x4",
    ]


def test_events_replay_from_the_start_and_close_after_the_end(server) -> None:
    reply = submit(server, Request.txt2img(params(batch_count=2)))
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    # Subscribing late misses nothing: wait for the job to end, then read from its start.
    log = server.ctx.tracker.log(job_id)
    deadline = time.monotonic() + 30
    while not log.ended:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    messages = read_events(server, job_id)
    events = [decode_event(data) for _name, data in messages]
    assert [name for name, _ in messages] == [type(e).__name__ for e in events]
    kinds = [type(e) for e in events]
    assert JobStarted in kinds and kinds[-1] is JobFinished
    assert ModelReady in kinds  # the model the job used is news of the job
    steps = [e for e in events if isinstance(e, StepProgress)]
    assert [(e.batch_index, e.step) for e in steps] == [(b, s) for b in (0, 1) for s in (1, 2, 3)]
    finished = events[-1]
    assert [r.seed for r in finished.records] == [11, 12]
    # The image route serves the library's exact bytes, metadata chunks included.
    for index, record in enumerate(finished.records):
        image = server.get(f"/ldstudio/v1/jobs/{job_id}/images/{index}")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        entry = server.library.page(None, 0, 10)[1 - index]
        assert record.path.name == entry.path.name
        assert image.content == entry.path.read_bytes()
    assert server.get(f"/ldstudio/v1/jobs/{job_id}/images/2").status_code == 404


def test_live_stream_carries_previews_as_jpeg(server, fake: FakeBackend) -> None:
    fake.hold_at_step = 1
    job_id = submit(server, Request.txt2img(params())).json()["job_id"]
    messages: list = []
    reader = threading.Thread(target=lambda: messages.extend(read_events(server, job_id)))
    reader.start()
    deadline = time.monotonic() + 10
    while not any(name == "StepProgress" for name, _ in list(messages)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    fake.release()
    reader.join(30)
    progress = [decode_event(d) for name, d in messages if name == "StepProgress"]
    assert progress and all(e.preview is not None for e in progress)
    assert progress[0].preview.shape == (8, 8, 3)
    assert messages[-1][0] == "JobFinished"


def test_keepalive_comment_while_waiting(server, fake: FakeBackend, monkeypatch) -> None:
    monkeypatch.setattr(native, "KEEPALIVE_SECONDS", 0.05)
    fake.hold_at_step = 1
    job_id = submit(server, Request.txt2img(params())).json()["job_id"]
    reply = server.http.get(f"{server.url}/ldstudio/v1/jobs/{job_id}/events", stream=True)
    lines = reply.iter_lines(decode_unicode=True)
    seen = []
    for line in lines:
        seen.append(line)
        if line == ": keepalive":
            break
    fake.release()
    assert ": keepalive" in seen
    reply.close()


def test_jobs_list_and_cancel(server, fake: FakeBackend) -> None:
    fake.hold_at_step = 1
    first = submit(server, Request.txt2img(params())).json()["job_id"]
    second = submit(server, Request.txt2img(params())).json()["job_id"]
    deadline = time.monotonic() + 10
    while server.get("/ldstudio/v1/jobs").json()["jobs"][0]["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    listed = server.get("/ldstudio/v1/jobs").json()["jobs"]
    assert listed == [
        {"job_id": first, "state": "running", "kind": "txt2img"},
        {"job_id": second, "state": "pending", "kind": "txt2img"},
    ]
    assert server.post(f"/ldstudio/v1/jobs/{second}/cancel").json() == {"cancelled": True}
    assert server.post(f"/ldstudio/v1/jobs/{first}/cancel").json() == {"cancelled": True}
    assert server.post("/ldstudio/v1/jobs/999999/cancel").json() == {"cancelled": False}
    for job_id in (first, second):
        assert read_events(server, job_id)[-1][0] == JobCancelled.__name__
    assert server.saved() == 0


def test_unknown_job_is_404(server) -> None:
    assert server.get("/ldstudio/v1/jobs/999999/events").status_code == 404
    assert server.get("/ldstudio/v1/jobs/999999/images/0").status_code == 404


def test_invalid_requests_are_422_naming_the_field(server, tmp_path: Path) -> None:
    portable = to_portable(Request.txt2img(params()))
    bad = {**portable, "params": {**portable["params"], "steps": 0}}
    reply = server.post("/ldstudio/v1/jobs", json={"request": bad})
    assert reply.status_code == 422 and reply.json()["detail"].startswith("steps:")
    missing = {**portable, "model": {"kind": "checkpoint", "name": "nope", "sha256": ""}}
    reply = server.post("/ldstudio/v1/jobs", json={"request": missing})
    assert reply.status_code == 422 and "'nope'" in reply.json()["detail"]
    # A path in the params (no reference) is never taken from the network.
    stray = tmp_path / "stray.safetensors"
    stray.write_bytes(b"x")
    pathy = {**portable, "params": {**portable["params"], "model": str(stray)}}
    reply = server.post("/ldstudio/v1/jobs", json={"request": pathy})
    assert reply.status_code == 422 and "not one of this server's models" in reply.json()["detail"]
    assert server.post("/ldstudio/v1/jobs", json={"nope": 1}).status_code == 422


def png_bytes(color=(200, 30, 30), size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_blobs_then_an_inpaint_job(server) -> None:
    data = png_bytes()
    digest = hashlib.sha256(data).hexdigest()
    url = f"{server.url}/ldstudio/v1/blobs/{digest}"
    assert server.http.head(url).status_code == 404
    assert server.http.put(url, data=data).status_code == 201
    assert server.http.put(url, data=data).status_code == 200
    assert server.http.head(url).status_code == 200
    wrong = server.http.put(f"{server.url}/ldstudio/v1/blobs/{'0' * 64}", data=data)
    assert wrong.status_code == 400 and digest in wrong.json()["detail"]
    assert server.http.put(f"{server.url}/ldstudio/v1/blobs/xyz", data=data).status_code == 400
    junk = b"not an image"
    junk_url = f"{server.url}/ldstudio/v1/blobs/{hashlib.sha256(junk).hexdigest()}"
    assert server.http.put(junk_url, data=junk).status_code == 400
    request = Request.inpainting(params(), InpaintSettings(strength=0.5), digest)
    job_id = submit(server, request).json()["job_id"]
    assert read_events(server, job_id)[-1][0] == "JobFinished"
    other = Request.inpainting(params(), InpaintSettings(), "f" * 64)
    reply = submit(server, other)
    assert reply.status_code == 422 and "PUT it" in reply.json()["detail"]


def test_logs_of_queued_jobs_are_never_dropped(monkeypatch) -> None:
    """More jobs queued than logs kept: every waiter still hears its job's end."""
    from ldstudio.api import jobs
    from ldstudio.core.events import JobFinished as Finished

    monkeypatch.setattr(jobs, "LOGS_KEPT", 2)

    class Service:
        def subscribe(self, listener):
            self.listener = listener

    service = Service()
    tracker = jobs.JobTracker(service)  # type: ignore[arg-type]
    logs = [tracker.track(job_id) for job_id in range(1, 6)]
    assert all(tracker.log(log.job_id) is log for log in logs)  # none ended: all kept
    for log in logs[:4]:
        service.listener(Finished(log.job_id, (), 0.0))
    tracker.track(6)
    # The ended ones go, oldest first; job 5 (still queued) stays though it is older than 6.
    assert [job_id for job_id in range(1, 7) if tracker.log(job_id) is not None] == [5, 6]


def test_the_bundled_model_by_reference_is_the_default_model(server) -> None:
    from ldstudio.core import paths

    bundled = params().replace(model=str(paths.bundled_model_dir()))
    portable = to_portable(Request.txt2img(bundled))
    assert portable["model"]["name"] == "ldstudio-shapes" and portable["model"]["sha256"]
    reply = server.post("/ldstudio/v1/jobs", json={"request": portable})
    assert reply.status_code == 202, reply.text
    assert read_events(server, reply.json()["job_id"])[-1][0] == "JobFinished"
    [entry] = server.library.page(None, 0, 1)
    assert entry.params.model == ""
    # Another model that only shares the name is not taken for it.
    other = {**portable, "model": {**portable["model"], "sha256": "0" * 64}}
    assert server.post("/ldstudio/v1/jobs", json={"request": other}).status_code == 422


def test_a_blob_over_the_limit_is_refused_before_it_is_read(server, monkeypatch) -> None:
    monkeypatch.setattr(native, "MAX_BLOB_BYTES", 100)
    data = png_bytes()
    reply = server.http.put(
        f"{server.url}/ldstudio/v1/blobs/{hashlib.sha256(data).hexdigest()}", data=data
    )
    assert reply.status_code == 413 and "allowed: 100" in reply.json()["detail"]
