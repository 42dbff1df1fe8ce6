"""`ldstudio serve --ray` as users start it (a subprocess that starts its own local Ray
cluster), and its options refused by name before anything starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from api_support import decode_png, free_port, wait_until_ready

from ldstudio.cli import main
from ldstudio.core.library import LibraryStore

pytest.importorskip("ray.serve")


def test_serve_with_ray_generates_on_the_cluster_into_this_library(tmp_path: Path) -> None:
    port = free_port()
    library = tmp_path / "served-library"
    command = [sys.executable, "-m", "ldstudio", "serve", "--port", str(port)]
    # No replica until the first job: Serve scales from zero when it arrives.
    command += ["--library", str(library), "--ray", "local", "--ray-min-replicas", "0"]
    command += ["--ray-max-replicas", "1"]
    log = tmp_path / "serve.log"  # a file, not a pipe: nothing may block on it
    process = subprocess.Popen(
        command, env=dict(os.environ), stderr=log.open("wb"), stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, log, 240)
        body = {"prompt": "a red circle", "seed": 5, "steps": 2, "width": 64, "height": 64}
        reply = requests.post(url + "/sdapi/v1/txt2img", json=body, timeout=300)
        assert reply.status_code == 200, reply.text
        assert json.loads(reply.json()["info"])["all_seeds"] == [5]
        assert decode_png(reply.json()["images"][0]).size == (64, 64)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(120)
    text = log.read_text()
    assert "Ray Serve at (local): 0–1 replica(s) on CPUs" in text, text
    assert code == 130, text
    with LibraryStore(library, reconcile=False) as store:
        assert store.count() == 1  # saved here, made on the cluster
        assert not store.crashed_before


@pytest.mark.parametrize(
    ("args", "fault"),
    [
        (["--ray-min-replicas", "2"], "--ray-min-replicas: only with --ray"),
        (["--ray-max-replicas", "2"], "--ray-max-replicas: only with --ray"),
        (["--ray-models-per-replica", "2"], "--ray-models-per-replica: only with --ray"),
        (["--ray-app", "mine"], "--ray-app: only with --ray"),
        (["--ray", "local", "--ray-app", "a b"], "--ray-app: 'a b'; allowed: letters"),
        (["--ray", "local", "--device", "cuda"], "--device cuda: with --ray each replica"),
        (["--ray", "local", "--ray-min-replicas", "-1"], "--ray-min-replicas: -1; allowed: 0"),
        (
            ["--ray", "local", "--ray-min-replicas", "3", "--ray-max-replicas", "2"],
            "--ray-max-replicas: 2 is below --ray-min-replicas 3",
        ),
    ],
)
def test_bad_cluster_options_are_refused_by_name(
    args: list[str], fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--library", str(tmp_path / "lib"), *args])
    assert code == 2
    assert fault in capsys.readouterr().err
    assert not (tmp_path / "lib").exists()  # refused before the library was made
