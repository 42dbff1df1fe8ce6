"""Bad command-line input is refused up front with exit 2 and a message naming what is wrong
and what is allowed; nothing the user already has is lost. In process, on the bundled model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_OK
from ldstudio.core import paths
from ldstudio.core.metadata import read_ldstudio_params

SQLITE_MAX = str(2**63 - 1)
HUGE = "99999999999999999999999"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """stderr of a command that must exit 2 with ldstudio's own message, not a traceback."""
    code, _out, err = run(capsys, *argv)
    assert code == EXIT_BAD_INPUT, err
    assert err.startswith(f"ldstudio {argv[0]}: error: "), err
    return err


def tensors(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(path))
    return path


def vae_file(path: Path) -> Path:
    zero = np.zeros(1, np.float32)
    return tensors(path, **{"encoder.conv_in.weight": zero, "decoder.conv_out.weight": zero})


def lora_file(path: Path, key: str) -> Path:
    return tensors(path, **{key: np.zeros((4, 768), np.float32)})


SD1_LORA_KEY = "lora_unet_down_0_attn2_to_k.lora_down.weight"
SDXL_LORA_KEY = "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"


def sd1_folder(path: Path) -> Path:
    """A diffusers folder the engine's pre-load check accepts and that reads as SD 1.x."""
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DCondition"]}))
    (path / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 768}))
    return path


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


# --- generate --out ---------------------------------------------------------------------------


def test_existing_out_file_is_refused_before_loading_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holiday = tmp_path / "holiday.png"
    Image.new("RGB", (8, 8), "red").save(holiday)
    original = holiday.read_bytes()
    err = refused(capsys, "generate", "a cat", "--steps", "1", "--out", str(holiday))
    assert (
        f"--out: {holiday} already exists; choose another name, or pass --overwrite to "
        "replace it" in err
    )
    assert "loading" not in err  # refused before any model was loaded
    assert holiday.read_bytes() == original


def test_overwrite_replaces_only_the_named_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holiday, second = tmp_path / "holiday.png", tmp_path / "holiday-2.png"
    Image.new("RGB", (8, 8), "red").save(holiday)
    Image.new("RGB", (8, 8), "blue").save(second)
    kept = second.read_bytes()
    code, out, err = run(
        capsys, "generate", "a cat", "--steps", "1", "--batch", "2", "--out", str(holiday),
        "--overwrite", "--seed", "5",
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert read_ldstudio_params(holiday).seed == 5  # replaced, as asked
    assert second.read_bytes() == kept  # the batch's second image took a free name instead
    written = [Path(line) for line in out.split()]
    assert written[0] == holiday and written[1] not in (holiday, second)


def test_overwrite_needs_an_out_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra in ([], ["--out", str(tmp_path / "folder")]):
        err = refused(capsys, "generate", "x", "--overwrite", *extra)
        assert "--overwrite: only with --out FILE.png" in err


def test_out_that_cannot_hold_files_is_refused_up_front(
    a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(capsys, "generate", "x", "--out", str(a_file / "x.png"))
    assert f"--out: {a_file} is a file, so x.png cannot go in it" in err
    err = refused(capsys, "generate", "x", "--out", str(a_file / "sub" / "x.png"))
    assert f"--out: cannot create the folder {a_file / 'sub'}: " in err
    assert "loading" not in err and "Generation failed" not in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_under_proc_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "generate", "x", "--out", "/proc/ldstudio-nope/x.png")
    assert "--out: cannot create the folder /proc/ldstudio-nope: No such file or directory" in err


# --- generate previews --------------------------------------------------------------------------


def test_bad_preview_method_is_refused_even_without_preview_dir(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = refused(capsys, "generate", "x", "--preview", "foo")
    assert "preview_method: 'foo' is not supported; allowed: latent2rgb, taesd, vae, none" in err


def test_preview_dir_that_cannot_be_a_folder_is_refused(
    tmp_path: Path, a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    err = refused(capsys, "generate", "x", "--preview-dir", str(a_file), "--out", str(out))
    assert f"--preview-dir: {a_file} is a file; give a folder" in err
    err = refused(capsys, "generate", "x", "--preview-dir", str(a_file / "p"), "--out", str(out))
    assert f"--preview-dir: cannot create the folder {a_file / 'p'}: " in err
    assert not out.exists()  # a refused run leaves no new folders


def test_taesd_without_a_tiny_decoder_is_refused_before_loading(
    tmp_path: Path, ldstudio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    previews = ["--preview", "taesd", "--preview-dir", str(tmp_path / "p")]
    err = refused(capsys, "generate", "x", *previews)  # the bundled model: no TAESD family
    assert "'taesd' has no tiny decoder for 'custom' models" in err
    model = sd1_folder(tmp_path / "sd1-model")
    err = refused(capsys, "generate", "x", "--model", str(model), *previews)
    folder = ldstudio_home / "models" / "taesd" / "taesd"
    assert f"--preview: 'taesd' needs TAESD weights for SD 1.x models in {folder}" in err
    assert "use 'latent2rgb' or 'vae'" in err


# --- generate --vae / --lora --------------------------------------------------------------------


def test_vae_and_lora_files_are_checked_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "pic.png"
    Image.new("RGB", (8, 8)).save(png)
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"not opened")
    vae, lora = (
        vae_file(tmp_path / "v.safetensors"),
        lora_file(tmp_path / "l.safetensors", SD1_LORA_KEY),
    )
    for args, message in (
        (["--vae", str(png)], f"--vae: {png}: ldstudio loads single-file models as .safetensors"),
        (["--vae", str(pickle)], "Python pickles"),
        (["--vae", str(lora)], f"--vae: {lora} is not a vae file (found a lora file)"),
        (["--vae", str(tmp_path)], f"--vae: {tmp_path} is a folder"),
        (["--lora", str(png)], "--lora: "),
        (["--lora", f"{vae}:0.5"], f"--lora: {vae} is not a lora file (found a vae file)"),
        (["--vae", str(vae)], "--vae: a standalone VAE needs an SD 1.x, SD 2.x or SDXL model"),
    ):
        err = refused(capsys, "generate", "x", *args)
        assert message in err, (args, err)
        assert "loading" not in err


def test_lora_for_another_family_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = sd1_folder(tmp_path / "sd1-model")
    xl = lora_file(tmp_path / "xl.safetensors", SDXL_LORA_KEY)
    err = refused(capsys, "generate", "x", "--model", str(model), "--lora", f"{xl}:0.7")
    assert f"--lora: {xl} is for SDXL models; the model {model} is SD 1.x" in err


def test_prompt_loras_are_checked_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(capsys, "generate", "a cat <lora:ghost:0.8>")
    assert "prompt: <lora:ghost>: 'ghost' is neither an existing path nor a known model" in err
    err = refused(capsys, "generate", "a cat <lora:ghost:strong>")
    assert "has strength 'strong'; allowed: a number" in err
    model = sd1_folder(tmp_path / "sd1-model")
    xl = lora_file(tmp_path / "xl.safetensors", SDXL_LORA_KEY)
    err = refused(capsys, "generate", f"a cat <lora:{xl}:0.5>", "--model", str(model))
    assert f"prompt: <lora:{xl}>: {xl} is for SDXL models; the model {model} is SD 1.x" in err
    png = tmp_path / "not-a-lora.safetensors"
    png.write_bytes(b"\x89PNG")
    err = refused(capsys, "generate", f"a cat <lora:{png}>")
    assert f"prompt: <lora:{png}>: " in err and "not a valid .safetensors file" in err


def test_lora_weight_that_is_not_a_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lora = lora_file(tmp_path / "ink.safetensors", SD1_LORA_KEY)
    err = refused(capsys, "generate", "x", "--lora", f"{lora}:abc")
    assert "--lora: weight 'abc' is not a number; allowed: PATH_OR_NAME:WEIGHT" in err
    assert "not found" not in err


def test_a_broken_default_model_names_itself(
    tmp_path: Path, ldstudio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    ldstudio_home.mkdir(parents=True, exist_ok=True)
    (ldstudio_home / "models.json").write_text(json.dumps({"default": str(empty)}))
    err = refused(capsys, "generate", "x")
    assert f"model {empty} is not a diffusers folder" in err
    assert "This is your default model" in err and "ldstudio models set-default" in err


# --- models -------------------------------------------------------------------------------------


def test_set_default_refuses_what_generate_cannot_load(
    tmp_path: Path, ldstudio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundled = paths.bundled_model_dir()
    assert run(capsys, "models", "set-default", str(bundled))[0] == EXIT_OK
    png = tmp_path / "pic.png"
    Image.new("RGB", (8, 8)).save(png)
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"never opened")
    text_encoder = tensors(tmp_path / "te.safetensors", **{"text_model.w": np.zeros(1)})
    empty = tmp_path / "empty"
    empty.mkdir()
    for target, message in (
        (png, f"{png}: ldstudio loads single-file models as .safetensors; .png is not supported"),
        (pickle, "are Python pickles"),
        (text_encoder, "found a text encoder on its own"),
        (vae_file(tmp_path / "vae.safetensors"), "found a vae file"),
        (empty, f"model {empty} is not a diffusers folder: model_index.json is missing"),
    ):
        err = refused(capsys, "models", "set-default", str(target))
        assert message in err, err
        assert f"the default model stays {bundled.resolve()}" in err
    saved = json.loads((ldstudio_home / "models.json").read_text())
    assert saved["default"] == str(bundled.resolve())  # untouched by the refusals
    assert run(capsys, "generate", "x", "--steps", "1", "--out", str(tmp_path / "o.png"))[0] == 0


def test_add_folder_twice_says_already_added(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    code, out, _ = run(capsys, "models", "add-folder", str(folder))
    assert code == EXIT_OK and out.startswith(f"added {folder}")
    code, out, _ = run(capsys, "models", "add-folder", str(folder))
    assert code == EXIT_OK and out.startswith(f"{folder} is already added")


def test_convert_input_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "models", "convert", str(tmp_path))
    assert f"convert: {tmp_path} is a folder; give one pickle checkpoint file" in err
    png = tmp_path / "pic.png"
    Image.new("RGB", (8, 8)).save(png)
    err = refused(capsys, "models", "convert", str(png))
    assert "is not a pickle checkpoint; allowed: .ckpt, .pt, .pth, .bin" in err
    pickle = tmp_path / "m.ckpt"
    pickle.write_bytes(b"never opened")
    (tmp_path / "m.safetensors").write_bytes(b"the user's file")
    err = refused(capsys, "models", "convert", str(pickle))
    assert f"--out: {tmp_path / 'm.safetensors'} already exists" in err
    assert (tmp_path / "m.safetensors").read_bytes() == b"the user's file"


# --- gallery ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", HUGE], f"image id {HUGE} is out of range; allowed: 1 to {SQLITE_MAX}"),
        (["show", "0"], f"image id 0 is out of range; allowed: 1 to {SQLITE_MAX}"),
        (["tag", HUGE, "x"], f"image id {HUGE} is out of range"),
        (["delete", "1", HUGE], f"image id {HUGE} is out of range"),
        (["list", "--limit", HUGE], f"--limit: {HUGE} is too large; allowed: 1 to {SQLITE_MAX}"),
        (["list", "--offset", HUGE], f"--offset: {HUGE} is too large; allowed: 0 to"),
        (["list", "--offset", "-1"], "--offset: -1 is too small; allowed: 0 to"),
        (["export", "--to", "x", "--limit", HUGE], f"--limit: {HUGE} is too large"),
    ],
)
def test_gallery_numbers_out_of_range(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in refused(capsys, "library", *argv)


def test_gallery_folders_that_cannot_be_used(
    tmp_path: Path, a_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = a_file / "library"
    err = refused(capsys, "library", "--library", str(library), "list")
    assert f"cannot use {library} as the library folder: " in err
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "p.png")
    assert run(capsys, "library", "import", str(photos))[0] == EXIT_OK
    target = a_file / "export"
    err = refused(capsys, "library", "export", "1", "--to", str(target))
    assert f"--to: cannot create the folder {target}: " in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_library_under_proc(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "library", "--library", "/proc/ldstudio-nope", "list")
    assert "cannot use /proc/ldstudio-nope as the library folder: No such file or directory" in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_closed_stdout_exits_quietly(ldstudio_home: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, like `| head -0`
    env = {**os.environ, "LDSTUDIO_HOME": str(ldstudio_home), "HF_HUB_OFFLINE": "1"}
    for argv in (["library", "list", "--json"], ["models", "list", "--no-hf-cache"]):
        done = subprocess.run(
            [sys.executable, "-m", "ldstudio", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=120,
        )
        assert done.returncode == EXIT_BROKEN_PIPE, done.stderr
        assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    os.close(write_end)


def test_a_second_ctrl_c_aborts_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ldstudio.core.service import EngineService

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # what Python raises at the second Ctrl+C, while it waits

    monkeypatch.setattr(EngineService, "wait", interrupted)
    code, out, err = run(capsys, "generate", "x", "--steps", "2", "--out", str(tmp_path), "--json")
    assert code == 130 and json.loads(out) == {"status": "aborted"}
    assert "aborted; images saved before this are kept" in err and "Traceback" not in err
