"""Damaged model files, folders and models.json through the CLI (issue 13): a clear message
naming the file, exit 2 where a command cannot go on, never a traceback, each within 2 s."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_models_scan import checkpoint_tensors, write_header, write_safetensors, zeros

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_OK
from ldstudio.core import paths
from ldstudio.core.models import read_safetensors_header
from ldstudio.core.models import safetensors as headers

NOT_VALID = "not a valid .safetensors file"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    started = time.perf_counter()
    code = main(args)
    assert time.perf_counter() - started < 2.0, args
    out, err = capsys.readouterr()
    return code, out, err


def diffusers_folder(folder: Path, unet_weights: bytes | None = None) -> Path:
    """The files check_diffusers_folder reads, with a damaged UNet weights header if given."""
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet"]}
    index["vae"] = ["diffusers", "AutoencoderKL"]
    for name in ("unet", "vae"):
        (folder / name).mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "unet" / "config.json").write_text('{"cross_attention_dim": 768}', encoding="utf-8")
    if unet_weights is not None:
        write_header(folder / "unet" / "diffusion_pytorch_model.safetensors", unet_weights)
    return folder


@pytest.fixture
def damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    folder = tmp_path / "models"
    folder.mkdir()
    write_header(folder / "deep.safetensors", b"[" * 100_000 + b"]" * 100_000)
    write_header(folder / "deepmap.safetensors", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    with (folder / "huge.safetensors").open("wb") as handle:  # sparse
        handle.write(struct.pack("<Q", 99_000_000))
        handle.truncate(8 + 99_000_000)
    body = ",".join(
        f'"{i:x}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'
        for i in range(headers.MAX_TENSORS + 1)
    )
    write_header(folder / "many.safetensors", ("{" + body + "}").encode())
    diffusers_folder(folder / "bad-unet", b"[" * 100_000 + b"]" * 100_000)
    broken_index = diffusers_folder(folder / "deep-index")
    (broken_index / "model_index.json").write_text("[" * 100_000 + "]" * 100_000)
    broken_config = diffusers_folder(folder / "odd-config")
    (broken_config / "unet" / "config.json").write_text('{"cross_attention_dim": {"a": []}}')
    empty_spec = diffusers_folder(folder / "empty-spec")
    (empty_spec / "model_index.json").write_text('{"unet": [], "vae": ["diffusers", "x"]}')
    write_safetensors(folder / "ink.safetensors", {"x.lora_down.weight": zeros(2)})
    return folder


def test_models_add_folder_and_list_report_damaged_files(
    damaged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["models", "add-folder", str(damaged)], capsys)
    assert (code, err) == (EXIT_OK, "")
    assert "9 model file(s), 3 usable" in out  # ink, odd-config (custom), empty-spec
    code, out, err = run(["models", "list"], capsys)
    assert code == EXIT_OK and "Traceback" not in out + err
    problems = {
        line.split(": ", 2)[1]: line for line in out.splitlines() if line.startswith("error")
    }
    for name, words in (
        ("deep.safetensors", "nested too deeply"),
        ("deepmap.safetensors", "nested too deeply"),
        ("huge.safetensors", "its header is 99000000 bytes"),
        ("many.safetensors", f"describes {headers.MAX_TENSORS + 1} tensors"),
    ):
        line = problems[str(damaged / name)]
        assert NOT_VALID in line and words in line, line
    assert "nested too deeply" in problems[str(damaged / "bad-unet")]
    assert "nested too deeply" in problems[str(damaged / "deep-index")]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("deep.safetensors", "nested too deeply"),
        ("huge.safetensors", "ldstudio reads headers of up to 32 MB"),
        ("many.safetensors", "tensors; ldstudio reads files of up to 50000"),
        ("bad-unet", "unet/diffusion_pytorch_model.safetensors: " + NOT_VALID),
        ("deep-index", "model_index.json is not valid JSON (nested too deeply)"),
    ],
)
def test_generate_refuses_damaged_models_before_loading(
    damaged: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, words: str
) -> None:
    args = ["generate", "x", "--model", str(damaged / name), "--out", str(tmp_path / "out")]
    code, _out, err = run(args, capsys)
    assert code == EXIT_BAD_INPUT
    assert err.startswith("ldstudio generate: error: ") and str(damaged / name) in err
    assert words in err, err
    assert not (tmp_path / "out").exists()


def test_the_model_check_imports_no_torch(tmp_path: Path) -> None:
    """A damaged file is refused before torch is imported: in milliseconds, not seconds."""
    bad = write_header(tmp_path / "deep.safetensors", b"[" * 100_000 + b"]" * 100_000)
    script = (
        "import sys; from ldstudio.cli import main\n"
        f"code = main(['generate', 'x', '--model', {str(bad)!r}, '--out', {str(tmp_path)!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LDSTUDIO_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert NOT_VALID in done.stderr and "Traceback" not in done.stderr


def test_symlink_loops_via_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "loops"
    write_safetensors(folder / "dream.safetensors", checkpoint_tensors("sd1"))
    for i in range(8):
        (folder / f"self{i}").symlink_to(".")
    code, out, _ = run(["models", "add-folder", str(folder)], capsys)
    assert code == EXIT_OK and "1 model file(s), 1 usable" in out
    code, out, _ = run(["models", "list", "--json", "--no-hf-cache"], capsys)
    assert [m["name"] for m in json.loads(out)["models"]] == ["dream"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "not valid JSON (nested too deeply); fix or delete it"),
        ('{"folders": 5}', '"folders" must be a list of folder paths'),
        ('{"folders": [5]}', '"folders" must be a list of folder paths'),
        ('{"variants": ["sd2-v"]}', '"variants" must map file paths to config names'),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_damaged_models_json_is_named_not_a_traceback(
    ldstudio_home: Path, capsys: pytest.CaptureFixture[str], text: str | bytes, words: str
) -> None:
    ldstudio_home.mkdir(parents=True)
    store = ldstudio_home / "models.json"
    store.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = store.read_bytes()
    code, _out, err = run(["models", "list", "--no-hf-cache"], capsys)
    assert code == EXIT_BAD_INPUT
    assert f"{store}: " in err and words in err, err
    assert store.read_bytes() == before  # the user's file is left as it was


def test_real_safetensors_files_are_accepted() -> None:
    """Files written by safetensors itself: the bundled model's weights."""
    weights = sorted(paths.bundled_model_dir().rglob("*.safetensors"))
    assert len(weights) == 3
    for path in weights:
        assert read_safetensors_header(path).tensors


def test_a_models_json_folder_is_named_not_a_traceback(
    ldstudio_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (ldstudio_home / "models.json").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    code, _out, err = run(["models", "add-folder", str(tmp_path / "models")], capsys)
    assert code == EXIT_BAD_INPUT
    assert f"{ldstudio_home / 'models.json'}: cannot be read (Is a directory)" in err
    assert (ldstudio_home / "models.json").is_dir()
