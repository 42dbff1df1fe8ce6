"""`ldstudio generate --server URL`: the job runs on a real `ldstudio serve` (the fake backend
behind it) and its images land in the local library, printed as a local run prints them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from api_support import running_server
from PIL import Image

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from ldstudio.core.library import LibraryStore
from ldstudio.core.settings import load_settings
from ldstudio.engine.fake import FakeBackend


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def server(fake: FakeBackend, tmp_path: Path):
    with running_server(fake, tmp_path / "server-library", credentials=("bob", "pw")) as running:
        yield running


def generate(*args: str) -> int:
    return main(["generate", "a red fox", "--steps", "2", "--size", "64x64", *args])


def test_generate_on_a_server_saves_into_the_local_library(server, capsys) -> None:
    code = generate(
        "--seed", "5", "--count", "2", "--server", server.url, "--server-auth", "bob:pw"
    )
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    paths = [Path(line) for line in captured.out.split()]
    library_root = load_settings().library_dir()
    assert len(paths) == 2 and all(p.is_relative_to(library_root) and p.is_file() for p in paths)
    assert "done: 2 image(s)" in captured.err
    with LibraryStore(library_root, reconcile=False) as library:
        assert library.count() == 2
    assert server.saved() == 2
    with Image.open(paths[0]) as image:
        assert "Seed: 5" in image.text["parameters"]


def test_generate_on_a_server_json(server, capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = generate(
        "--seed",
        "9",
        "--json",
        "--out",
        str(out),
        "--server",
        server.url,
        "--server-auth",
        "bob:pw",
    )
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    payload = json.loads(captured.out)
    assert payload["status"] == "finished" and payload["device"] == "cpu"
    [image] = payload["images"]
    assert image["seed"] == 9 and Path(image["path"]).parent == out


def test_server_models_are_named_and_checked_up_front(server, capsys) -> None:
    auth = ("--server", server.url, "--server-auth", "bob:pw")
    assert generate("--model", "ldstudio-shapes", *auth) == EXIT_OK
    capsys.readouterr()
    assert generate("--model", "nope", *auth) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--model: 'nope' is neither a file here nor a model on the server" in err
    assert "allowed: ldstudio-shapes" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--server", "gpu-box:7860"), "--server: server URL: 'gpu-box:7860' has no http://"),
        (("--server-auth", "a:b"), "--server-auth: only with --server URL"),
        (("--server", "http://127.0.0.1:9", "--server-auth", "nocolon"), "expected USER:PASS"),
        (("--server", "http://127.0.0.1:9", "--device", "cuda"), "leave out device cuda"),
    ],
)
def test_bad_server_options_are_refused(args: tuple[str, ...], message: str, capsys) -> None:
    assert generate(*args) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_wrong_credentials_and_an_unreachable_server_fail_naming_it(server, capsys) -> None:
    assert generate("--server", server.url) == EXIT_FAILED
    assert f"The ldstudio server {server.url} asks for a user name" in capsys.readouterr().err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert generate("--server", url) == EXIT_FAILED
    assert f"Cannot reach the ldstudio server {url}" in capsys.readouterr().err
