"""The server settings and the client's refusals that need no server: URLs, logins, the
password kept out of logs and reprs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ldstudio.core.settings import (
    ENGINE_SERVER,
    ServerTarget,
    Settings,
    load_settings,
    save_settings,
    server_url_problem,
)
from ldstudio.remote.client import ServerClient, ServerError, ServerModel, ServerModels
from ldstudio.remote.references import ServerResources


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:7860", "https://gpu-box", "http://[::1]:7860/", "http://h/sub/path"]
)
def test_good_server_urls(url: str) -> None:
    assert server_url_problem(url) == ""
    assert ServerClient(url).url == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "server URL: empty"),
        ("gpu-box:7860", "has no http:// or https:// scheme"),
        ("ftp://gpu-box", "has no http:// or https:// scheme"),
        ("http://", "names no host"),
        ("http://host:99999", "is not valid"),
        ("http://host:0", "has port 0"),
        ("http://bob:pw@host", "credentials in it"),
        ("http://host/?x=1", "a query"),
    ],
)
def test_bad_server_urls_say_what_is_allowed(url: str, message: str) -> None:
    problem = server_url_problem(url)
    assert message in problem and "allowed: http://host:port" in problem
    with pytest.raises(ValueError, match="allowed: http://host:port"):
        ServerClient(url)


def test_server_target_checks_the_login() -> None:
    with pytest.raises(ValueError, match="server user: empty, but a password is given"):
        ServerTarget("http://h", "", "pw").validate()
    with pytest.raises(ValueError, match="has a ':'"):
        ServerTarget("http://h", "a:b", "pw").validate()
    assert "pw" not in repr(ServerTarget("http://h", "ann", "pw"))


def test_settings_keep_the_server_and_switch_back(ldstudio_home: Path) -> None:
    settings = Settings()
    settings.set_server_target(ServerTarget(" http://gpu:7860 ", "ann", "s3cret"))
    save_settings(settings)
    loaded = load_settings()
    assert loaded.engine == ENGINE_SERVER
    assert loaded.server_target() == ServerTarget("http://gpu:7860", "ann", "s3cret")
    assert "s3cret" not in repr(loaded)
    loaded.set_server_target(None)
    assert loaded.server_target() is None and loaded.server_url == "http://gpu:7860"


def test_a_bad_saved_password_is_dropped_without_showing_it(ldstudio_home: Path) -> None:
    ldstudio_home.mkdir(parents=True, exist_ok=True)
    (ldstudio_home / "settings.json").write_text(
        json.dumps({"engine": "cloud", "server_password": 123456789})
    )
    settings = load_settings()
    [problem] = settings.load_problems
    assert "engine" in problem and "allowed: one of local, server" in problem
    assert "server_password (value not shown" in problem and "123456789" not in problem
    assert settings.engine == "local" and settings.server_password == ""


def test_an_invalid_saved_url_means_no_server() -> None:
    settings = Settings(engine=ENGINE_SERVER, server_url="gpu-box")
    assert settings.uses_server and settings.server_target() is None


def test_names_resolve_to_the_servers_models() -> None:
    models = ServerModels(
        checkpoints=(
            ServerModel("ldstudio-shapes", "diffusers", "sd1", None),
            ServerModel("dreamy", "checkpoint", "sd1", "a" * 64),
        ),
        loras=(ServerModel("fur", "lora", "sd1", "b" * 64),),
    )
    resources = ServerResources(models)
    ref = resources.reference(Path("dreamy"), "diffusers")  # kind as a request guesses it
    assert (ref.kind, ref.name, ref.sha256) == ("checkpoint", "dreamy", "a" * 64)
    assert resources.find("fur.safetensors", "lora") == models.loras[0]
    assert resources.find("FUR", "lora") == models.loras[0]
    with pytest.raises(ValueError, match="neither here nor on the server"):
        resources.reference(Path("missing"), "lora")


def test_a_closed_port_is_unreachable_naming_the_server() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ServerError, match=f"cannot reach the ldstudio server {url}"):
        ServerClient(url, timeout=2).info()
