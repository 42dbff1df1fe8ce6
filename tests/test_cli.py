"""`ldstudio generate` end to end in a subprocess, and its input checking in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ldstudio import __version__
from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT
from ldstudio.core.metadata import read_ldstudio_params


def ldstudio(*args: str, home: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "LDSTUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ldstudio", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_generate_json_end_to_end(tiny_model, tmp_path, ldstudio_home) -> None:
    out, previews = tmp_path / "out", tmp_path / "previews"
    proc = ldstudio(
        "generate",
        "a red circle",
        "--model",
        str(tiny_model),
        "--steps",
        "4",
        "--seed",
        "77",
        "--batch",
        "2",
        "--out",
        str(out),
        "--preview-dir",
        str(previews),
        "--json",
        home=ldstudio_home,
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["status"] == "finished" and result["device"] == "cpu"
    assert result["dtype"] == "fp32" and result["seconds"] > 0
    assert [image["seed"] for image in result["images"]] == [77, 78]
    for image in result["images"]:
        path = Path(image["path"])
        assert path.parent == out and path.suffix == ".png"
        params = read_ldstudio_params(path)
        assert params.seed == image["seed"] and params.steps == 4 and params.width == 64
    assert len(list(previews.glob("*.png"))) == 4 == result["previews_written"]
    assert "generating 2 image(s) 64x64, 4 steps" in stderr


def test_out_file_and_default_into_the_library(tiny_model, tmp_path, ldstudio_home) -> None:
    target = tmp_path / "cat.png"
    proc = ldstudio(
        "generate",
        "a cat",
        "--model",
        str(tiny_model),
        "--steps",
        "2",
        "--out",
        str(target),
        home=ldstudio_home,
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == str(target) and target.exists()

    proc = ldstudio(
        "generate", "a dog", "--model", str(tiny_model), "--steps", "1", home=ldstudio_home
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    saved = Path(stdout.strip())
    assert saved.is_relative_to(ldstudio_home / "library" / "images")  # the app's library
    listed = subprocess.run(
        [sys.executable, "-m", "ldstudio", "library", "list", "--json"],
        env={**os.environ, "LDSTUDIO_HOME": str(ldstudio_home)},
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert str(saved) in listed.stdout


def test_ctrl_c_cancels_cleanly_with_exit_130(tiny_model, tmp_path, ldstudio_home) -> None:
    out, previews = tmp_path / "out", tmp_path / "previews"
    proc = ldstudio(
        "generate",
        "a slow one",
        "--model",
        str(tiny_model),
        "--steps",
        "150",
        "--size",
        "256x256",
        "--out",
        str(out),
        "--preview-dir",
        str(previews),
        "--json",
        home=ldstudio_home,
    )
    deadline = time.monotonic() + 240
    while not list(previews.glob("*.png")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert json.loads(stdout)["status"] == "cancelled"
    assert "cancelled at step" in stderr
    assert not out.exists() or list(out.iterdir()) == []  # no partial or temporary file


def test_runtime_failure_exits_1(tiny_model, tmp_path, ldstudio_home) -> None:
    broken = tmp_path / "broken"
    import shutil

    import numpy as np
    from safetensors.numpy import save_file

    shutil.copytree(tiny_model, broken)
    # A valid file of the wrong weights: it passes the checks made before loading (a damaged
    # header is bad input, exit 2; see test_models_damaged.py) and fails only in the loader.
    save_file(
        {"not.a.unet.weight": np.zeros(2, np.float16)},
        str(broken / "unet" / "diffusion_pytorch_model.safetensors"),
    )
    proc = ldstudio(
        "generate", "x", "--model", str(broken), "--steps", "1", "--json", home=ldstudio_home
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert json.loads(stdout)["status"] == "failed"
    assert str(broken) in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "steps: 0 is out of range; allowed: 1 to 150"),
        (["--cfg", "31"], "guidance_scale: 31.0 is out of range; allowed: 0 to 30"),
        (["--size", "500x512"], "width: 500 is not a multiple of 8"),
        (["--size", "big"], "--size: 'big' is not WIDTHxHEIGHT"),
        (["--seed", "abc"], "--seed: 'abc' is not a number"),
        (["--seed", "-5"], "seed: -5 is out of range"),
        (["--scheduler", "Heun"], "allowed: Euler, Euler a"),
        (["--batch", "0"], "batch_size: 0 is out of range"),
        (["--out", "x.jpg"], "generate writes PNG"),
        (["--model", "/definitely/not/here"], "model not found: /definitely/not/here"),
        (["--device", "tpu"], "device: 'tpu' is not supported"),
        (["--preview", "fast", "--preview-dir", "p"], "preview_method: 'fast'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args, message, tiny_model, capsys) -> None:
    if "--model" not in args:
        args = [*args, "--model", str(tiny_model)]
    assert main(["generate", "a prompt", *args]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("ldstudio generate: error: ")
    assert message in err


def test_version_and_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ldstudio", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == f"ldstudio {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "ldstudio", "generate", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--preview-dir" in done.stdout


def test_progress_bar_on_a_terminal(tmp_path) -> None:
    import io

    import numpy as np

    from ldstudio.cli.generate import ProgressReporter
    from ldstudio.core.events import StepProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    reporter = ProgressReporter(stream, tmp_path / "previews")
    preview = np.zeros((8, 8, 3), np.uint8)
    reporter(StepProgress(1, 0, 5, 20, elapsed=2.5, it_per_s=2.0, preview=preview))
    text = stream.getvalue()
    assert "\r[" in text and "5/20" in text and "2.00 it/s" in text and "ETA 8s" in text
    assert len(list((tmp_path / "previews").glob("*.png"))) == 1
