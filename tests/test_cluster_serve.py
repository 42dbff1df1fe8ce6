"""Ray Serve on a real local Ray cluster (started once for the module; two CPU replicas, the
bundled 64 px model): bit-identical to the local engine, jobs side by side on two replicas,
cancel reaching the replica, a replica killed mid-job re-run once, and the HTTP API in front."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from api_support import running_server  # noqa: E402
from cluster_support import local_pixels  # noqa: E402
from engine_support import Borrowed  # noqa: E402

from ldstudio.cluster.serving import (  # noqa: E402
    BUNDLED_MODEL_ID,
    ServeBackend,
    ServeOptions,
    model_id,
)
from ldstudio.core.events import (  # noqa: E402
    EngineNotice,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    StepProgress,
)
from ldstudio.core.imagefiles import FolderSink  # noqa: E402
from ldstudio.core.params import GenerationParams  # noqa: E402
from ldstudio.core.request import Request  # noqa: E402
from ldstudio.core.service import EngineService  # noqa: E402

TIMEOUT = 300


@pytest.fixture(scope="module")
def backend() -> Iterator[ServeBackend]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    made = ServeBackend(None, ServeOptions(min_replicas=2, max_replicas=2))
    yield made
    made.close()
    ray.shutdown()


class Run:
    """A started service over the module's backend, its events, and its folder's images."""

    def __init__(self, backend: ServeBackend, folder: Path) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.listeners: list = []
        self.service = EngineService(lambda: Borrowed(backend), FolderSink(folder))
        self.service.subscribe(self._on_event)
        self.service.start()

    def _on_event(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)
            listeners = list(self.listeners)
        for listener in listeners:
            listener(event)

    def notices(self, job_id: int) -> list[str]:
        with self.lock:
            return [
                e.message for e in self.events if isinstance(e, EngineNotice) and e.job_id == job_id
            ]

    def close(self) -> None:
        self.service.close(TIMEOUT)


@pytest.fixture
def run(backend: ServeBackend, tmp_path: Path) -> Iterator[Run]:
    made = Run(backend, tmp_path)
    yield made
    made.close()


def _request(seed: int, **changes: object) -> Request:
    values: dict[str, object] = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64}
    values.update(changes)
    return Request.txt2img(GenerationParams(seed=seed, **values))  # type: ignore[arg-type]


def _pixels(outcome: object) -> list[np.ndarray]:
    assert isinstance(outcome, JobFinished), outcome
    return [np.asarray(Image.open(r.path).convert("RGB")) for r in outcome.records]


def _replica_pid(notices: list[str]) -> int:
    found = [int(m.group(1)) for n in notices if (m := re.search(r"replica \S+ pid (\d+)", n))]
    assert found, notices
    return found[0]


def _kill_running_replica(run: Run, job_id: int, after_step: int) -> threading.Event:
    """Kill the replica running `job_id` (its process, SIGKILL) once it reports `after_step`."""
    import os
    import signal

    killed = threading.Event()

    def listener(event: Event) -> None:
        if (
            isinstance(event, StepProgress)
            and event.job_id == job_id
            and event.step >= after_step
            and not killed.is_set()
        ):
            killed.set()
            os.kill(_replica_pid(run.notices(job_id)), signal.SIGKILL)

    with run.lock:
        run.listeners.append(listener)
    return killed


def test_serve_makes_bit_identical_images_to_the_local_engine(run: Run, tmp_path: Path) -> None:
    requests = [_request(21), _request(22, guidance_scale=3.0, batch_size=2)]
    served = [p for r in requests for p in _pixels(run.service.run(r, TIMEOUT))]
    local = local_pixels(requests, tmp_path / "local")
    assert len(served) == len(local) == 3
    for got, want in zip(served, local, strict=True):
        assert np.array_equal(got, want)


def test_two_jobs_run_side_by_side_on_two_replicas(run: Run) -> None:
    running_at_steps: list[int] = []

    def listener(event: Event) -> None:
        if isinstance(event, StepProgress):
            running_at_steps.append(len(run.service.queue.running_jobs()))

    with run.lock:
        run.listeners.append(listener)
    jobs = [run.service.submit(_request(30 + i, steps=12)) for i in range(2)]
    outcomes = [run.service.wait(job, TIMEOUT) for job in jobs]
    assert all(isinstance(o, JobFinished) for o in outcomes), outcomes
    # Neither waited behind the other: both were running while steps were made, each on its
    # own replica (one job per replica).
    assert max(running_at_steps) == 2
    assert len({_replica_pid(run.notices(job.id)) for job in jobs}) == 2


def test_the_multiplexed_model_id_is_the_checkpoints_hash(run: Run) -> None:
    assert model_id({"model": None}) == BUNDLED_MODEL_ID
    assert model_id({"model": {"name": "v1-5", "sha256": "ab" * 32}}) == "ab" * 32
    job = run.service.submit(_request(40))
    assert isinstance(run.service.wait(job, TIMEOUT), JobFinished)
    # The replica says which model id Serve routed the job by.
    assert any(f"(model {BUNDLED_MODEL_ID})" in n for n in run.notices(job.id))


def test_cancel_reaches_the_replica_and_frees_it(run: Run) -> None:
    # 20 rounds of 150 steps each: minutes of work on two shared CPUs.
    jobs = [run.service.submit(_request(50 + i, steps=150, batch_count=20)) for i in range(2)]
    seen = threading.Event()

    def listener(event: Event) -> None:
        if isinstance(event, StepProgress) and event.step >= 3:
            seen.set()

    with run.lock:
        run.listeners.append(listener)
    assert seen.wait(TIMEOUT)
    cancelled_at = time.monotonic()
    for job in jobs:
        run.service.cancel(job.id)
    outcomes = [run.service.wait(job, TIMEOUT) for job in jobs]
    assert all(isinstance(o, JobCancelled) for o in outcomes), outcomes
    assert all(len(o.saved) < 20 for o in outcomes if isinstance(o, JobCancelled))
    # Both replicas stopped their engines (a replica runs one job at a time, so a replica
    # still busy with 3,000 steps would hold these back for minutes).
    short = [run.service.submit(_request(60 + i)) for i in range(2)]
    assert all(isinstance(run.service.wait(j, TIMEOUT), JobFinished) for j in short)
    assert time.monotonic() - cancelled_at < 60


def test_a_replica_killed_mid_job_re_runs_the_job_once_and_says_so(
    run: Run, tmp_path: Path
) -> None:
    request = _request(70, steps=40)
    job = run.service.submit(request)
    killed = _kill_running_replica(run, job.id, after_step=3)
    outcome = run.service.wait(job, TIMEOUT)
    assert killed.is_set()
    assert isinstance(outcome, JobFinished), outcome
    assert len(outcome.records) == 1
    notices = run.notices(job.id)
    assert any("was lost" in n and "again, once" in n for n in notices), notices
    # The re-run is the same job: the image is the one an uninterrupted run makes.
    (want,) = local_pixels([request], tmp_path / "local")
    assert np.array_equal(_pixels(outcome)[0], want)
    with run.lock:
        started = [e for e in run.events if isinstance(e, JobStarted) and e.job_id == job.id]
    assert len(started) == 1  # one job for its listeners, run twice on the cluster


def test_a_job_whose_replica_is_lost_twice_fails_and_says_so(run: Run) -> None:
    job = run.service.submit(_request(80, steps=40))
    first = _kill_running_replica(run, job.id, after_step=3)
    assert first.wait(TIMEOUT)

    def second_kill(event: Event) -> None:
        # The re-run's own replica, once it has made steps too.
        if isinstance(event, EngineNotice) and "again, once" in event.message:
            with run.lock:
                run.listeners.append(_second)

    killed_again = threading.Event()

    def _second(event: Event) -> None:
        import os
        import signal

        if isinstance(event, StepProgress) and event.job_id == job.id and not killed_again.is_set():
            pids = [
                int(m.group(1))
                for n in run.notices(job.id)
                if (m := re.search(r"replica \S+ pid (\d+)", n))
            ]
            if len(pids) >= 2:
                killed_again.set()
                os.kill(pids[-1], signal.SIGKILL)

    with run.lock:
        run.listeners.append(second_kill)
    outcome = run.service.wait(job, TIMEOUT)
    assert killed_again.is_set()
    assert isinstance(outcome, JobFailed), outcome
    assert "lost the replica running this job twice" in outcome.message


def test_the_http_api_in_front_of_serve_gives_the_same_pixels(
    backend: ServeBackend, tmp_path: Path
) -> None:
    import base64
    import io

    with running_server(backend, tmp_path / "library") as server:
        response = server.post(
            "/sdapi/v1/txt2img",
            json={"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 90},
        )
        assert response.status_code == 200, response.text
        (encoded,) = response.json()["images"]
        got = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"))
        assert server.saved() == 1
    request = _request(90, scheduler="Euler a", guidance_scale=7.0)
    (want,) = local_pixels([request], tmp_path / "local")
    assert np.array_equal(got, want)


def test_serve_options_are_checked() -> None:
    for options, fault in (
        (ServeOptions(min_replicas=-1), "--ray-min-replicas: -1"),
        (ServeOptions(max_replicas=0), "--ray-max-replicas: 0"),
        (ServeOptions(min_replicas=3, max_replicas=2), "below --ray-min-replicas 3"),
        (ServeOptions(models_per_replica=0), "--ray-models-per-replica: 0"),
    ):
        with pytest.raises(ValueError, match=re.escape(fault)):
            options.validate()


def test_the_window_and_generate_server_use_the_cluster_as_one_machine(
    backend: ServeBackend, tmp_path: Path
) -> None:
    """The window's and `generate --server`'s client (RemoteBackend) against a Serve-backed
    server: previews stream in, the image lands in the client's library, the same pixels."""
    from ldstudio.core.library import LibraryStore
    from ldstudio.remote.backend import RemoteBackend
    from ldstudio.remote.client import ServerClient

    request = _request(95, steps=4, preview_method="latent2rgb")
    mine = LibraryStore(tmp_path / "mine", reconcile=False)
    try:
        with running_server(backend, tmp_path / "server") as server:
            client = ServerClient(server.url)
            service = EngineService(lambda: RemoteBackend(client, blobs=mine.blobs), mine)
            events: list[Event] = []
            service.subscribe(events.append)
            service.start()
            outcome = service.run(request, TIMEOUT)
            service.close(TIMEOUT)
        got = _pixels(outcome)
        assert all(r.path.is_relative_to(mine.root) for r in outcome.records)  # type: ignore[union-attr]
        previews = [e.preview for e in events if isinstance(e, StepProgress)]
        assert previews and all(p is not None and p.dtype == np.uint8 for p in previews)
    finally:
        mine.close()
    (want,) = local_pixels([request], tmp_path / "local")
    assert np.array_equal(got[0], want)


def test_a_job_with_an_input_image_ships_it_to_the_replica(
    backend: ServeBackend, tmp_path: Path
) -> None:
    """An upscale job: its source travels as bytes with the request (no shared folders)."""
    import io

    from ldstudio.core.library.blobs import BlobStore
    from ldstudio.core.upscale import UpscaleSettings

    rng = np.random.default_rng(7)
    source = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), "RGB")
    data = io.BytesIO()
    source.save(data, format="PNG")
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put(data.getvalue())
    settings = UpscaleSettings(scale=2, upscaler="lanczos", refine_strength=0.0)
    request = Request.upscaling(GenerationParams(prompt=""), settings, digest)
    kept, backend.blobs = backend.blobs, blobs
    try:
        service = EngineService(lambda: Borrowed(backend), FolderSink(tmp_path / "out"))
        service.start()
        outcome = service.run(request, TIMEOUT)
        service.close(TIMEOUT)
    finally:
        backend.blobs = kept
    (got,) = _pixels(outcome)
    want = np.asarray(source.resize((112, 80), Image.Resampling.LANCZOS))
    assert np.array_equal(got, want)


def test_a_second_server_with_the_same_app_name_is_refused(
    backend: ServeBackend, tmp_path: Path
) -> None:
    # Deploying it would silently replace the first server's engine and cut its jobs off.
    with pytest.raises(ValueError, match=r"--ray-app: the cluster already runs a Serve app"):
        ServeBackend(None, ServeOptions(min_replicas=0, max_replicas=1))
    job_still_runs = Run(backend, tmp_path)  # the first server still serves
    try:
        assert isinstance(job_still_runs.service.run(_request(99), TIMEOUT), JobFinished)
    finally:
        job_still_runs.close()


def test_a_minimum_above_the_default_maximum_is_refused(backend: ServeBackend) -> None:
    # The cluster here has no GPU, so the default maximum is one replica.
    with pytest.raises(ValueError, match=r"--ray-min-replicas: 2 is above the default"):
        ServeBackend(None, ServeOptions(min_replicas=2, app="other"))
