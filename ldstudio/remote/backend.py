"""RemoteBackend: runs requests on an `ldstudio serve` server; called from the service's worker.

It obeys the Backend contract of ldstudio.core.backend exactly as the local DiffusersBackend
does: it uploads the request's input blobs, submits the portable request, follows the job's
event stream and yields backend events — model loading, stages, steps with their previews,
and each finished image decoded from the PNG the server saved, its request read back from that
PNG's metadata. So the local EngineService saves every image into the local library, and its
queue, cancel and events work unchanged. The server's own library keeps its copy too.

Ends as the contract says: exhausted, `Cancelled(step)` once the server has honoured a cancel,
or `JobError` naming the server (unreachable, gone mid-job, or the job failed there). Nothing
is kept between jobs but the address: the next job simply connects again.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator

from PIL import Image, UnidentifiedImageError

from ldstudio.core.backend import (
    BackendEvent,
    BlobSource,
    ImageResult,
    JobError,
    StageStarted,
    Step,
)
from ldstudio.core.events import (
    EngineFailed,
    EngineNotice,
    ImageRecord,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    ModelLoading,
    ModelReady,
    StepProgress,
)
from ldstudio.core.events import StageStarted as JobStageStarted
from ldstudio.core.jobs import Cancelled, CancelToken
from ldstudio.core.readers import read_image
from ldstudio.core.request import Request
from ldstudio.remote.client import (
    EventStream,
    ServerClient,
    ServerError,
    ServerInfo,
    ServerModels,
)
from ldstudio.remote.references import portable_request

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.1  # how often a waiting job looks at its cancel token


class RemoteChoice:
    """The server's device and precision as the service and the window see them.

    Updated in place at every job's connect: the service holds this object while a job runs,
    so the records it saves carry what the server really used.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.device = "server"
        self.dtype = "unknown"
        self.label = f"server {url} · not connected yet"

    def update(self, info: ServerInfo) -> bool:
        """Take the server's info; True when the label changed."""
        label = f"server {self.url} · {info.device} {info.dtype}"
        changed = label != self.label
        self.device, self.dtype, self.label = info.device, info.dtype, label
        return changed

    def unreachable(self, why: str) -> bool:
        label = f"server {self.url} · not reachable"
        changed = label != self.label
        self.label = label
        log.info("%s", why)
        return changed


class RemoteBackend:
    """Runs each request on the server behind `client`; `blobs` is the local library's blob
    store (the request's input images). `on_label` hears the choice whenever its label
    changes (connected, device changed, unreachable): app.py re-announces the engine."""

    def __init__(
        self,
        client: ServerClient,
        blobs: BlobSource | None = None,
        on_label: Callable[[RemoteChoice], None] | None = None,
    ) -> None:
        self.client = client
        self.blobs = blobs
        self.on_label = on_label
        self._choice = RemoteChoice(client.url)
        # At start, so the engine's first label says where it runs; a server that is down
        # now is no failure: every job connects again.
        with contextlib.suppress(ServerError):
            self._connect()

    @property
    def choice(self) -> RemoteChoice:
        return self._choice

    def models(self) -> ServerModels:
        """The server's model lists (ServerError when it cannot be asked)."""
        return self.client.models()

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]:
        cancel.raise_if_cancelled(0)
        who = f"the ldstudio server {self.client.url}"
        try:
            self._connect()
            self._upload_inputs(request)
            job_id = self.client.submit(portable_request(request, self.client.models()))
            stream = self.client.events(job_id)
        except ServerError as exc:
            raise JobError(_sentence(str(exc)), f"{type(exc).__name__}: {exc}") from None
        log.info("job runs on %s as its job %d", self.client.url, job_id)
        follow = _Follow(self, request, job_id, cancel, who)
        try:
            yield from follow.run(stream)
        except ServerError as exc:
            raise JobError(_sentence(str(exc)), f"{type(exc).__name__}: {exc}") from None
        finally:
            if not follow.ended:  # closed early, or broken: the server need not go on
                with contextlib.suppress(ServerError):
                    self.client.cancel(job_id)
            stream.close()

    def close(self) -> None:
        """Nothing to free: every call opens and closes its own connection."""

    # -- steps of a job ----------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            info = self.client.info()
        except ServerError as exc:
            if self._choice.unreachable(str(exc)) and self.on_label is not None:
                self.on_label(self._choice)
            raise
        if self._choice.update(info) and self.on_label is not None:
            self.on_label(self._choice)
        if info.error:
            raise ServerError(
                f"the engine of the ldstudio server {self.client.url} is not running: {info.error}"
            )

    def _upload_inputs(self, request: Request) -> None:
        for role, digest in request.inputs:
            if self.blobs is None:
                raise JobError(f"input {role}: no local library to read it from")
            try:
                data = self.blobs.get(digest)
            except (KeyError, ValueError, OSError) as exc:
                raise JobError(f"input {role}: {exc}") from None
            self.client.upload_blob(digest, data)

    def image(
        self, job_id: int, position: int, record: ImageRecord
    ) -> tuple[ImageResult, tuple[str, ...]]:
        """The job's `position`-th image as the server saved it, and what its metadata names
        that this machine lacks."""
        data = self.client.image(job_id, position)
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise ServerError(
                f"the ldstudio server {self.client.url} sent image {position} of its job "
                f"{job_id} in a form ldstudio cannot read ({exc})"
            ) from None
        # Its metadata, read as any ldstudio PNG is read: models by name + hash, resolved in
        # the local model folders, so the local copy records the same request.
        found = read_image(image)
        if found.request is None:
            raise ServerError(
                f"the ldstudio server {self.client.url} sent image {position} of its job "
                f"{job_id} without ldstudio metadata"
            )
        own = found.request
        result = ImageResult(
            image=image,
            params=own.params,
            index=record.index,
            model_name=record.model_name,
            seconds=record.seconds,
            request=own,
        )
        return result, found.warnings


class _Follow:
    """One job's event stream turned into backend events."""

    def __init__(
        self, backend: RemoteBackend, request: Request, job_id: int, cancel: CancelToken, who: str
    ) -> None:
        self.backend = backend
        self.request = request
        self.job_id = job_id
        self.cancel = cancel
        self.who = who
        self.ended = False  # the server sent the job's final event
        self._cancel_sent = False
        self._started: JobStarted | None = None
        self._told: set[str] = set()  # notices already given in this job

    def run(self, stream: EventStream) -> Iterator[BackendEvent]:
        while True:
            if self.cancel.cancelled and not self._cancel_sent:
                self._cancel_sent = True
                # The server stops after its current step and then says JobCancelled.
                self.backend.client.cancel(self.job_id)
            event = stream.get(CANCEL_POLL_S)
            if event is None:
                continue
            if isinstance(event, ModelLoading | ModelReady):
                yield event
            elif isinstance(event, JobStarted):
                yield self._first_stage(event)
            elif isinstance(event, JobStageStarted):
                yield self._stage(event)
            elif isinstance(event, StepProgress):
                yield Step(
                    batch_index=event.batch_index,
                    step=event.step,
                    total=event.total,
                    elapsed=event.elapsed,
                    it_per_s=event.it_per_s,
                    preview=event.preview,
                    stage=event.stage,
                )
            elif isinstance(event, EngineNotice):
                yield EngineNotice(event.message)  # the local service names the local job
            elif isinstance(event, JobFinished):
                yield from self._images(event.records)
                self.ended = True
                return
            elif isinstance(event, JobCancelled):
                yield from self._images(event.saved)
                self.ended = True
                raise Cancelled(event.step)
            elif isinstance(event, JobFailed):
                self.ended = True
                raise JobError(f"{_sentence(event.message)} (on {self.who})", event.detail)
            elif isinstance(event, EngineFailed):
                self.ended = True
                raise JobError(f"{_sentence(event.message)} (on {self.who})", event.message)
            # JobCancelling: the local service said so already when the cancel was asked.

    def _first_stage(self, event: JobStarted) -> StageStarted:
        # The server's params name its own files; the window shows the model chosen here.
        local = self.request.params
        params = event.params.replace(model=local.model, vae=local.vae)
        self._started = JobStarted(
            event.job_id, params, event.device, event.dtype, event.total_steps, event.image_count
        )
        return StageStarted(
            params=params,
            total_steps=event.total_steps,
            image_count=event.image_count,
            name=self.request.kind,
        )

    def _stage(self, event: JobStageStarted) -> StageStarted:
        if self._started is None:
            raise ServerError(f"{self.who} sent a stage before the job started")
        return StageStarted(
            params=self._started.params,
            total_steps=event.total_steps,
            image_count=self._started.image_count,
            index=event.index,
            count=event.count,
            name=event.name,
        )

    def _images(self, records: tuple[ImageRecord, ...]) -> Iterator[BackendEvent]:
        for position, record in enumerate(records):
            result, missing = self.backend.image(self.job_id, position, record)
            for what in missing:
                if what not in self._told:
                    self._told.add(what)
                    yield EngineNotice(
                        f"{what[:1].upper()}{what[1:]} (the copy saved here names it without its "
                        "content hash)"
                    )
            yield result


def _sentence(text: str) -> str:
    """`text` as a sentence: capitalised, with a full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
