"""Interactive jobs on a Ray cluster: the engine as a Ray Serve deployment, behind ServeBackend.

`ldstudio serve --ray ADDRESS` builds the same API server as on one machine, with a
ServeBackend under its EngineService: the window, the CLI and A1111 clients cannot tell a
cluster from one machine. The service still queues, saves and reports every job; the backend
runs up to `max_replicas` jobs side by side (`concurrent_jobs`), each on one replica:

- one replica per GPU (`num_gpus=1`; one CPU each on a cluster without GPUs), one job at a
  time each, autoscaled by Serve between `min_replicas` (0 allowed) and `max_replicas`;
- routed by Serve's model multiplexing to a replica that already holds the job's model
  (the multiplexed id is the checkpoint's sha256);
- steps and previews stream back as they are made; cancelling the job cancels the Serve
  request, which stops the replica's engine at its next step;
- a replica lost mid-job (its process or node died) re-runs the job once, saying so; the
  images already saved are not made twice (the seed is fixed before the job leaves).
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ldstudio.cluster.data import connect
from ldstudio.cluster.rows import encode_row
from ldstudio.core.backend import BackendEvent, BlobSource, ImageResult, JobError
from ldstudio.core.events import EngineNotice
from ldstudio.core.jobs import Cancelled, CancelToken
from ldstudio.core.request import Request, from_portable

APP_NAME = "ldstudio"
APP_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,60}")
DEPLOYMENT_NAME = "engine"
BUNDLED_MODEL_ID = "bundled"
CANCEL_POLL_SECONDS = 0.1
WAITING_NOTICE_SECONDS = 3.0  # no replica took the job by then: say it waits


@dataclass(frozen=True)
class ServeOptions:
    min_replicas: int = 1  # 0: no GPU held while idle; the first job then waits for one
    max_replicas: int | None = None  # None: one per GPU in the cluster (at least one)
    models_per_replica: int = 1  # pipelines a replica keeps (Serve drops the least used)
    dtype: str = "auto"
    app: str = APP_NAME  # the Serve application; each server sharing a cluster needs its own

    def validate(self) -> ServeOptions:
        if not APP_PATTERN.fullmatch(self.app):
            raise ValueError(
                f"--ray-app: {self.app!r}; allowed: letters, digits, '-' and '_' (1 to 60)"
            )
        if self.min_replicas < 0:
            raise ValueError(f"--ray-min-replicas: {self.min_replicas}; allowed: 0 or more")
        if self.max_replicas is not None and self.max_replicas < 1:
            raise ValueError(f"--ray-max-replicas: {self.max_replicas}; allowed: 1 or more")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"--ray-max-replicas: {self.max_replicas} is below --ray-min-replicas "
                f"{self.min_replicas}; allowed: at least the minimum"
            )
        if self.models_per_replica < 1:
            raise ValueError(
                f"--ray-models-per-replica: {self.models_per_replica}; allowed: 1 or more"
            )
        return self


def model_id(portable: dict[str, Any]) -> str:
    """The multiplexed model id of a portable request: its checkpoint's sha256 (the bundled
    model's fixed id), so requests for one model meet the replica that has it loaded."""
    model = portable.get("model")
    if not model:
        return BUNDLED_MODEL_ID
    return str(model.get("sha256") or model.get("name") or BUNDLED_MODEL_ID)


class _Choice:
    def __init__(self, dtype: str, label: str) -> None:
        self.device, self.dtype, self.label = "ray", dtype, label


class ReplicaLost(Exception):
    """The replica running a job died (its process, or its node) before the job ended."""


class ServeBackend:
    """The Backend of `ldstudio serve --ray`: each job runs on one Serve replica."""

    def __init__(
        self, address: str | None, options: ServeOptions, blobs: BlobSource | None = None
    ) -> None:
        self.options = options.validate()
        self.blobs = blobs
        self._deployed = False  # close() deletes only an app this backend deployed
        self._started = connect(address)
        try:
            self._handle, gpus, self.max_replicas = _deploy(self.options)
            self._deployed = True
        except BaseException:
            self.close()
            raise
        self.concurrent_jobs = self.max_replicas  # one job per replica, never more in flight
        kind = f"{gpus} GPU(s)" if gpus else "CPUs (no GPU in the cluster)"
        self.choice = _Choice(
            options.dtype,
            f"Ray Serve at {address or '(local)'}: {self.options.min_replicas}–"
            f"{self.max_replicas} replica(s) on {kind}",
        )

    def execute(self, request: Request, cancel: CancelToken) -> Iterator[BackendEvent]:
        # The seed is concrete already (jobs are resolved when made): a re-run makes the
        # same images, so the ones saved before a replica was lost are not made twice.
        row = encode_row(0, request.resolved(), self.blobs)
        key = model_id(json.loads(row["request"]))
        saved: set[int] = set()
        try:
            yield from self._attempt(row, key, cancel, saved)
        except ReplicaLost as lost:
            yield EngineNotice(
                f"The cluster replica running this job was lost ({lost}); running the job "
                "again, once"
                + (f" (its {len(saved)} image(s) already saved are kept)" if saved else "")
            )
            try:
                yield from self._attempt(row, key, cancel, saved)
            except ReplicaLost as again:
                raise JobError(
                    f"The cluster lost the replica running this job twice ({again}); it was "
                    "run again once and is not retried further"
                ) from None

    def _attempt(
        self, row: dict[str, Any], key: str, cancel: CancelToken, saved: set[int]
    ) -> Iterator[BackendEvent]:
        import ray.exceptions
        from ray.serve.exceptions import RequestCancelledError

        cancel.raise_if_cancelled(0)
        handle = self._handle.options(stream=True, multiplexed_model_id=key)
        response = handle.render.remote(row["request"], row["blobs"])
        items = _read_in_background(response)
        step = 0
        replica = ""
        started = time.perf_counter()
        waiting_told = False
        ended = False  # the replica sent its last item
        try:
            while True:
                try:
                    kind, item = items.get(timeout=CANCEL_POLL_SECONDS)
                except queue.Empty:
                    # Cancelled between two items (a long step, or no replica free yet).
                    cancel.raise_if_cancelled(step)
                    waiting = time.perf_counter() - started > WAITING_NOTICE_SECONDS
                    if waiting and not replica and not waiting_told:
                        waiting_told = True
                        yield EngineNotice(_waiting_text(self.max_replicas))
                    continue
                if kind == "end":
                    ended = True
                    break
                if kind == "error":
                    raise item
                if item[0] == "replica":
                    replica = f"replica {item[1]}"
                yield from self._events(item, step, started, saved)
                if item[0] == "step":
                    step = item[1].step
                cancel.raise_if_cancelled(step)
        except RequestCancelledError:
            raise Cancelled(step) from None
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            if cancel.cancelled:
                raise Cancelled(step) from None
            raise ReplicaLost(f"{replica or 'a replica'}: {_first_line(exc)}") from None
        finally:
            if not ended:
                # Left early (cancelled here, a failed save, a closed generator): the replica
                # must stop too, or it stays busy with a job nobody receives.
                response.cancel()

    @staticmethod
    def _events(
        item: tuple[Any, ...], step: int, started: float, saved: set[int]
    ) -> Iterator[BackendEvent]:
        """One item from the replica as the events the service reads."""
        kind = item[0]
        if kind == "replica":
            yield EngineNotice(f"Running on the cluster's replica {item[1]} (model {item[2][:12]})")
        elif kind in ("step", "stage"):
            yield item[1]
        elif kind == "notice":
            yield EngineNotice(str(item[1]))
        elif kind == "image":
            if item[1] not in saved:  # else made before a replica was lost, and saved then
                saved.add(item[1])
                yield _image_result(item, started)
        elif kind == "cancelled":
            raise Cancelled(int(item[1]))
        elif kind == "failed":
            raise JobError(str(item[1]), str(item[2]))

    def close(self) -> None:
        if self._deployed:
            self._deployed = False
            try:
                from ray import serve

                serve.delete(self.options.app)  # the replicas give their GPUs back
            except Exception:  # already gone with its cluster: nothing to give back
                pass
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def _deploy(options: ServeOptions) -> tuple[Any, int, int]:
    """(handle, GPUs in the cluster, max replicas): the engine deployed as `options.app`."""
    import ray
    from ray import serve

    from ldstudio.cluster.replica import replica_class

    gpus = int(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
    most = options.max_replicas or max(1, gpus)
    if options.min_replicas > most:  # only with the default maximum: validate() saw the rest
        raise ValueError(
            f"--ray-min-replicas: {options.min_replicas} is above the default "
            f"--ray-max-replicas, one per GPU in the cluster ({most}); give --ray-max-replicas "
            "too, or fewer"
        )
    least = options.min_replicas
    # ldstudio's own API server fronts the deployment: Serve's HTTP proxy is not started.
    serve.start(proxy_location="Disabled")
    if options.app in serve.status().applications:
        # Deploying would silently replace another server's engine (and cut its jobs off).
        raise ValueError(
            f"--ray-app: the cluster already runs a Serve application named {options.app!r} "
            "(another ldstudio serve, or one that did not shut down); give this server its "
            "own --ray-app NAME"
        )
    deployment: Any = serve.deployment(
        replica_class(options.models_per_replica),
        name=DEPLOYMENT_NAME,
        ray_actor_options={"num_gpus": 1} if gpus else {"num_cpus": 1},
        max_ongoing_requests=1,  # one job per GPU at a time; the others wait in the queue
        autoscaling_config={
            "min_replicas": least,
            "initial_replicas": least,  # 0: the first job asks Serve for a replica
            "max_replicas": most,
            "target_ongoing_requests": 1,
        },
        graceful_shutdown_timeout_s=5,
    )
    app = deployment.bind("cuda" if gpus else "cpu", options.dtype)
    handle = serve.run(app, name=options.app, route_prefix=None)
    return handle, gpus, most


def _read_in_background(response: Any) -> queue.Queue[tuple[str, Any]]:
    """The response's items on a queue, read on a thread: the job's own thread stays free to
    notice a cancel, or a job waiting for a replica, while no item comes."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue()

    def read() -> None:
        try:
            for item in response:
                items.put(("item", item))
            items.put(("end", None))
        except BaseException as exc:  # handed to the job's thread, which words it
            items.put(("error", exc))

    threading.Thread(target=read, name="ldstudio-serve-reader", daemon=True).start()
    return items


def _waiting_text(replicas: int) -> str:
    return (
        f"Waiting for a free replica on the cluster (at most {replicas}, each running one job; "
        "Serve may be starting one, which loads the model first)"
    )


def _image_result(item: tuple[Any, ...], started: float) -> ImageResult:
    import io

    from PIL import Image

    _kind, index, png, request_text, model_name, seconds = item
    request, _missing = from_portable(json.loads(request_text))
    with Image.open(io.BytesIO(png)) as opened:
        opened.load()
        image = opened.copy()
    return ImageResult(
        image=image,
        params=request.params,
        index=int(index),
        model_name=str(model_name),
        seconds=float(seconds) or time.perf_counter() - started,
        request=request,
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
