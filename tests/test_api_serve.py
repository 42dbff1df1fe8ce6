"""`ldstudio serve` as users start it: a subprocess on a free loopback port, the real engine
built by its factory on the worker, one A1111 job into the --library given, Ctrl+C to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests
from api_support import decode_png, free_port, wait_until_ready

from ldstudio.core.library import LibraryStore


def test_serve_subprocess_generates_into_its_library(tmp_path: Path) -> None:
    port = free_port()
    library = tmp_path / "served-library"
    command = [sys.executable, "-m", "ldstudio", "serve", "--port", str(port)]
    command += ["--library", str(library), "--device", "cpu"]
    log = tmp_path / "serve.log"  # a file, not a pipe: uvicorn's access log must never block
    process = subprocess.Popen(
        command, env=dict(os.environ), stderr=log.open("wb"), stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, log, 120)
        body = {"prompt": "a red circle", "seed": 3, "steps": 2, "width": 64, "height": 64}
        reply = requests.post(url + "/sdapi/v1/txt2img", json=body, timeout=300)
        assert reply.status_code == 200, reply.text
        assert json.loads(reply.json()["info"])["all_seeds"] == [3]
        assert decode_png(reply.json()["images"][0]).size == (64, 64)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
    assert code == 130  # Ctrl+C, as every ldstudio command reports it
    with LibraryStore(library, reconcile=False) as store:
        assert store.count() == 1
        assert not store.crashed_before  # the server closed its library on the way out


def test_the_server_imports_neither_torch_nor_qt() -> None:
    """The routes answer while torch imports on the engine's worker (the factory imports it)."""
    code = (
        "import sys, ldstudio.api.server, ldstudio.cli.serve; "
        "bad = [m for m in ('torch', 'diffusers', 'PySide6') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_serve_is_a_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ldstudio", "serve", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for option in ("--host", "--port", "--api-auth", "--cors-allow-origins", "--insecure"):
        assert option in done.stdout
    assert "--library" in done.stdout
