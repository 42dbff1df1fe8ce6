"""ServeBackend's handling of a Serve response stream, against a scripted stand-in for the
deployment handle (no cluster): a job waiting for a replica says so, a cancel reaches the
request even while nothing arrives, a lost replica re-runs the job once without making its
saved images twice, a second loss fails the job, and leaving early cancels the request."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from ray.exceptions import ActorDiedError  # noqa: E402
from ray.serve.exceptions import RequestCancelledError  # noqa: E402

from ldstudio.cluster import serving  # noqa: E402
from ldstudio.cluster.serving import ServeBackend, ServeOptions  # noqa: E402
from ldstudio.core.backend import ImageResult, JobError, StageStarted, Step  # noqa: E402
from ldstudio.core.events import EngineNotice  # noqa: E402
from ldstudio.core.jobs import Cancelled, CancelToken  # noqa: E402
from ldstudio.core.params import GenerationParams  # noqa: E402
from ldstudio.core.request import Request, to_portable  # noqa: E402

REQUEST = Request.txt2img(
    GenerationParams(prompt="a red circle", steps=2, width=64, height=64, seed=5, batch_count=2)
)


class Response:
    """A scripted stream: items (a float pauses that long, an exception is raised)."""

    def __init__(self, *script: Any) -> None:
        self.script = script
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[Any]:
        for entry in self.script:
            if isinstance(entry, float):
                if self.cancelled.wait(entry):
                    raise RequestCancelledError("r1")
            elif isinstance(entry, BaseException):
                raise entry
            else:
                yield entry
        if self.cancelled.is_set():
            raise RequestCancelledError("r1")

    def cancel(self) -> None:
        self.cancelled.set()


class Handle:
    def __init__(self, *responses: Response) -> None:
        self.responses = list(responses)
        self.keys: list[str] = []
        self.render = self

    def options(self, *, stream: bool, multiplexed_model_id: str) -> Handle:
        assert stream
        self.keys.append(multiplexed_model_id)
        return self

    def remote(self, request_text: str, blobs_text: str) -> Response:
        assert json.loads(request_text)["params"]["seed"] == 5
        return self.responses.pop(0)


def _backend(*responses: Response) -> ServeBackend:
    backend = ServeBackend.__new__(ServeBackend)  # not deployed: the handle is scripted
    backend.options, backend.blobs, backend._started = ServeOptions(), None, False
    backend._deployed = False
    backend.max_replicas = backend.concurrent_jobs = 2
    backend._handle = Handle(*responses)
    return backend


def _image(index: int) -> tuple[Any, ...]:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (index * 40, 0, 0)).save(out, format="PNG")
    made = REQUEST.resolved()
    return ("image", index, out.getvalue(), json.dumps(to_portable(made)), "ldstudio", 0.5)


def _stage() -> tuple[Any, ...]:
    return ("stage", StageStarted(REQUEST.params.resolved(), 2, 2))


def _step(n: int) -> tuple[Any, ...]:
    return ("step", Step(0, n, 2, 0.1, 10.0))


REPLICA = ("replica", "node-a pid 41", "bundled")


def _run(backend: ServeBackend, cancel: CancelToken | None = None) -> list[Any]:
    return list(backend.execute(REQUEST, cancel or CancelToken()))


def test_a_job_runs_from_the_stream_and_is_routed_by_its_model() -> None:
    backend = _backend(Response(REPLICA, _stage(), _step(1), _step(2), _image(0), _image(1)))
    events = _run(backend)
    assert [type(e).__name__ for e in events] == [
        "EngineNotice",
        "StageStarted",
        "Step",
        "Step",
        "ImageResult",
        "ImageResult",
    ]
    assert "replica node-a pid 41 (model bundled)" in events[0].message
    assert [e.index for e in events if isinstance(e, ImageResult)] == [0, 1]
    assert backend._handle.keys == ["bundled"]


def test_a_job_waiting_for_a_replica_says_so(monkeypatch) -> None:
    monkeypatch.setattr(serving, "WAITING_NOTICE_SECONDS", 0.2)
    events = _run(_backend(Response(0.6, REPLICA, _stage(), _image(0), _image(1))))
    notices = [e.message for e in events if isinstance(e, EngineNotice)]
    assert notices[0].startswith("Waiting for a free replica on the cluster (at most 2")
    assert "Running on the cluster's replica node-a" in notices[1]


def test_a_cancel_reaches_the_request_while_nothing_arrives() -> None:
    response = Response(REPLICA, _stage(), _step(1), 30.0, _step(2))
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled) as raised:
        _run(_backend(response), cancel)
    assert raised.value.step == 1
    assert response.cancelled.is_set()  # the Serve request itself, not only our loop
    assert time.monotonic() - started < 10


def test_a_lost_replica_re_runs_the_job_once_without_making_saved_images_twice() -> None:
    lost = Response(REPLICA, _stage(), _image(0), _step(1), ActorDiedError())
    again = Response(("replica", "node-b pid 77", "bundled"), _stage(), _image(0), _image(1))
    events = _run(_backend(lost, again))
    notices = [e.message for e in events if isinstance(e, EngineNotice)]
    assert any(
        "replica node-a pid 41" in n and "was lost" in n and "again, once" in n and "1 image" in n
        for n in notices
    ), notices
    assert [e.index for e in events if isinstance(e, ImageResult)] == [0, 1]  # 0 once


def test_a_second_loss_fails_the_job_by_name() -> None:
    backend = _backend(
        Response(REPLICA, _stage(), ActorDiedError()),
        Response(("replica", "node-b pid 77", "bundled"), _stage(), ActorDiedError()),
    )
    with pytest.raises(JobError, match="lost the replica running this job twice"):
        _run(backend)


def test_a_failure_on_the_replica_is_the_jobs_failure_in_its_words() -> None:
    backend = _backend(Response(REPLICA, ("failed", "model 'x' was not found on this node", "")))
    with pytest.raises(JobError, match="model 'x' was not found on this node"):
        _run(backend)


def test_leaving_the_stream_early_cancels_the_request() -> None:
    response = Response(REPLICA, _stage(), _step(1), 30.0, _step(2))
    events = _backend(response).execute(REQUEST, CancelToken())
    assert isinstance(next(events), EngineNotice)
    events.close()  # the service closes it when saving an image failed
    assert response.cancelled.wait(5)


def test_the_app_name_is_checked() -> None:
    with pytest.raises(ValueError, match=r"--ray-app: 'my app'; allowed: letters, digits"):
        ServeOptions(app="my app").validate()
    assert ServeOptions(app="studio-2").validate().app == "studio-2"
