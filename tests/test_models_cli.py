"""`ldstudio models ...` and `ldstudio generate --model NAME --vae --lora`, in process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from models_support import tiny_checkpoint, write_lora, write_vae_file
from PIL import Image

from ldstudio.cli import main
from ldstudio.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from ldstudio.core.metadata import parse_a1111_parameters, read_ldstudio_params
from ldstudio.engine import checkpoints


@pytest.fixture
def a1111(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An A1111 models folder: a tiny SD 1.x checkpoint, a LoRA, a VAE, a pickle, a broken file.

    The bundled sd1 config is pointed at the tiny architecture's config.
    """
    models = tmp_path / "webui" / "models"
    ckpt, config, pipe = tiny_checkpoint(
        "sd1", tmp_path / "build", "tiny-dream.safetensors", dtype=torch.float16
    )
    target = models / "Stable-diffusion" / ckpt.name
    target.parent.mkdir(parents=True)
    shutil.move(str(ckpt), target)
    lora = write_lora(pipe.unet, models / "Lora" / "ink.safetensors", "kohya", seed=3)
    vae = write_vae_file(pipe.vae, models / "VAE" / "soft-vae.safetensors", seed=4)
    torch.save({"w": torch.zeros(2)}, str(models / "Stable-diffusion" / "old.ckpt"))
    (models / "Stable-diffusion" / "cut.safetensors").write_bytes(target.read_bytes()[:5000])
    root = tmp_path / "configs"
    shutil.copytree(config, root / "sd1", ignore=shutil.ignore_patterns("bpe"))
    shutil.copytree(config / "bpe", root / "clip-bpe")
    monkeypatch.setattr(checkpoints, "configs_root", lambda: root)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    return {"models": models, "checkpoint": target, "lora": lora, "vae": vae}


def test_models_list_json_and_text(
    a1111: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "add-folder", str(a1111["models"])]) == EXIT_OK
    assert "5 model file(s), 3 usable" in capsys.readouterr().out
    assert main(["models", "list", "--json"]) == EXIT_OK
    listing = json.loads(capsys.readouterr().out)
    assert listing["folders"] == [str(a1111["models"].resolve())]
    rows = {m["name"]: m for m in listing["models"]}
    dream = rows["tiny-dream"]
    assert (
        dream["kind"],
        dream["family"],
        dream["variant"],
        dream["precision"],
        dream["status"],
    ) == (
        "checkpoint",
        "sd1",
        "sd1",
        "fp16",
        "ok",
    )
    assert dream["size_bytes"] == a1111["checkpoint"].stat().st_size
    assert dream["source"] == str(a1111["models"].resolve())
    assert (rows["ink"]["kind"], rows["soft-vae"]["kind"]) == ("lora", "vae")
    assert rows["old"]["status"] == "unsafe" and "pickle" in rows["old"]["error"]
    assert rows["cut"]["status"] == "error" and "cut.safetensors" in rows["cut"]["error"]
    assert main(["models", "list"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "tiny-dream" in text and "SD 1.x" in text and "fp16" in text
    assert "unsafe: " in text and "error: " in text  # per-file errors shown, not hidden


def test_generate_by_name_with_lora_and_vae(
    a1111: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "add-folder", str(a1111["models"])]) == EXIT_OK
    out = tmp_path / "out.png"
    args = ["generate", "a cat", "--model", "tiny-dream", "--steps", "2", "--size", "64x64"]
    args += ["--seed", "1", "--lora", "ink:0.6", "--vae", str(a1111["vae"]), "--out", str(out)]
    assert main(args) == EXIT_OK, capsys.readouterr().err
    params = read_ldstudio_params(out)
    assert params.model == str(a1111["checkpoint"].resolve())
    assert params.loras == ((str(a1111["lora"].resolve()), 0.6),)
    assert params.vae == str(a1111["vae"].resolve())
    with Image.open(out) as image:
        text = parse_a1111_parameters(image.text["parameters"])
    assert text["Model"] == "tiny-dream" and text["VAE"] == "soft-vae.safetensors"
    assert text["Lora hashes"].startswith("ink: ")


def test_default_model_and_variant_choice(
    a1111: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "add-folder", str(a1111["models"])]) == EXIT_OK
    assert main(["models", "set-default", "tiny-dream"]) == EXIT_OK
    out = tmp_path / "d.png"
    args = ["generate", "x", "--steps", "1", "--size", "64x64", "--out", str(out)]
    assert main(args) == EXIT_OK
    assert read_ldstudio_params(out).model == str(a1111["checkpoint"].resolve())
    assert main(["models", "set-variant", "tiny-dream", "sdxl"]) == EXIT_BAD_INPUT
    assert "allowed: sd1" in capsys.readouterr().err
    assert main(["models", "set-default", "nothing-like-this"]) == EXIT_BAD_INPUT
    assert "known: tiny-dream" in capsys.readouterr().err


def test_bad_model_references_exit_2(
    a1111: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for args, message in (
        (["--model", "no-such-model"], "--model: 'no-such-model' is neither"),
        (["--model", str(a1111["models"] / "Stable-diffusion" / "old.ckpt")], "pickle"),
        (
            ["--model", str(a1111["models"] / "Stable-diffusion" / "cut.safetensors")],
            "cut.safetensors",
        ),
        (["--lora", "missing.safetensors:0.5"], "--lora: model not found"),
        (["--lora", f"{a1111['lora']}:99"], "loras[0] strength: 99.0 is out of range"),
    ):
        assert main(["generate", "x", *args]) == EXIT_BAD_INPUT, args
        assert message in capsys.readouterr().err


class _Boom:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.target,))


def test_convert_refuses_a_malicious_pickle_and_converts_a_plain_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "x": _Boom(marker)}, str(evil))
    assert main(["models", "convert", str(evil)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{evil}: refused: it holds more than plain tensors" in err
    assert "loading it could run code hidden in it" in err
    # PyTorch's own advice (load with weights_only=False) is the unsafe action: not echoed.
    assert "weights_only" not in err and "can still be loaded" not in err and "\x1b" not in err
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()
    plain = tmp_path / "vae.pt"
    torch.save(
        {"encoder.conv_in.weight": torch.zeros(2), "decoder.conv_out.weight": torch.ones(2)},
        str(plain),
    )
    assert main(["models", "convert", str(plain)]) == EXIT_OK
    assert "(vae," in capsys.readouterr().out
    assert (tmp_path / "vae.safetensors").is_file()


def test_convert_explains_files_that_are_no_checkpoint_without_torchs_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(bytes(range(256)) * 16)
    assert main(["models", "convert", str(noise)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith(f"error: {noise}: refused: torch's tensors-only loader cannot read it")
    assert "Nothing in it was run" in err
    assert "weights_only" not in err and "will likely succeed" not in err

    cut = tmp_path / "cut.pt"
    torch.save({"w": torch.zeros(64)}, str(cut))
    cut.write_bytes(cut.read_bytes()[:-200])
    assert main(["models", "convert", str(cut)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{cut}: cannot be read as a PyTorch checkpoint (RuntimeError: " in err
    assert not (tmp_path / "noise.safetensors").exists()
    assert not (tmp_path / "cut.safetensors").exists()


def test_models_list_says_which_models_are_inpainting_models(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiny_model import build_tiny_model

    folder = tmp_path / "models"
    shutil.copytree(tiny_model, folder / "plain")
    build_tiny_model(folder / "repaint", in_channels=9)
    argv = ["models", "list", "--no-hf-cache", "--folder", str(folder)]
    assert main([*argv, "--json"]) == EXIT_OK
    rows = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert rows["plain"]["inpainting"] is False and rows["repaint"]["inpainting"] is True
    assert main(argv) == EXIT_OK
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert "inpainting" in lines["repaint"] and "inpainting" not in lines["plain"]
