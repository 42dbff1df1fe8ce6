"""`ldstudio serve`: the engine over HTTP — the AUTOMATIC1111 API subset and ldstudio's own
protocol (see ldstudio.api); main thread runs uvicorn, the engine runs on the service worker.

Loopback only by default: a server reachable from other machines without credentials would
let anyone there use this machine's GPU and read its library, so a non-loopback `--host`
needs `--api-auth USER:PASS` (or, knowingly, `--insecure`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ldstudio.cli.common import EXIT_FAILED, EXIT_OK, BadInput

if TYPE_CHECKING:
    from ldstudio.cluster.serving import ServeBackend, ServeOptions
    from ldstudio.core.library import LibraryStore

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the engine over HTTP (AUTOMATIC1111 API and ldstudio's own)",
        description="Serve the engine over HTTP: the AUTOMATIC1111 API (/sdapi/v1) that Open "
        "WebUI, SillyTavern and webuiapi speak, and ldstudio's own job protocol "
        "(/ldstudio/v1) for the window and `generate --server`. Images land in the library.",
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}, A1111's; 0: any free port)",
    )
    serve.add_argument(
        "--api-auth",
        default=None,
        metavar="USER:PASS",
        help="require HTTP Basic credentials on every route",
    )
    serve.add_argument(
        "--cors-allow-origins",
        action="append",
        default=[],
        metavar="ORIGINS",
        help="browser origins allowed to call the API, comma-separated (repeatable), e.g. "
        "http://localhost:3000",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without --api-auth (anyone who reaches it can use it)",
    )
    serve.add_argument(
        "--library", default=None, metavar="DIR", help="library folder (default: the app's)"
    )
    serve.add_argument("--device", default="auto", help="auto (default), cuda, mps or cpu")
    serve.add_argument("--dtype", default="auto", help="auto (default), fp16, bf16 or fp32")
    cluster = serve.add_argument_group(
        'on a Ray cluster (pip install "ldstudio[cluster]"): the same API, jobs run on Ray '
        "Serve replicas, one per GPU; images are saved in this machine's library"
    )
    cluster.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help='the Ray cluster: "auto" (the cluster this machine is in), ray://HOST:10001 or '
        "HOST:6379, or local (start one on this machine)",
    )
    cluster.add_argument(
        "--ray-min-replicas",
        type=int,
        default=1,
        metavar="N",
        help="with --ray: replicas kept while idle (default 1; 0 holds no GPU when idle, and "
        "the next job waits for a replica to start)",
    )
    cluster.add_argument(
        "--ray-max-replicas",
        type=int,
        default=None,
        metavar="N",
        help="with --ray: the most replicas (jobs at once); default one per GPU in the cluster",
    )
    cluster.add_argument(
        "--ray-models-per-replica",
        type=int,
        default=1,
        metavar="N",
        help="with --ray: models a replica keeps loaded (default 1); jobs go to a replica "
        "that holds their model",
    )
    cluster.add_argument(
        "--ray-app",
        default="ldstudio",
        metavar="NAME",
        help="with --ray: the Serve application's name (default ldstudio); each server "
        "sharing a cluster needs its own",
    )
    serve.set_defaults(handler=run_serve)


def serve_options(args: argparse.Namespace) -> ServeOptions | None:
    """The cluster's ServeOptions for --ray (checked), else None; refuses --ray-* without it."""
    if args.ray is None:
        given = [
            flag
            for flag, value, default in (
                ("--ray-min-replicas", args.ray_min_replicas, 1),
                ("--ray-max-replicas", args.ray_max_replicas, None),
                ("--ray-models-per-replica", args.ray_models_per_replica, 1),
                ("--ray-app", args.ray_app, "ldstudio"),
            )
            if value != default
        ]
        if given:
            raise BadInput(f"{given[0]}: only with --ray (it sets up the cluster's replicas)")
        return None
    if args.device != "auto":
        raise BadInput(
            f"--device {args.device}: with --ray each replica uses its own GPU (or a CPU on a "
            "cluster without GPUs); leave --device out"
        )
    try:
        from ldstudio.cluster.serving import ServeOptions
    except ImportError as exc:
        raise BadInput(
            f'--ray: Ray is not installed ({exc}); install it with pip install "ldstudio[cluster]"'
        ) from None
    try:
        return ServeOptions(
            min_replicas=args.ray_min_replicas,
            max_replicas=args.ray_max_replicas,
            models_per_replica=args.ray_models_per_replica,
            dtype=args.dtype,
            app=args.ray_app,
        ).validate()
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def run_serve(args: argparse.Namespace) -> int:
    from ldstudio.api.app import parse_credentials
    from ldstudio.api.server import is_loopback

    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port: {args.port} is out of range; allowed: 0 (any free) to 65535")
    credentials = None
    if args.api_auth is not None:
        try:
            credentials = parse_credentials(args.api_auth)
        except ValueError as exc:
            raise BadInput(f"--api-auth: {exc}") from None
    if not is_loopback(args.host) and credentials is None and not args.insecure:
        raise BadInput(
            f"--host {args.host}: not a loopback address, so other machines could reach this "
            "server, and without credentials anyone there could generate on this machine and "
            "read its library. Give --api-auth USER:PASS, or --insecure to serve without "
            "credentials anyway"
        )
    origins = [o.strip() for text in args.cors_allow_origins for o in text.split(",") if o.strip()]
    cluster = serve_options(args)
    from ldstudio.core.options import EngineOptions

    try:
        options = EngineOptions(device=args.device, dtype=args.dtype).validate()
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    from ldstudio.cli.library import open_library
    from ldstudio.core.library import IndexDamaged
    from ldstudio.core.settings import load_settings

    root = Path(args.library).expanduser() if args.library else load_settings().library_dir()
    if root.exists() and not root.is_dir():
        raise BadInput(f"--library: {str(root)!r} is a file; give a folder")
    try:
        library = open_library(root)
    except IndexDamaged as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    from ldstudio.api.server import build_context, serve
    from ldstudio.core.backend import Backend

    deployed = None
    if cluster is not None:
        try:
            deployed = _deploy(args.ray, cluster, library)  # before the server answers
        except BadInput:
            library.close()
            raise

    def factory() -> Backend:
        if deployed is not None:
            return deployed
        # On the engine worker: torch is imported there, while uvicorn already answers.
        from ldstudio.engine.backend import DiffusersBackend

        return DiffusersBackend(options, blobs=library.blobs)

    ctx = build_context(factory, library)
    sys.stderr.write(
        f"ldstudio serve: library {library.root}; A1111 API at /sdapi/v1, ldstudio's at "
        f"/ldstudio/v1{'; credentials required' if credentials else ''}\n"
    )
    try:
        serve(ctx, args.host, args.port, credentials, origins)
    finally:
        library.close()
    return EXIT_OK


def _deploy(address: str, options: ServeOptions, library: LibraryStore) -> ServeBackend:
    """Join the cluster and deploy the engine on it: a bad address or a refused deployment is
    reported here, once, before the server starts answering."""
    from ldstudio.cluster.data import ADDRESS_HELP
    from ldstudio.cluster.serving import ServeBackend

    where = None if address == "local" else address
    sys.stderr.write(f"ldstudio serve: deploying the engine on the Ray cluster at {address}…\n")
    try:
        backend = ServeBackend(where, options, blobs=library.blobs)
    except ValueError as exc:
        raise BadInput(str(exc)) from None  # it names the option already
    except (ConnectionError, RuntimeError) as exc:
        raise BadInput(
            f"--ray: cannot deploy on the Ray cluster at {address}: {exc}; allowed addresses: "
            f"{ADDRESS_HELP}, or local"
        ) from None
    sys.stderr.write(f"ldstudio serve: {backend.choice.label}\n")
    return backend
