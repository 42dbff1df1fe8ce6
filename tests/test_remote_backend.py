"""RemoteBackend against a real `ldstudio serve` (the fake backend behind it): jobs run there and
land in the local library, cancel, auth, blobs, refusals, and a server that goes away mid-job
(a TCP proxy in front of the real server is cut, then restored)."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from api_support import running_server
from PIL import Image

from ldstudio.core.events import (
    EngineReady,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    StepProgress,
)
from ldstudio.core.inpaint import InpaintSettings
from ldstudio.core.library import LibraryStore
from ldstudio.core.metadata import LDSTUDIO_KEY, PARAMETERS_KEY
from ldstudio.core.params import GenerationParams
from ldstudio.core.request import Request
from ldstudio.core.service import EngineService
from ldstudio.engine.fake import FakeBackend
from ldstudio.remote.backend import RemoteBackend
from ldstudio.remote.client import ServerClient, ServerError

TIMEOUT = 60


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def server(fake: FakeBackend, tmp_path: Path):
    with running_server(fake, tmp_path / "server-library") as running:
        yield running


@pytest.fixture
def local_library(tmp_path: Path) -> Iterator[LibraryStore]:
    library = LibraryStore(tmp_path / "local-library", reconcile=False)
    yield library
    library.close()


@contextlib.contextmanager
def remote_service(
    url: str, library: LibraryStore, user: str = "", password: str = ""
) -> Iterator[tuple[EngineService, list[Event]]]:
    """The local EngineService, as the window and the CLI use it, on a RemoteBackend."""
    client = ServerClient(url, user, password, timeout=5, stream_timeout=10)
    service = EngineService(lambda: RemoteBackend(client, blobs=library.blobs), library)
    events: list[Event] = []
    service.subscribe(events.append)
    service.start()
    try:
        yield service, events
    finally:
        service.close(timeout=TIMEOUT)


def params(**changes: object) -> GenerationParams:
    return GenerationParams(prompt="a red fox", steps=3, width=64, height=64, seed=7).replace(
        **changes
    )


def wait_for(predicate, timeout: float = TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def png_text(path: Path) -> dict[str, str]:
    with Image.open(path) as image:
        return dict(image.text)


def test_info_and_models(server) -> None:
    client = ServerClient(server.url)
    info = client.info()
    assert info.protocol == 1 and info.ready and info.device == "cpu"
    names = [model.name for model in client.models().checkpoints]
    assert names[0] == "ldstudio-shapes"


def test_a_job_runs_on_the_server_and_lands_in_the_local_library(
    server, local_library: LibraryStore
) -> None:
    with remote_service(server.url, local_library) as (service, events):
        outcome = service.run(params(batch_size=2, batch_count=2), timeout=TIMEOUT)
        assert isinstance(outcome, JobFinished), outcome
        choice = service.choice
        assert choice is not None and choice.label == f"server {server.url} · cpu fp32"
    assert [record.seed for record in outcome.records] == [7, 8, 9, 10]
    assert local_library.count() == 4 and server.saved() == 4
    server_paths = {entry.params.seed: entry.path for entry in server.library.page(None, 0, 10)}
    for record in outcome.records:
        # In the local library, not the server's folder; the server's device recorded.
        assert record.path.is_relative_to(local_library.root)
        assert (record.device, record.dtype) == ("cpu", "fp32")
        there = server_paths[record.seed]
        with Image.open(record.path) as mine, Image.open(there) as theirs:
            assert np.array_equal(np.asarray(mine), np.asarray(theirs))
        # The same metadata: the request (portable JSON) and A1111's text.
        assert png_text(record.path) == png_text(there)
    started = [e for e in events if isinstance(e, JobStarted)]
    assert len(started) == 1 and started[0].params.seed == 7 and started[0].image_count == 4
    steps = [e for e in events if isinstance(e, StepProgress)]
    assert [(e.batch_index, e.step) for e in steps] == [(b, s) for b in (0, 1) for s in (1, 2, 3)]
    # The fake's preview encodes the step in its red channel; JPEG keeps it close.
    last = steps[-1].preview
    assert last is not None and last.dtype == np.uint8 and last.shape == (8, 16, 3)
    assert abs(int(last[..., 0].mean()) - 255) <= 3
    ready = [e for e in events if isinstance(e, EngineReady)]
    assert ready and ready[0].label.startswith(f"server {server.url}")


def test_cancel_mid_job_stops_the_server_job(
    server, fake: FakeBackend, local_library: LibraryStore
) -> None:
    fake.hold_at_step = 2
    with remote_service(server.url, local_library) as (service, events):
        job = service.submit(params(steps=5))
        wait_for(lambda: any(isinstance(e, StepProgress) and e.step == 2 for e in events))
        service.cancel(job.id)
        outcome = service.wait(job, timeout=TIMEOUT)
    assert isinstance(outcome, JobCancelled) and outcome.step == 2, outcome
    assert local_library.count() == 0 and server.saved() == 0
    wait_for(lambda: not server.ctx.service.jobs())


def test_cancel_after_a_round_keeps_its_images(
    server, fake: FakeBackend, local_library: LibraryStore
) -> None:
    fake.hold_at_step = 3  # every round holds at its last step
    with remote_service(server.url, local_library) as (service, events):
        job = service.submit(params(steps=3, batch_count=3))

        def at_last_step(round_: int) -> bool:
            return any(
                isinstance(e, StepProgress) and (e.batch_index, e.step) == (round_, 3)
                for e in events
            )

        wait_for(lambda: at_last_step(0))
        fake.release()
        wait_for(lambda: at_last_step(1))
        service.cancel(job.id)  # honoured at round 2's first step: rounds 0 and 1 are saved
        outcome = service.wait(job, timeout=TIMEOUT)
    assert isinstance(outcome, JobCancelled), outcome
    assert [record.seed for record in outcome.saved] == [7, 8]
    assert local_library.count() == 2 == server.saved()
    for record in outcome.saved:
        assert record.path.is_relative_to(local_library.root) and record.path.is_file()


def test_input_blobs_are_uploaded(server, local_library: LibraryStore) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
    digest = local_library.blobs.put(buffer.getvalue())
    assert digest not in server.library.blobs
    request = Request.inpainting(params(), InpaintSettings(strength=0.5), image=digest)
    with remote_service(server.url, local_library) as (service, _events):
        outcome = service.run(request, timeout=TIMEOUT)
        assert isinstance(outcome, JobFinished), outcome
        # The second job finds the blob there (HEAD) and sends nothing.
        assert isinstance(service.run(request, timeout=TIMEOUT), JobFinished)
    assert digest in server.library.blobs
    [record] = outcome.records
    recorded = json.loads(png_text(record.path)[LDSTUDIO_KEY])
    assert recorded["kind"] == "inpaint" and recorded["inputs"] == {"image": digest}


def test_a_model_the_server_lacks_is_refused_naming_it(server, local_library: LibraryStore) -> None:
    with remote_service(server.url, local_library) as (service, _events):
        outcome = service.run(params(model="no-such-model"), timeout=TIMEOUT)
    assert isinstance(outcome, JobFailed)
    assert server.url in outcome.message and "no-such-model" in outcome.message
    assert "refused the job" in outcome.message


def test_a_failure_on_the_server_says_where(
    server, fake: FakeBackend, local_library: LibraryStore
) -> None:
    fake.fail_next("Out of memory on CUDA.")
    with remote_service(server.url, local_library) as (service, _events):
        outcome = service.run(params(), timeout=TIMEOUT)
    assert isinstance(outcome, JobFailed)
    assert outcome.message == f"Out of memory on CUDA. (on the ldstudio server {server.url})"


def test_auth(fake: FakeBackend, tmp_path: Path, local_library: LibraryStore) -> None:
    with running_server(fake, tmp_path / "server", credentials=("alice", "s3:cret")) as server:
        with pytest.raises(ServerError, match="asks for a user name and password") as caught:
            ServerClient(server.url).info()
        assert caught.value.status == 401
        with pytest.raises(ServerError, match="refused the user name and password"):
            ServerClient(server.url, "alice", "wrong").info()
        with remote_service(server.url, local_library) as (service, _events):
            refused = service.run(params(), timeout=TIMEOUT)
        assert isinstance(refused, JobFailed) and "user name and password" in refused.message
        with remote_service(server.url, local_library, "alice", "s3:cret") as (service, _e):
            assert isinstance(service.run(params(), timeout=TIMEOUT), JobFinished)
    assert "s3:cret" not in repr(ServerClient("http://127.0.0.1:1", "alice", "s3:cret"))


class CuttableProxy:
    """A TCP proxy in front of the real server: `cut()` drops every connection and stops
    listening (the server is gone, as far as the client can tell); `start()` brings it back
    on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CuttableProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def test_server_gone_mid_job_fails_naming_it_and_a_later_job_succeeds(
    server, fake: FakeBackend, local_library: LibraryStore
) -> None:
    proxy = CuttableProxy(int(server.url.rsplit(":", 1)[1])).start()
    fake.hold_at_step = 1
    try:
        with remote_service(proxy.url, local_library) as (service, events):
            job = service.submit(params())
            wait_for(lambda: any(isinstance(e, StepProgress) for e in events))
            proxy.cut()
            gone = service.wait(job, timeout=TIMEOUT)
            assert isinstance(gone, JobFailed), gone
            assert proxy.url in gone.message and "before the job ended" in gone.message
            # The server's job is its own affair: let it finish there.
            fake.hold_at_step = None
            fake.release()
            # While it is down: the next job fails at once, naming it.
            down = service.run(params(), timeout=TIMEOUT)
            assert isinstance(down, JobFailed) and proxy.url in down.message
            assert down.message.startswith("Cannot reach")
            # Back: the next job simply connects again.
            proxy.start()
            back = service.run(params(seed=11), timeout=TIMEOUT)
            assert isinstance(back, JobFinished), back
            assert [record.seed for record in back.records] == [11]
    finally:
        proxy.cut()
    assert local_library.count() == 1


def test_an_unreachable_server_at_start_is_no_engine_failure(
    local_library: LibraryStore,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with remote_service(url, local_library) as (service, events):
        outcome = service.run(params(), timeout=TIMEOUT)
        assert not service.startup_error
    assert isinstance(outcome, JobFailed)
    assert outcome.message.startswith(f"Cannot reach the ldstudio server {url}")
    ready = [e for e in events if isinstance(e, EngineReady)]
    assert ready[0].label == f"server {url} · not reachable"


def test_server_parameters_text_names_the_same_model(server, local_library) -> None:
    with remote_service(server.url, local_library) as (service, _events):
        outcome = service.run(params(), timeout=TIMEOUT)
    assert isinstance(outcome, JobFinished)
    text = png_text(outcome.records[0].path)[PARAMETERS_KEY]
    assert "Seed: 7" in text and "Size: 64x64" in text
