"""ServerClient: the ldstudio/v1 routes of an `ldstudio serve` server over plain HTTP; any thread.

The standard library only (`http.client`), so the window needs no new dependency. Each call
opens its own connection; the job event stream (SSE) is read line by line on a reader thread
of its own, so the caller can watch a cancel token while it waits. Every failure is a
ServerError whose message names the server and what happened; ServerUnreachable when the
server could not be reached or went away (the next call simply connects again).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import queue
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from ldstudio.core.events import Event
from ldstudio.core.settings import server_url_problem
from ldstudio.core.wire import decode_event

PROTOCOL = 1
PREFIX = "/ldstudio/v1"
DEFAULT_TIMEOUT = 10.0  # seconds for one plain request (connect, then each read)
# The server sends a keepalive comment every 10 s: this much silence means it is gone.
STREAM_TIMEOUT = 35.0
MODEL_LISTS = ("checkpoints", "loras", "vaes", "upscalers", "embeddings")


class ServerError(Exception):
    """The server refused or failed a call; `str()` names the server and is shown as is."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnreachable(ServerError):
    """The server could not be reached, did not answer in time, or closed the connection."""


@dataclass(frozen=True)
class ServerInfo:
    protocol: int
    version: str
    ready: bool
    device: str
    dtype: str
    label: str
    error: str


@dataclass(frozen=True)
class ServerModel:
    name: str
    kind: str
    family: str
    sha256: str | None


@dataclass(frozen=True)
class ServerModels:
    """The server's scanned model folders (and bundled models), list by list."""

    checkpoints: tuple[ServerModel, ...] = ()
    loras: tuple[ServerModel, ...] = ()
    vaes: tuple[ServerModel, ...] = ()
    upscalers: tuple[ServerModel, ...] = ()
    embeddings: tuple[ServerModel, ...] = ()

    def all(self) -> Iterator[ServerModel]:
        for name in MODEL_LISTS:
            yield from getattr(self, name)


class ServerClient:
    """One server: `url` like "http://host:7860"; `user`/`password` for its --api-auth."""

    def __init__(
        self,
        url: str,
        user: str = "",
        password: str = "",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stream_timeout: float = STREAM_TIMEOUT,
    ) -> None:
        problem = server_url_problem(url)
        if problem:
            raise ValueError(problem)
        self.url = url.strip().rstrip("/")
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base = parts.path  # a server behind a reverse proxy may live under a path
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._auth = ""
        if user or password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._auth = f"Basic {token}"

    def __repr__(self) -> str:  # never the password
        return f"ServerClient({self.url!r})"

    # -- routes ----------------------------------------------------------------------------

    def info(self) -> ServerInfo:
        data = self._json("GET", "/info")
        try:
            info = ServerInfo(
                protocol=int(data["protocol"]),
                version=str(data["version"]),
                ready=bool(data["ready"]),
                device=str(data["device"]),
                dtype=str(data["dtype"]),
                label=str(data["label"]),
                error=str(data.get("error") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerError(f"{self._who()} sent an info reply without {exc}") from None
        if info.protocol != PROTOCOL:
            raise ServerError(
                f"{self._who()} speaks protocol {info.protocol} (ldstudio {info.version}); this "
                f"ldstudio speaks protocol {PROTOCOL}: use the same version on both machines"
            )
        return info

    def models(self) -> ServerModels:
        data = self._json("GET", "/models")
        lists: dict[str, tuple[ServerModel, ...]] = {}
        for name in MODEL_LISTS:
            items = data.get(name, [])
            if not isinstance(items, list):
                raise ServerError(f"{self._who()} sent a model list whose {name} is not a list")
            lists[name] = tuple(self._model(item, name) for item in items)
        return ServerModels(**lists)

    def has_blob(self, digest: str) -> bool:
        status, _data = self._call("HEAD", f"/blobs/{digest}", ok=(200, 404))
        return status == 200

    def put_blob(self, digest: str, data: bytes) -> None:
        self._call("PUT", f"/blobs/{digest}", data, "application/octet-stream", ok=(200, 201))

    def upload_blob(self, digest: str, data: bytes) -> bool:
        """Send a blob unless the server has it already; True when it was sent."""
        if self.has_blob(digest):
            return False
        self.put_blob(digest, data)
        return True

    def submit(self, portable_request: dict[str, Any]) -> int:
        """Queue a job (`ldstudio.core.request.to_portable` form); its job id on the server."""
        body = json.dumps({"request": portable_request}).encode("utf-8")
        data = self._json("POST", "/jobs", body, ok=(200, 202))
        job_id = data.get("job_id")
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise ServerError(f"{self._who()} accepted the job without a job id")
        return job_id

    def jobs(self) -> list[dict[str, Any]]:
        jobs = self._json("GET", "/jobs").get("jobs", [])
        if not isinstance(jobs, list):
            raise ServerError(f"{self._who()} sent a job list that is not a list")
        return jobs

    def cancel(self, job_id: int) -> bool:
        return bool(self._json("POST", f"/jobs/{job_id}/cancel", b"").get("cancelled"))

    def image(self, job_id: int, index: int) -> bytes:
        """The PNG bytes the server's library saved for the job's `index`-th image."""
        _status, data = self._call("GET", f"/jobs/{job_id}/images/{index}")
        return data

    def events(self, job_id: int) -> EventStream:
        """The job's events from its start, then live, until its final event."""
        connection = self._connect(self.stream_timeout)
        try:
            connection.request("GET", self._path(f"/jobs/{job_id}/events"), headers=self._headers())
            response = connection.getresponse()
        except BaseException as exc:
            connection.close()
            raise self._failure(exc, "GET", f"/jobs/{job_id}/events") from None
        if response.status != 200:
            data = response.read()
            connection.close()
            raise self._refusal(response.status, "GET", f"/jobs/{job_id}/events", data)
        return EventStream(self, connection, response)

    # -- plumbing --------------------------------------------------------------------------

    def _who(self) -> str:
        return f"the ldstudio server {self.url}"

    def _path(self, route: str) -> str:
        return self._base + PREFIX + quote(route)

    def _headers(self, content_type: str = "") -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return kind(self._host, self._port, timeout=timeout)

    def _call(
        self,
        method: str,
        route: str,
        body: bytes | None = None,
        content_type: str = "",
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes]:
        connection = self._connect(self.timeout)
        try:
            connection.request(method, self._path(route), body, self._headers(content_type))
            response = connection.getresponse()
            data = response.read()
        except BaseException as exc:
            raise self._failure(exc, method, route) from None
        finally:
            connection.close()
        if response.status not in ok:
            raise self._refusal(response.status, method, route, data)
        return response.status, data

    def _json(
        self, method: str, route: str, body: bytes | None = None, ok: tuple[int, ...] = (200,)
    ) -> dict[str, Any]:
        _status, data = self._call(method, route, body, "application/json" if body else "", ok)
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ServerError(f"{self._who()} answered {method} {route} with no JSON") from None
        if not isinstance(value, dict):
            raise ServerError(f"{self._who()} answered {method} {route} with no JSON object")
        return value

    def _model(self, item: Any, where: str) -> ServerModel:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ServerError(f"{self._who()} listed a {where} entry without a name")
        sha256 = item.get("sha256")
        return ServerModel(
            name=item["name"],
            kind=str(item.get("kind", "")),
            family=str(item.get("family", "")),
            sha256=sha256 if isinstance(sha256, str) and sha256 else None,
        )

    def _failure(self, exc: BaseException, method: str, route: str) -> BaseException:
        """The exception that says why a call got no answer (or `exc` itself when it is no
        network failure: a KeyboardInterrupt stays one)."""
        if isinstance(exc, TimeoutError):
            return ServerUnreachable(
                f"{self._who()} did not answer {method} {route} within {self.timeout:g} s"
            )
        if isinstance(exc, http.client.HTTPException):
            return ServerUnreachable(
                f"{self._who()} closed the connection during {method} {route} "
                f"({type(exc).__name__}: {exc or 'no reply'})"
            )
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc) or type(exc).__name__
            return ServerUnreachable(f"cannot reach {self._who()}: {reason}")
        return exc

    def _refusal(self, status: int, method: str, route: str, data: bytes) -> ServerError:
        detail = _detail(data)
        if status == 401:
            why = (
                "refused the user name and password"
                if self._auth
                else "asks for a user name and password"
            )
            return ServerError(
                f"{self._who()} {why} (Settings → Engine, or --server-auth user:pass)", status
            )
        if status == 422:
            return ServerError(f"{self._who()} refused the job: {detail}", status)
        return ServerError(
            f"{self._who()} answered {status} to {method} {route}" + (f": {detail}" * bool(detail)),
            status,
        )


def _detail(data: bytes) -> str:
    """A reply's `detail` (FastAPI's error field), else its text, shortened."""
    text = data.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        if isinstance(value, dict) and "detail" in value:
            detail = value["detail"]
            text = detail if isinstance(detail, str) else json.dumps(detail)
    return text if len(text) <= 500 else text[:497] + "..."


# What the reader thread hands over: an event, the end of the stream, or why it broke.
_END = object()


class EventStream:
    """A job's SSE stream, read on its own thread; `get()` the next event, `close()` it.

    `get` raises ServerUnreachable when the stream broke or ended before the job's final
    event; ServerError for a message it cannot decode.
    """

    def __init__(
        self,
        client: ServerClient,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
    ) -> None:
        self._client = client
        self._connection = connection
        self._response = response
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="ldstudio-remote-events")
        self._thread.daemon = True  # a window that must quit is never held by a dead server
        self._thread.start()

    def get(self, timeout: float) -> Event | None:
        """The next event, or None when none came within `timeout` seconds."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._queue.put(_END)  # every later get() says the same
            raise ServerUnreachable(
                f"{self._client._who()} closed the job's event stream before the job ended"
            )
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        event: Event = item
        return event

    def close(self) -> None:
        """Stop reading; the reader thread closes the connection as it ends."""
        self._closed.set()
        sock = self._connection.sock
        if sock is not None:
            # Wakes the reader thread out of its blocking read at once.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _read(self) -> None:
        who = self._client._who()
        name, data = "", list[str]()
        # Exactly one last item: _END, or the exception that ended the stream.
        last: Any = _END
        try:
            while not self._closed.is_set():
                raw = self._response.readline()
                if not raw:
                    break
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:  # a blank line ends one message
                    if data:
                        self._queue.put(self._decode(name, "\n".join(data)))
                    name, data = "", list[str]()
                elif line.startswith(":"):
                    continue  # a keepalive comment
                else:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
        except TimeoutError:
            last = ServerUnreachable(
                f"{who} sent nothing for {self._client.stream_timeout:g} s during the job "
                "(not even its keepalive): it stopped answering"
            )
        except (OSError, http.client.HTTPException, UnicodeDecodeError) as exc:
            last = ServerUnreachable(
                f"{who} broke off the job's event stream ({type(exc).__name__}: {exc})"
            )
        except ServerError as exc:
            last = exc
        finally:
            self._connection.close()
        if self._closed.is_set():
            last = _END  # closed on purpose: whatever the read raised is no news
        self._queue.put(last)

    def _decode(self, name: str, text: str) -> Event:
        try:
            event = decode_event(json.loads(text))
        except ValueError as exc:  # json's errors are ValueErrors too
            raise ServerError(
                f"{self._client._who()} sent an event ldstudio cannot read: {exc}"
            ) from None
        if name and name != type(event).__name__:
            raise ServerError(
                f"{self._client._who()} sent an event named {name} holding a {type(event).__name__}"
            )
        return event
