"""`ldstudio generate --server URL`: the same job run on an `ldstudio serve` server, its images
saved here as a local job's are; the options and the model names it takes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ldstudio.cli.common import BadInput
from ldstudio.core.models import KIND_CHECKPOINT, KIND_DIFFUSERS, KIND_LORA, KIND_VAE
from ldstudio.core.options import EngineOptions

if TYPE_CHECKING:
    from ldstudio.core.backend import BlobSource
    from ldstudio.remote.backend import RemoteBackend
    from ldstudio.remote.client import ServerClient, ServerModels

AUTH_ENV = "LDSTUDIO_SERVER_AUTH"
_KIND_LISTS = {
    KIND_CHECKPOINT: "checkpoints",
    KIND_DIFFUSERS: "checkpoints",
    KIND_VAE: "vaes",
    KIND_LORA: "loras",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run on an ldstudio server (`ldstudio serve`)")
    group.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help="run the job on this server, e.g. http://gpu-box:7860; the images are saved here "
        "as usual. --model, --vae and --lora then name the server's models",
    )
    group.add_argument(
        "--server-auth",
        default=None,
        metavar="USER:PASS",
        help=f"the server's --api-auth credentials (or set {AUTH_ENV}, which keeps the password "
        "out of the process list)",
    )


def client_from_args(args: argparse.Namespace) -> ServerClient | None:
    """The server client --server asks for, or None; BadInput for a bad URL or --server-auth."""
    auth = args.server_auth if args.server_auth is not None else os.environ.get(AUTH_ENV)
    if args.server is None:
        if args.server_auth is not None:
            raise BadInput("--server-auth: only with --server URL (the server it logs in to)")
        return None
    from ldstudio.remote.client import ServerClient

    user = password = ""
    if auth:
        user, sep, password = auth.partition(":")
        if not sep or not user:
            raise BadInput("--server-auth: expected USER:PASS, e.g. alice:s3cret")
    try:
        return ServerClient(args.server, user, password)
    except ValueError as exc:
        raise BadInput(f"--server: {exc}") from None


def refuse_engine_options(options: EngineOptions) -> None:
    """The server runs with its own engine options: asking for others here would be ignored."""
    chosen = {
        name: value
        for name, value in options.to_dict().items()
        if value != getattr(EngineOptions(), name)
    }
    if chosen:
        names = ", ".join(f"{name} {value}" for name, value in chosen.items())
        raise BadInput(
            f"--server: the server runs with its own device and engine options; leave out "
            f"{names} (set them where `ldstudio serve` runs)"
        )


class ServerNames:
    """Resolves --model/--vae/--lora as a job for the server needs them: a file here as its
    path (sent as name + hash), else the name of one of the server's models."""

    def __init__(self, client: ServerClient) -> None:
        self.client = client
        self._models: ServerModels | None = None

    def resolve_reference(self, text: str, kinds: tuple[str, ...], what: str) -> Path:
        from ldstudio.remote.references import ServerResources

        path = Path(text).expanduser()
        if path.exists():
            return path.resolve()
        if self._models is None:
            # A ServerError (unreachable, refused) is no bad input: run_generate says so.
            self._models = self.client.models()
        resources = ServerResources(self._models)
        for kind in kinds:
            found = resources.find(text, kind)
            if found is not None:
                return Path(found.name)
        lists = {_KIND_LISTS[kind] for kind in kinds if kind in _KIND_LISTS}
        names = sorted({entry.name for name in lists for entry in getattr(self._models, name)})
        allowed = ", ".join(names) if names else "none"
        raise ValueError(
            f"{what}: {text!r} is neither a file here nor a model on the server "
            f"{self.client.url}; allowed: {allowed}"
        )


def backend(client: ServerClient, blobs: BlobSource) -> RemoteBackend:
    from ldstudio.remote.backend import RemoteBackend

    return RemoteBackend(client, blobs=blobs)
