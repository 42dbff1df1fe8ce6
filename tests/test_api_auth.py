"""Auth and exposure: with --api-auth every route (both families, /docs, /openapi.json) is 401
without the credentials; CORS preflights are answered for the allowed origins; a non-loopback
bind without credentials refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_support import running_server

from ldstudio.cli import main
from ldstudio.engine.fake import FakeBackend

CREDENTIALS = ("user", "s3cret:with-colon")


@pytest.fixture
def server(tmp_path: Path):
    origins = ("http://localhost:3000",)
    with running_server(FakeBackend(), tmp_path / "library", CREDENTIALS, origins) as running:
        yield running


def every_route(server) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, path parameters filled in: the API's
    (from its OpenAPI schema) and FastAPI's own documentation pages."""
    routes = [("GET", path) for path in ("/docs", "/redoc", "/openapi.json")]
    for path, operations in server.app.openapi()["paths"].items():
        filled = path.replace("{job_id}", "1").replace("{index}", "0")
        filled = filled.replace("{digest}", "0" * 64)
        routes += [(method.upper(), filled) for method in operations]
    return routes


def test_every_route_needs_the_credentials(server) -> None:
    routes = every_route(server)
    paths = {path for _m, path in routes}
    assert {"/docs", "/openapi.json", "/sdapi/v1/txt2img", "/ldstudio/v1/jobs"} <= paths
    assert len(routes) > 25
    for method, path in routes:
        for auth in (None, ("user", "wrong"), ("nobody", CREDENTIALS[1])):
            reply = server.http.request(method, server.url + path, auth=auth, timeout=30)
            assert reply.status_code == 401, (method, path, auth)
            assert reply.headers["www-authenticate"].startswith("Basic")
    # An empty Authorization header (what Open WebUI sends without credentials) is none.
    reply = server.http.get(server.url + "/sdapi/v1/options", headers={"authorization": ""})
    assert reply.status_code == 401
    reply = server.http.get(server.url + "/sdapi/v1/options", auth=CREDENTIALS, timeout=30)
    assert reply.status_code == 200
    assert server.saved() == 0


def test_cors_preflight_for_allowed_origins_only(server) -> None:
    headers = {
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    reply = server.http.options(server.url + "/sdapi/v1/txt2img", headers=headers, timeout=30)
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "http://localhost:3000"
    other = {**headers, "Origin": "http://evil.example"}
    reply = server.http.options(server.url + "/sdapi/v1/txt2img", headers=other, timeout=30)
    assert "access-control-allow-origin" not in reply.headers


def test_no_auth_needed_on_loopback_without_api_auth(tmp_path: Path) -> None:
    with running_server(FakeBackend(), tmp_path / "library") as server:
        assert server.get("/sdapi/v1/options").status_code == 200
        # Open WebUI sends `authorization: ''` when it has no credentials configured.
        headers = {"authorization": ""}
        assert server.get("/sdapi/v1/sd-models", headers=headers).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_non_loopback_without_auth_refuses_to_start(host: str, capsys) -> None:
    assert main(["serve", "--host", host, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"--host {host}: not a loopback address" in err
    assert "--api-auth USER:PASS" in err and "--insecure" in err


@pytest.mark.parametrize("value", ["user", ":pass", "user:", ""])
def test_bad_api_auth_is_bad_input(value: str, capsys) -> None:
    assert main(["serve", "--api-auth", value, "--port", "0"]) == 2
    assert "--api-auth:" in capsys.readouterr().err


def test_loopback_hosts() -> None:
    from ldstudio.api.server import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "myhost.local"]))
