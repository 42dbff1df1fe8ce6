"""Batch renders and grids on a Ray cluster with Ray Data; runs on the caller's thread.

`render` maps portable requests over actors (`map_batches` with RenderActor, one engine per
actor) and streams the images back in request order. `ClusterBackend` puts that stream behind
the ordinary Backend contract, so the EngineService saves every image into the caller's
library through its normal sink, and a grid's cells link exactly as on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from ldstudio.cluster.rows import RenderedImage, RowFailed, decode_image, encode_row
from ldstudio.core.backend import BackendEvent, BlobSource, ImageResult, JobError, StageStarted
from ldstudio.core.jobs import CancelToken
from ldstudio.core.request import Request

ADDRESS_HELP = '"auto" (the cluster this machine belongs to), ray://HOST:10001, or HOST:6379'


def connect(address: str | None) -> bool:
    """Join the cluster at `address` (None: start a local one); True when this call started
    Ray (so the caller shuts it down). A running session is reused as it is."""
    import ray

    if ray.is_initialized():
        return False
    if address is not None and not address.strip():
        raise ValueError(f"--ray: an empty address; allowed: {ADDRESS_HELP}")
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return True


def render(
    requests: Sequence[Request],
    address: str | None = None,
    *,
    actors: int = 2,
    blobs: BlobSource | None = None,
) -> Iterator[RenderedImage | RowFailed]:
    """Render every request on the cluster; yield its images (or its failure) in request order.

    One actor per `actors`, each with a GPU when the cluster has GPUs, else one CPU. Checks
    the input and joins the cluster before it returns (ValueError, ConnectionError), so a bad
    address is reported once, not once per cell.
    """
    if actors < 1:
        raise ValueError(f"--ray-actors: {actors}; allowed: 1 or more")
    rows = [encode_row(i, r, blobs) for i, r in enumerate(requests)]
    started = connect(address)
    return _stream(rows, actors, started)


def _stream(
    rows: list[dict[str, Any]], actors: int, started: bool
) -> Iterator[RenderedImage | RowFailed]:
    import ray
    import ray.data

    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0  # type: ignore[no-untyped-call]
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # cells come back in grid order
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
        resources: dict[str, Any] = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        mapped = dataset.map_batches(
            _actor_class(),
            fn_constructor_kwargs={"device": "cuda" if gpus else "cpu"},
            batch_size=1,  # one request per call: a slow cell does not hold others back
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            **resources,
        )
        for row in mapped.iter_rows():
            yield decode_image(row)
    finally:
        if started:
            ray.shutdown()


def _actor_class() -> type:
    from ldstudio.cluster.actor import RenderActor

    return RenderActor


class _Choice:
    def __init__(self, label: str) -> None:
        self.device, self.dtype, self.label = "ray", "auto", label


class ClusterBackend:
    """The Backend for a known list of requests rendered on a Ray cluster.

    `execute` must be called with those requests in order (as `runs.run_requests` does); each
    call yields the next request's images from the one Ray Data stream. A failed row raises a
    JobError naming the cell; the other rows still arrive and are saved.
    """

    def __init__(
        self,
        requests: Sequence[Request],
        address: str | None,
        *,
        actors: int = 2,
        blobs: BlobSource | None = None,
        noun: str = "cell",
    ) -> None:
        self.requests = list(requests)
        self.noun = noun
        self.choice = _Choice(f"Ray cluster {address or '(local)'}, {actors} actor(s)")
        # Joined here, not in the stream, so close() leaves even a stream never read.
        self._started = connect(address)
        self._stream = render(self.requests, address, actors=actors, blobs=blobs)
        self._next = 0
        self._held: RenderedImage | RowFailed | None = None

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]:
        cancel.raise_if_cancelled(0)
        try:
            # From where the last job left off: a job cancelled before it ran is skipped.
            index = self.requests.index(request, self._next)
        except ValueError:
            raise JobError(
                f"{self.noun} {self._next + 1}: not a request this cluster run was given"
            ) from None
        self._next = index + 1
        started = time.perf_counter()
        images = 0
        for item in self._take(index):
            if isinstance(item, RowFailed):
                raise JobError(f"{self.noun} {index + 1} failed on the cluster: {item.message}")
            if images == 0:
                params = item.request.params
                yield StageStarted(params, params.steps, request.params.image_count)
            yield ImageResult(
                image=_image(item.png),
                params=item.request.params,
                index=item.image_index,
                model_name=item.model_name,
                seconds=item.seconds or time.perf_counter() - started,
                request=item.request,
            )
            images += 1
            cancel.raise_if_cancelled(0)
        if images == 0:
            raise JobError(f"{self.noun} {index + 1}: the cluster sent back no image")

    def _take(self, index: int) -> Iterator[RenderedImage | RowFailed]:
        """The stream's items for request `index` (all of its images, or its failure)."""
        while True:
            item = self._held if self._held is not None else next(self._stream, None)
            self._held = None
            if item is None:
                return
            if item.index < index:
                continue  # a request whose job was cancelled before it ran
            if item.index > index:
                self._held = item  # the next request's first image
                return
            yield item

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
        if self._started:
            import ray

            ray.shutdown()


def _image(data: bytes) -> Any:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return opened.copy()
