"""One set of family rules for files, folders and loaded pipelines; the checks made before a
model loads, as readable problems (no torch, no Qt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ldstudio.core import paths
from ldstudio.core.models import ModelFolderStore, ModelRegistry, inspect_diffusers_folder
from ldstudio.core.models.detection import family_label, family_of_variant, unet_family
from ldstudio.core.models.preflight import preflight, preflight_problems
from ldstudio.core.params import GenerationParams


@pytest.mark.parametrize(
    ("context", "addition", "family"),
    [
        (768, None, "sd1"),
        (1024, None, "sd2"),
        ([1024], None, "sd2"),
        (2048, "text_time", "sdxl"),
        (1280, "text_time", "sdxl-refiner"),  # the SDXL refiner's real config
        (2048, None, "custom"),
        (32, None, "custom"),  # the bundled model and the tiny test models
        (None, None, "custom"),
        ({"a": []}, None, "custom"),
    ],
)
def test_unet_family_rules(context: object, addition: object, family: str, tmp_path: Path):
    assert unet_family(context, addition) == family
    # A diffusers folder's family comes from the same rule, read from unet/config.json.
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet"]}))
    config = {"cross_attention_dim": context, "addition_embed_type": addition}
    (tmp_path / "unet" / "config.json").write_text(json.dumps(config))
    assert inspect_diffusers_folder(tmp_path, tmp_path).family == family


def test_family_labels_and_variants() -> None:
    assert [family_label(f) for f in ("sd1", "sd2", "sdxl", "custom")] == [
        "SD 1.x",
        "SD 2.x",
        "SDXL",
        "'custom'",
    ]
    assert [family_of_variant(v) for v in ("sd1", "sd2-v", "sd-turbo", "sdxl-turbo")] == [
        "sd1",
        "sd2",
        "sd2",
        "sdxl",
    ]
    with pytest.raises(ValueError, match="'sd3' is not a bundled config"):
        family_of_variant("sd3")


# -- preflight: the checks made before a model loads -------------------------------------------


def tensors(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(path))
    return path


def vae_file(path: Path) -> Path:
    zero = np.zeros(1, np.float32)
    return tensors(path, **{"encoder.conv_in.weight": zero, "decoder.conv_out.weight": zero})


def lora_file(path: Path, key: str = "lora_unet_down_0_attn2_to_k.lora_down.weight") -> Path:
    return tensors(path, **{key: np.zeros((4, 768), np.float32)})


SDXL_LORA_KEY = "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"


def sd1_folder(path: Path) -> Path:
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DCondition"]}))
    (path / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 768}))
    return path


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry(include_hf_cache=False)


def test_a_request_that_can_load_has_no_problems(tmp_path: Path, registry: ModelRegistry):
    model = sd1_folder(tmp_path / "sd1")
    params = GenerationParams(
        prompt=f"a cat <lora:{lora_file(tmp_path / 'ink.safetensors')}:0.5>",
        model=str(model),
        vae=str(vae_file(tmp_path / "v.safetensors")),
        loras=((str(lora_file(tmp_path / "l.safetensors")), 0.8),),
    )
    assert preflight(params, registry) == []
    assert preflight(GenerationParams(prompt="x"), registry) == []  # the bundled model


def test_each_problem_is_named(tmp_path: Path, registry: ModelRegistry) -> None:
    png = tmp_path / "pic.png"
    png.write_bytes(b"\x89PNG")
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"never opened")
    vae, lora = vae_file(tmp_path / "v.safetensors"), lora_file(tmp_path / "l.safetensors")
    xl = lora_file(tmp_path / "xl.safetensors", SDXL_LORA_KEY)
    model = sd1_folder(tmp_path / "sd1-model")
    bundled = paths.bundled_model_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    base = GenerationParams(prompt="x", model=str(model))
    for params, field, message in (
        (
            base.replace(vae=str(png)),
            "vae",
            f"vae: {png}: ldstudio loads single-file models as .safetensors; .png is not supported",
        ),
        (base.replace(vae=str(pickle)), "vae", f"vae: {pickle}: .ckpt files are Python pickles"),
        (
            base.replace(vae=str(lora)),
            "vae",
            f"vae: {lora} is not a vae file (found a lora file); a standalone VAE file holds the "
            "autoencoder alone",
        ),
        (
            base.replace(vae=str(tmp_path)),
            "vae",
            f"vae: {tmp_path} is a folder; give a .safetensors vae file",
        ),
        (
            base.replace(loras=((str(vae), 0.5),)),
            "loras",
            f"loras: {vae} is not a lora file (found a vae file)",
        ),
        (
            base.replace(prompt="a cat <lora:ghost:0.8>"),
            "prompt",
            "prompt: <lora:ghost>: 'ghost' is neither an existing path nor a known model name; "
            "known: none found.",
        ),
        (
            base.replace(prompt="a cat <lora:ghost:strong>"),
            "prompt",
            "prompt: <lora:ghost:strong> has strength 'strong'; allowed: a number",
        ),
        (
            base.replace(prompt=f"a cat <lora:{png}>"),
            "prompt",
            f"prompt: <lora:{png}>: {png}: ldstudio loads single-file models as .safetensors",
        ),
        (
            base.replace(model=str(empty)),
            "model",
            f"model {empty} is not a diffusers folder: model_index.json is missing",
        ),
        (
            base.replace(model=str(tmp_path / "nope")),
            "model",
            f"model not found: {tmp_path / 'nope'} does not exist",
        ),
        (base.replace(model=str(png)), "model", f"{png}: ldstudio loads single-file models as"),
        (
            base.replace(model="", preview_method="taesd"),
            "preview_method",
            "preview_method: 'taesd' has no tiny decoder for 'custom' models; TAESD exists for "
            "SD 1.x, SD 2.x and SDXL. Use 'latent2rgb' or 'vae' for this model.",
        ),
        (
            base.replace(preview_method="taesd"),
            "preview_method",
            "preview_method: 'taesd' needs TAESD weights for SD 1.x models in "
            f"{paths.home_dir() / 'models' / 'taesd' / 'taesd'} (a diffusers AutoencoderTiny "
            "folder with config.json and diffusion_pytorch_model.safetensors); put them there, "
            "or use 'latent2rgb' or 'vae'",
        ),
        (
            base.replace(model="", vae=str(vae)),
            "vae",
            f"vae: a standalone VAE needs an SD 1.x, SD 2.x or SDXL model; {bundled} is 'custom'",
        ),
        (
            base.replace(loras=((str(xl), 0.7),)),
            "loras",
            f"loras: {xl} is for SDXL models; the model {model} is SD 1.x",
        ),
        (
            base.replace(prompt=f"a cat <lora:{xl}:0.5>"),
            "prompt",
            f"prompt: <lora:{xl}>: {xl} is for SDXL models; the model {model} is SD 1.x",
        ),
    ):
        problems = preflight_problems(params, registry)
        assert problems and problems[0].field == field, (params, problems)
        assert problems[0].message.startswith(message), (problems[0].message, message)
        assert preflight(params, registry)[0] == problems[0].message


def test_problems_come_in_the_order_the_cli_reports_them(tmp_path: Path) -> None:
    png = tmp_path / "pic.png"
    png.write_bytes(b"\x89PNG")
    params = GenerationParams(
        prompt="a cat <lora:ghost>",
        model=str(tmp_path / "nope"),
        vae=str(png),
        loras=((str(png), 1.0),),
    )
    labels = {"vae": "--vae", "loras": "--lora", "preview_method": "--preview"}
    problems = preflight(params, ModelRegistry(include_hf_cache=False), labels)
    assert [p.split(":")[0] for p in problems] == ["--vae", "--lora", "prompt", "model not found"]


def test_prompt_loras_are_found_in_the_model_folders(tmp_path: Path) -> None:
    lora = lora_file(tmp_path / "models" / "Lora" / "ink style.safetensors")
    store = ModelFolderStore()
    store.add_folder(tmp_path / "models")
    store.save()
    params = GenerationParams(
        prompt="a cat <lora:ink style:0.5>", model=str(sd1_folder(tmp_path / "m"))
    )
    assert preflight(params, ModelRegistry(include_hf_cache=False)) == []
    lora.unlink()
    assert "'ink style' is neither" in preflight(params, ModelRegistry(include_hf_cache=False))[0]
