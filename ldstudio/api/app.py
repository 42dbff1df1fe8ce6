"""The FastAPI app factory: both route families, HTTP Basic auth, CORS; the server's loop.

Auth is an ASGI layer in front of every route — /sdapi/v1, /ldstudio/v1 and FastAPI's own
/docs and /openapi.json — so no route can be added without it. CORS sits outside it: a
browser's preflight (which carries no credentials) is answered for the origins allowed, and
the request that follows must authenticate like any other.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ldstudio import __version__
from ldstudio.api import a1111, native
from ldstudio.api.context import ServerContext

Credentials = tuple[str, str]


def parse_credentials(text: str) -> Credentials:
    """`user:pass` as (user, pass); ValueError saying what is allowed."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(
            f"{text!r} is not USER:PASSWORD; allowed: a user name and a password joined by ':' "
            "(the password may contain ':')"
        )
    return user, password


def create_app(
    ctx: ServerContext,
    credentials: Credentials | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    app = FastAPI(
        title="ldstudio",
        version=__version__,
        description="ldstudio's engine over HTTP: the AUTOMATIC1111 API subset (/sdapi/v1) "
        "and ldstudio's own job protocol (/ldstudio/v1).",
    )
    app.state.ctx = ctx
    app.include_router(a1111.router)
    app.include_router(native.router)
    if credentials is not None:
        app.add_middleware(BasicAuth, credentials=credentials)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            allow_credentials=True,
        )
    return app


class BasicAuth:
    """401 with `WWW-Authenticate: Basic` unless the request carries the credentials."""

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self.app = app
        self._user = credentials[0].encode("utf-8")
        self._password = credentials[1].encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": "authentication required: this server runs with --api-auth"},
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="ldstudio"'},
        )
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Both compared, always: the time taken says nothing about which one was wrong.
        same_user = secrets.compare_digest(user, self._user)
        same_password = secrets.compare_digest(password, self._password)
        return bool(sep) and same_user and same_password
